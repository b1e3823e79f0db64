//! Sessions and users in DynamoDB. Every status change is a conditional update on the
//! statuses the transition function allows, so duplicate or late writers can never
//! move a session backwards.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, Put, ReturnValue, TransactWriteItem, Update,
};
use aws_sdk_dynamodb::Client;

use crate::from_sdk;
use session_core::config::Tables;
use session_core::error::{Error, Result};
use session_core::ports::{
    ActiveSessions, Change, PageCursor, SessionPage, SessionStore, TaskObservation, User,
};
use session_core::session::{timestamp, Event, Reason, Session, SessionId, Status, Urls};

/// Sparse attribute, present only while a session is not terminal: the key of the
/// `active` index, so the reaper and the per-user limit read only live sessions.
pub const ACTIVE_USER_ID: &str = "active_user_id";
/// Time-to-live attribute: set when a session ends.
pub const EXPIRES_AT: &str = "expires_at";
pub const BY_USER_INDEX: &str = "by-user";
pub const ACTIVE_INDEX: &str = "active";

#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    tables: Tables,
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn session_key(id: &SessionId) -> HashMap<String, AttributeValue> {
    HashMap::from([("session_id".to_owned(), s(id.as_str()))])
}

/// The most keys one BatchGetItem takes.
const BATCH_GET_KEYS: usize = 100;
/// How often keys left unprocessed are asked again (50 ms doubling: 3 s in all).
const BATCH_GET_RETRIES: u32 = 5;

fn user_key(user_id: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([("user_id".to_owned(), s(user_id))])
}

fn decode<T: serde::de::DeserializeOwned>(
    what: &'static str,
    item: HashMap<String, AttributeValue>,
) -> Result<T> {
    serde_dynamo::from_item(item).map_err(|e| Error::Aws {
        operation: what,
        message: format!("unreadable item: {e}"),
    })
}

/// A conditional write's outcome: `Some` of its answer when it was written, `None`
/// when its condition did not hold (`condition_failed`, the operation error's
/// `is_conditional_check_failed_exception`), any other failure as the error it is.
fn conditional<T, E>(
    operation: &'static str,
    result: std::result::Result<T, SdkError<E, HttpResponse>>,
    condition_failed: fn(&E) -> bool,
) -> Result<Option<T>>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match result {
        Ok(out) => Ok(Some(out)),
        Err(err) if err.as_service_error().is_some_and(condition_failed) => Ok(None),
        Err(err) => Err(from_sdk(operation, err)),
    }
}

/// Collects the parts of one UpdateItem expression.
#[derive(Default)]
struct UpdateExpr {
    set: Vec<String>,
    remove: Vec<String>,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl UpdateExpr {
    fn name(&mut self, attribute: &str) -> String {
        let placeholder = format!("#a{}", self.names.len());
        self.names.insert(placeholder.clone(), attribute.to_owned());
        placeholder
    }

    fn value(&mut self, value: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    fn set(&mut self, attribute: &str, value: AttributeValue) -> &mut Self {
        let (name, value) = (self.name(attribute), self.value(value));
        self.set.push(format!("{name} = {value}"));
        self
    }

    fn set_if_absent(&mut self, attribute: &str, value: AttributeValue) -> &mut Self {
        let (name, value) = (self.name(attribute), self.value(value));
        self.set
            .push(format!("{name} = if_not_exists({name}, {value})"));
        self
    }

    fn remove(&mut self, attribute: &str) -> &mut Self {
        let name = self.name(attribute);
        self.remove.push(name);
        self
    }

    fn expression(&self) -> String {
        let mut parts = Vec::new();
        if !self.set.is_empty() {
            parts.push(format!("SET {}", self.set.join(", ")));
        }
        if !self.remove.is_empty() {
            parts.push(format!("REMOVE {}", self.remove.join(", ")));
        }
        parts.join(" ")
    }

    /// `#status IN (...)` over the given statuses.
    fn status_in(&mut self, statuses: &[Status]) -> String {
        let name = self.name("status");
        let values: Vec<String> = statuses
            .iter()
            .map(|st| self.value(s(st.as_str())))
            .collect();
        format!("{name} IN ({})", values.join(", "))
    }
}

impl DynamoStore {
    pub fn new(client: Client, tables: Tables) -> Self {
        Self { client, tables }
    }

    pub fn connect(sdk: &aws_config::SdkConfig, tables: Tables) -> Self {
        Self::new(Client::new(sdk), tables)
    }

    fn expires_at(&self, at: chrono::DateTime<chrono::Utc>) -> AttributeValue {
        n(at.timestamp() + i64::from(self.tables.retention_days) * 86_400)
    }

    /// Runs an update of a session; `None` when its condition does not hold.
    async fn update_session(
        &self,
        id: &SessionId,
        expr: UpdateExpr,
        condition: String,
    ) -> Result<Option<Session>> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.sessions)
            .set_key(Some(session_key(id)))
            .update_expression(expr.expression())
            .condition_expression(condition)
            .set_expression_attribute_names(Some(expr.names))
            .set_expression_attribute_values(Some(expr.values))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        conditional(
            "UpdateItem",
            result,
            UpdateItemError::is_conditional_check_failed_exception,
        )?
        .and_then(|out| out.attributes)
        .map(|item| decode("UpdateItem", item))
        .transpose()
    }

    fn change_expr(&self, change: Change) -> (Event, UpdateExpr) {
        let mut expr = UpdateExpr::default();
        expr.set("status_changed_at", s(timestamp(change.at())));
        let event = match change {
            Change::Launched {
                task_arn,
                awaits_health,
                ..
            } => {
                expr.set("task_arn", s(task_arn));
                if awaits_health {
                    expr.set("awaits_health", AttributeValue::Bool(true));
                }
                Event::TaskLaunched
            }
            Change::Running {
                public_ip,
                private_ip,
                urls,
                service_ports,
                at,
            } => {
                expr.set("started_at", s(timestamp(at))).remove("ip_token");
                for (attribute, value) in [("public_ip", public_ip), ("private_ip", private_ip)] {
                    if let Some(value) = value {
                        expr.set(attribute, s(value));
                    }
                }
                let ports = service_ports
                    .into_iter()
                    .map(|(key, port)| (key, n(port)))
                    .collect();
                expr.set("service_ports", AttributeValue::M(ports));
                for (key, url) in urls.0 {
                    expr.set(&Urls::attribute_name(&key), s(url));
                }
                Event::TaskRunning
            }
            Change::StopRequested { reason, .. } => {
                expr.set_if_absent("stop_reason", s(reason.as_str()));
                Event::StopRequested
            }
            Change::Stopped { reason, at } => {
                expr.set_if_absent("stop_reason", s(reason.as_str()));
                self.ended(&mut expr, at);
                Event::Stopped
            }
            Change::Failed { reason, cause, at } => {
                expr.set("stop_reason", s(reason.as_str()))
                    .set("failure_cause", s(cause));
                self.ended(&mut expr, at);
                Event::Failed
            }
        };
        let status = expr.value(s(event.target().as_str()));
        let name = expr.name("status");
        expr.set.push(format!("{name} = {status}"));
        (event, expr)
    }

    fn ended(&self, expr: &mut UpdateExpr, at: chrono::DateTime<chrono::Utc>) {
        expr.set("stopped_at", s(timestamp(at)))
            .set(EXPIRES_AT, self.expires_at(at))
            .remove(ACTIVE_USER_ID)
            .remove("ip_token")
            .remove("stop_token");
    }

    async fn session_limit_error(&self, user_id: &str, max: u32) -> Result<Error> {
        let user = self.user(user_id).await?;
        match user {
            None => Ok(Error::NotAuthorized),
            Some(user) => Ok(Error::SessionLimitReached {
                max,
                active: user.active_sessions.into_iter().collect(),
            }),
        }
    }
}

/// Attempts of the session-opening transaction while DynamoDB cancels it for a
/// conflict with another transaction on the same user.
pub const OPEN_ATTEMPTS: u32 = 3;

impl SessionStore for DynamoStore {
    async fn user(&self, user_id: &str) -> Result<Option<User>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.users)
            .set_key(Some(user_key(user_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| from_sdk("GetItem", e))?;
        out.item.map(|item| decode("GetItem", item)).transpose()
    }

    async fn users(&self, user_ids: &BTreeSet<String>) -> Result<BTreeMap<String, User>> {
        let mut found = BTreeMap::new();
        let ids: Vec<&String> = user_ids.iter().collect();
        for batch in ids.chunks(BATCH_GET_KEYS) {
            let mut keys: Vec<_> = batch.iter().map(|id| user_key(id)).collect();
            // Keys DynamoDB left unprocessed (throughput, or the 16 MB answer limit) are
            // asked again after a pause, as AWS advises; the SDK itself retries throttles.
            let mut attempt = 0;
            while !keys.is_empty() {
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .build()
                    .map_err(|e| Error::Aws {
                        operation: "BatchGetItem",
                        message: e.to_string(),
                    })?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.tables.users, request)
                    .send()
                    .await
                    .map_err(|e| from_sdk("BatchGetItem", e))?;
                let items = out
                    .responses
                    .and_then(|mut r| r.remove(&self.tables.users))
                    .unwrap_or_default();
                for item in items {
                    let user: User = decode("BatchGetItem", item)?;
                    found.insert(user.user_id.clone(), user);
                }
                keys = out
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.tables.users))
                    .map(|k| k.keys)
                    .unwrap_or_default();
                if !keys.is_empty() {
                    attempt += 1;
                    if attempt > BATCH_GET_RETRIES {
                        return Err(Error::Aws {
                            operation: "BatchGetItem",
                            message: format!(
                                "{} keys still unprocessed after {attempt} attempts",
                                keys.len()
                            ),
                        });
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
                }
            }
        }
        Ok(found)
    }

    async fn open(&self, session: &Session, max_sessions: u32) -> Result<()> {
        let mut item: HashMap<String, AttributeValue> =
            serde_dynamo::to_item(session).map_err(|e| Error::Aws {
                operation: "PutItem",
                message: e.to_string(),
            })?;
        item.insert(ACTIVE_USER_ID.to_owned(), s(&session.user_id));
        let put = Put::builder()
            .table_name(&self.tables.sessions)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(session_id)")
            .build()
            .map_err(|e| Error::Aws {
                operation: "TransactWriteItems",
                message: e.to_string(),
            })?;
        let take_slot = Update::builder()
            .table_name(&self.tables.users)
            .set_key(Some(user_key(&session.user_id)))
            .update_expression("ADD active_sessions :sid")
            .condition_expression(
                "attribute_exists(user_id) AND (attribute_not_exists(active_sessions) \
                 OR size(active_sessions) < :max OR contains(active_sessions, :id))",
            )
            .expression_attribute_values(
                ":sid",
                AttributeValue::Ss(vec![session.session_id.to_string()]),
            )
            .expression_attribute_values(":id", s(session.session_id.as_str()))
            .expression_attribute_values(":max", n(max_sessions))
            .build()
            .map_err(|e| Error::Aws {
                operation: "TransactWriteItems",
                message: e.to_string(),
            })?;
        // Two starts of one user at once conflict on the user's item: DynamoDB cancels
        // one of them undecided, so it is tried again here (then by the caller).
        let mut attempt = 1;
        let result = loop {
            let result = self
                .client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().put(put.clone()).build())
                .transact_items(
                    TransactWriteItem::builder()
                        .update(take_slot.clone())
                        .build(),
                )
                .send()
                .await;
            let conflict = matches!(
                result.as_ref().map_err(|e| e.as_service_error()),
                Err(Some(TransactWriteItemsError::TransactionCanceledException(c)))
                    if c.cancellation_reasons().iter().any(|r| r.code() == Some("TransactionConflict"))
            );
            if !conflict || attempt == OPEN_ATTEMPTS {
                break result;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20 << attempt)).await;
            attempt += 1;
        };
        let err = match result {
            Ok(_) => return Ok(()),
            Err(err) => err,
        };
        let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
            err.as_service_error()
        else {
            return Err(from_sdk("TransactWriteItems", err));
        };
        let codes: Vec<&str> = cancelled
            .cancellation_reasons()
            .iter()
            .map(|r| r.code().unwrap_or("None"))
            .collect();
        // Another transaction touched the same items (two starts of one user at once),
        // or DynamoDB throttled: nothing was decided, so the caller retries.
        let message = || format!("transaction cancelled: {}", codes.join(", "));
        if codes.contains(&"TransactionConflict") {
            return Err(Error::Transient {
                operation: "TransactWriteItems",
                message: message(),
            });
        }
        if codes
            .iter()
            .any(|c| matches!(*c, "ThrottlingError" | "ProvisionedThroughputExceeded"))
        {
            return Err(Error::Throttled {
                operation: "TransactWriteItems",
                message: message(),
            });
        }
        let failed = |i: usize| codes.get(i) == Some(&"ConditionalCheckFailed");
        // An existing session with this id is a retry of this very step when it
        // belongs to the same user; anything else is a conflict.
        if failed(0) || cancelled.cancellation_reasons().is_empty() {
            if let Some(existing) = self.session(&session.session_id).await? {
                if existing.user_id == session.user_id {
                    return Ok(());
                }
                return Err(session_core::error::InvalidInput::new(
                    "session_id",
                    "is already used by another session",
                )
                .into());
            }
        }
        Err(self
            .session_limit_error(&session.user_id, max_sessions)
            .await?)
    }

    async fn session(&self, id: &SessionId) -> Result<Option<Session>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.sessions)
            .set_key(Some(session_key(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| from_sdk("GetItem", e))?;
        out.item.map(|item| decode("GetItem", item)).transpose()
    }

    async fn apply(&self, id: &SessionId, change: Change) -> Result<Option<Session>> {
        let (event, mut expr) = self.change_expr(change);
        let condition = expr.status_in(&Status::predecessors(event, event.target()));
        self.update_session(id, expr, condition).await
    }

    async fn fail(
        &self,
        session: &Session,
        reason: Reason,
        cause: &str,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<Session>> {
        let change = Change::Failed {
            reason,
            cause: cause.to_owned(),
            at,
        };
        if let Some(updated) = self.apply(&session.session_id, change).await? {
            return Ok(Some(updated));
        }
        // Authorize refused the session before creating it: record it as failed.
        let mut failed = session.clone();
        failed.status = Status::Failed;
        failed.stop_reason = Some(reason);
        failed.failure_cause = Some(cause.to_owned());
        failed.stopped_at = Some(timestamp(at));
        failed.status_changed_at = Some(timestamp(at));
        let mut item: HashMap<String, AttributeValue> =
            serde_dynamo::to_item(&failed).map_err(|e| Error::Aws {
                operation: "PutItem",
                message: e.to_string(),
            })?;
        item.insert(EXPIRES_AT.to_owned(), self.expires_at(at));
        let result = self
            .client
            .put_item()
            .table_name(&self.tables.sessions)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(session_id)")
            .send()
            .await;
        match conditional(
            "PutItem",
            result,
            PutItemError::is_conditional_check_failed_exception,
        )? {
            Some(_) => Ok(Some(failed)),
            None => Ok(None),
        }
    }

    async fn store_ip_token(&self, id: &SessionId, token: &str) -> Result<Option<Session>> {
        let mut expr = UpdateExpr::default();
        expr.set("ip_token", s(token));
        self.update_session(id, expr, "attribute_exists(session_id)".into())
            .await
    }

    async fn store_stop_token(&self, id: &SessionId, token: &str) -> Result<Option<Session>> {
        let mut expr = UpdateExpr::default();
        expr.set("stop_token", s(token));
        self.update_session(id, expr, "attribute_exists(session_id)".into())
            .await
    }

    async fn store_tasks_stopped_token(
        &self,
        id: &SessionId,
        token: &str,
    ) -> Result<Option<Session>> {
        let mut expr = UpdateExpr::default();
        expr.set("tasks_stopped_token", s(token));
        self.update_session(id, expr, "attribute_exists(session_id)".into())
            .await
    }

    async fn observe_task(
        &self,
        id: &SessionId,
        observation: &TaskObservation,
    ) -> Result<Option<Session>> {
        let mut expr = UpdateExpr::default();
        expr.set("task_status", s(&observation.last_status))
            .set("task_version", n(observation.version))
            .set_if_absent("task_arn", s(&observation.task_arn));
        for (attribute, value) in [
            ("eni_id", &observation.eni_id),
            ("private_ip", &observation.private_ip),
            ("task_health", &observation.health_status),
            ("stop_code", &observation.stop_code),
            ("stopped_reason", &observation.stopped_reason),
        ] {
            if let Some(value) = value {
                expr.set(attribute, s(value));
            }
        }
        if let Some(seconds) = observation.image_pull_s {
            expr.set("image_pull_s", n(seconds));
        }
        let version = expr.name("task_version");
        let task_arn = expr.name("task_arn");
        let (v, arn) = (
            expr.value(n(observation.version)),
            expr.value(s(&observation.task_arn)),
        );
        let condition = format!(
            "attribute_exists(session_id) AND (attribute_not_exists({version}) OR {version} < {v}) \
             AND (attribute_not_exists({task_arn}) OR {task_arn} = {arn})"
        );
        self.update_session(id, expr, condition).await
    }

    async fn discard_unstarted(&self, id: &SessionId) -> Result<bool> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.tables.sessions)
            .set_key(Some(session_key(id)))
            .condition_expression("#status = :starting AND attribute_not_exists(task_arn)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":starting", s(Status::Starting.as_str()))
            .send()
            .await;
        match conditional(
            "DeleteItem",
            result,
            DeleteItemError::is_conditional_check_failed_exception,
        )? {
            Some(_) => Ok(true),
            None => Ok(false),
        }
    }

    async fn release_slot(&self, user_id: &str, id: &SessionId) -> Result<()> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.users)
            .set_key(Some(user_key(user_id)))
            .update_expression("DELETE active_sessions :sid")
            .condition_expression("attribute_exists(user_id)")
            .expression_attribute_values(":sid", AttributeValue::Ss(vec![id.to_string()]))
            .send()
            .await;
        match conditional(
            "UpdateItem",
            result,
            UpdateItemError::is_conditional_check_failed_exception,
        )? {
            Some(_) => Ok(()),
            None => Ok(()),
        }
    }

    async fn set_access_point(&self, user_id: &str, access_point_id: &str) -> Result<String> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.users)
            .set_key(Some(user_key(user_id)))
            .update_expression("SET efs_access_point_id = :ap")
            .condition_expression(
                "attribute_exists(user_id) AND attribute_not_exists(efs_access_point_id)",
            )
            .expression_attribute_values(":ap", s(access_point_id))
            .send()
            .await;
        match conditional(
            "UpdateItem",
            result,
            UpdateItemError::is_conditional_check_failed_exception,
        )? {
            Some(_) => Ok(access_point_id.to_owned()),
            // Set already (a concurrent Launch of the same user won): that one is kept.
            None => self
                .user(user_id)
                .await?
                .and_then(|u| u.efs_access_point_id)
                .ok_or(Error::NotAuthorized),
        }
    }

    async fn set_task_role(&self, user_id: &str, role_arn: &str) -> Result<String> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.users)
            .set_key(Some(user_key(user_id)))
            .update_expression("SET task_role_arn = :role")
            .condition_expression(
                "attribute_exists(user_id) AND attribute_not_exists(task_role_arn)",
            )
            .expression_attribute_values(":role", s(role_arn))
            .send()
            .await;
        match conditional(
            "UpdateItem",
            result,
            UpdateItemError::is_conditional_check_failed_exception,
        )? {
            Some(_) => Ok(role_arn.to_owned()),
            // Set already (a concurrent Launch of the same user won): that one is kept.
            None => self
                .user(user_id)
                .await?
                .and_then(|u| u.task_role_arn)
                .ok_or(Error::NotAuthorized),
        }
    }

    async fn cache_task_definition(
        &self,
        user_id: &str,
        key: &str,
        arn: &str,
        evict: &[String],
    ) -> Result<()> {
        // DynamoDB refuses an expression whose SET and REMOVE name the same path.
        let evict: Vec<&String> = evict.iter().filter(|k| k.as_str() != key).collect();
        // A nested map entry can only be set once the map exists; create it on first use.
        for attempt in 0..3 {
            let request = self
                .client
                .update_item()
                .table_name(&self.tables.users)
                .set_key(Some(user_key(user_id)))
                .expression_attribute_names("#defs", "task_definitions");
            let request = if attempt % 2 == 0 {
                let mut expression = "SET #defs.#key = :arn".to_owned();
                let mut request = request
                    .condition_expression("attribute_exists(#defs)")
                    .expression_attribute_names("#key", key)
                    .expression_attribute_values(":arn", s(arn));
                for (i, old) in evict.iter().enumerate() {
                    expression.push_str(if i == 0 { " REMOVE " } else { ", " });
                    expression.push_str(&format!("#defs.#old{i}"));
                    request = request.expression_attribute_names(format!("#old{i}"), *old);
                }
                request.update_expression(expression)
            } else {
                request
                    .update_expression("SET #defs = :defs")
                    .condition_expression(
                        "attribute_exists(user_id) AND attribute_not_exists(#defs)",
                    )
                    .expression_attribute_values(
                        ":defs",
                        AttributeValue::M(HashMap::from([(key.to_owned(), s(arn))])),
                    )
            };
            let result = request.send().await;
            let written = conditional(
                "UpdateItem",
                result,
                UpdateItemError::is_conditional_check_failed_exception,
            )?;
            if written.is_some() {
                return Ok(());
            }
        }
        Err(Error::NotAuthorized)
    }

    async fn active_sessions(&self) -> Result<ActiveSessions> {
        let mut found = ActiveSessions::default();
        let mut pages = self
            .client
            .scan()
            .table_name(&self.tables.sessions)
            .index_name(ACTIVE_INDEX)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| from_sdk("Scan", e))?;
            found.items_read += u64::try_from(page.scanned_count()).unwrap_or_default();
            for item in page.items.unwrap_or_default() {
                found.sessions.push(decode("Scan", item)?);
            }
        }
        Ok(found)
    }

    async fn sessions_of_user(
        &self,
        user_id: &str,
        limit: u32,
        after: Option<&PageCursor>,
    ) -> Result<SessionPage> {
        // The cursor carries no user: the start key is rebuilt with the caller's own id,
        // so a cursor can never reach into another user's sessions.
        let start = after.map(|c| {
            HashMap::from([
                ("session_id".to_owned(), s(c.session_id.as_str())),
                ("user_id".to_owned(), s(user_id)),
                ("created_at".to_owned(), s(&c.created_at)),
            ])
        });
        let out = self
            .client
            .query()
            .table_name(&self.tables.sessions)
            .index_name(BY_USER_INDEX)
            .key_condition_expression("user_id = :user")
            .expression_attribute_values(":user", s(user_id))
            .scan_index_forward(false)
            .limit(i32::try_from(limit.max(1)).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| from_sdk("Query", e))?;
        let sessions = out
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|item| decode("Query", item))
            .collect::<Result<Vec<Session>>>()?;
        // DynamoDB may hand back a last key on a page that happens to be the last one;
        // the next (empty) page then simply ends the listing.
        let next = out
            .last_evaluated_key
            .and_then(|_| sessions.last())
            .map(|last| PageCursor {
                created_at: last.created_at.clone(),
                session_id: last.session_id.clone(),
            });
        Ok(SessionPage { sessions, next })
    }

    async fn touch(
        &self,
        id: &SessionId,
        user_id: &str,
        at: chrono::DateTime<chrono::Utc>,
        min_interval: chrono::Duration,
    ) -> Result<bool> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.sessions)
            .set_key(Some(session_key(id)))
            .update_expression("SET last_activity_at = :at")
            .condition_expression(
                "#status = :running AND user_id = :user \
                 AND (attribute_not_exists(last_activity_at) OR last_activity_at < :threshold)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":at", s(timestamp(at)))
            .expression_attribute_values(":running", s(Status::Running.as_str()))
            .expression_attribute_values(":user", s(user_id))
            .expression_attribute_values(":threshold", s(timestamp(at - min_interval)))
            .send()
            .await;
        match conditional(
            "UpdateItem",
            result,
            UpdateItemError::is_conditional_check_failed_exception,
        )? {
            Some(_) => Ok(true),
            None => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    use aws_sdk_dynamodb::types::error::TransactionCanceledException;
    use aws_sdk_dynamodb::types::CancellationReason;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    use super::*;
    use session_core::session::Version;

    fn tables() -> Tables {
        Tables {
            sessions: "sessions".into(),
            users: "users".into(),
            retention_days: 30,
        }
    }

    #[tokio::test]
    async fn a_refused_slot_is_session_limit_reached_naming_the_active_sessions() {
        let transact = mock!(aws_sdk_dynamodb::Client::transact_write_items).then_error(|| {
            TransactWriteItemsError::TransactionCanceledException(
                TransactionCanceledException::builder()
                    .cancellation_reasons(CancellationReason::builder().code("None").build())
                    .cancellation_reasons(
                        CancellationReason::builder()
                            .code("ConditionalCheckFailed")
                            .build(),
                    )
                    .build(),
            )
        });
        let user = mock!(aws_sdk_dynamodb::Client::get_item)
            .match_requests(|r| r.table_name() == Some("users"))
            .then_output(|| {
                GetItemOutput::builder()
                    .item("user_id", s("u"))
                    .item("authorized", AttributeValue::Bool(true))
                    .item(
                        "active_sessions",
                        AttributeValue::Ss(vec!["sess-active".into()]),
                    )
                    .build()
            });
        let store = DynamoStore::new(
            mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&transact, &user]),
            tables(),
        );
        let session = Session::new(
            SessionId::parse("sess-new").unwrap(),
            "u".into(),
            Version::default(),
            "now".into(),
        );
        let err = store.open(&session, 1).await.unwrap_err();
        assert_eq!(err.error_type(), "SessionLimitReached");
        assert_eq!(
            err.to_string(),
            "session limit of 1 reached; active: sess-active"
        );
    }

    #[tokio::test]
    async fn users_are_read_a_hundred_a_call_and_unprocessed_keys_asked_again() {
        use aws_sdk_dynamodb::operation::batch_get_item::{BatchGetItemInput, BatchGetItemOutput};
        let keys = |r: &BatchGetItemInput| -> Vec<String> {
            r.request_items().unwrap()["users"]
                .keys()
                .iter()
                .map(|k| k["user_id"].as_s().unwrap().clone())
                .collect()
        };
        let found = |ids: &[String]| -> Vec<HashMap<String, AttributeValue>> {
            ids.iter()
                .map(|id| HashMap::from([("user_id".to_owned(), s(id))]))
                .collect()
        };
        // The first call of 100 keys: user-000 is left unprocessed and asked again.
        let first = mock!(aws_sdk_dynamodb::Client::batch_get_item)
            .match_requests(move |r| keys(r).len() == 100 && keys(r)[0] == "user-000")
            .then_output(move || {
                let ids: Vec<String> = (1..100).map(|i| format!("user-{i:03}")).collect();
                BatchGetItemOutput::builder()
                    .responses("users", found(&ids))
                    .unprocessed_keys(
                        "users",
                        KeysAndAttributes::builder()
                            .keys(user_key("user-000"))
                            .build()
                            .unwrap(),
                    )
                    .build()
            });
        let again = mock!(aws_sdk_dynamodb::Client::batch_get_item)
            .match_requests(move |r| keys(r) == ["user-000"])
            .then_output(move || {
                BatchGetItemOutput::builder()
                    .responses("users", found(&["user-000".to_owned()]))
                    .build()
            });
        // The rest: user-249 has no item.
        let rest = mock!(aws_sdk_dynamodb::Client::batch_get_item)
            .match_requests(move |r| keys(r).len() <= 100 && keys(r)[0] != "user-000")
            .then_output(move || {
                let ids: Vec<String> = (100..249).map(|i| format!("user-{i:03}")).collect();
                BatchGetItemOutput::builder()
                    .responses("users", found(&ids))
                    .build()
            });
        let store = DynamoStore::new(
            mock_client!(
                aws_sdk_dynamodb,
                RuleMode::MatchAny,
                [&first, &again, &rest]
            ),
            tables(),
        );
        let ids: BTreeSet<String> = (0..250).map(|i| format!("user-{i:03}")).collect();
        let users = store.users(&ids).await.unwrap();
        assert_eq!(users.len(), 249);
        assert!(users.contains_key("user-000") && !users.contains_key("user-249"));
        assert_eq!(
            (first.num_calls(), again.num_calls(), rest.num_calls()),
            (1, 1, 2),
            "250 users: three calls of at most 100 keys, and one for the key left over"
        );
    }

    #[tokio::test]
    async fn a_user_is_an_admin_only_when_their_item_says_admin_true() {
        for (item, admin) in [
            (None, false),
            (Some(AttributeValue::Bool(false)), false),
            (Some(AttributeValue::Bool(true)), true),
        ] {
            let flag = item.clone();
            let get = mock!(aws_sdk_dynamodb::Client::get_item).then_output(move || {
                let out = GetItemOutput::builder().item("user_id", s("u"));
                match flag.clone() {
                    Some(flag) => out.item("admin", flag),
                    None => out,
                }
                .build()
            });
            let store = DynamoStore::new(
                mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&get]),
                tables(),
            );
            let user = store.user("u").await.unwrap().unwrap();
            assert_eq!(user.admin, admin, "{item:?}");
        }
    }

    fn cancelled_by(codes: &'static [&'static str]) -> TransactWriteItemsError {
        let mut cancelled = TransactionCanceledException::builder();
        for code in codes {
            cancelled =
                cancelled.cancellation_reasons(CancellationReason::builder().code(*code).build());
        }
        TransactWriteItemsError::TransactionCanceledException(cancelled.build())
    }

    #[tokio::test]
    async fn a_transaction_conflict_or_throttling_is_retried_not_a_session_limit() {
        for (codes, expected) in [
            (&["None", "TransactionConflict"][..], "Transient"),
            (&["TransactionConflict", "None"][..], "Transient"),
            (&["None", "ThrottlingError"][..], "Throttled"),
        ] {
            let transact = mock!(aws_sdk_dynamodb::Client::transact_write_items)
                .then_error(move || cancelled_by(codes));
            // The user is at the limit, so only the cancellation reason tells the cases apart.
            let user = mock!(aws_sdk_dynamodb::Client::get_item).then_output(|| {
                GetItemOutput::builder()
                    .item("user_id", s("u"))
                    .item("authorized", AttributeValue::Bool(true))
                    .item(
                        "active_sessions",
                        AttributeValue::Ss(vec!["sess-active".into()]),
                    )
                    .build()
            });
            let store = DynamoStore::new(
                mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&transact, &user]),
                tables(),
            );
            let session = Session::new(
                SessionId::parse("sess-new").unwrap(),
                "u".into(),
                Version::default(),
                "now".into(),
            );
            let err = store.open(&session, 1).await.unwrap_err();
            assert_eq!(err.error_type(), expected, "{codes:?}: {err}");
            // A conflict is tried again at once; throttling is left to the caller.
            let attempts = if expected == "Transient" {
                OPEN_ATTEMPTS
            } else {
                1
            };
            assert_eq!(transact.num_calls(), attempts as usize, "{codes:?}");
        }
    }

    #[test]
    fn a_change_is_conditioned_on_exactly_the_statuses_the_transition_function_allows() {
        let store = DynamoStore::new(mock_client!(aws_sdk_dynamodb, []), tables());
        let (event, mut expr) = store.change_expr(Change::Stopped {
            reason: Reason::User,
            at: chrono::Utc::now(),
        });
        let condition = expr.status_in(&Status::predecessors(event, event.target()));
        let allowed: Vec<String> = condition
            .split(['(', ')', ','])
            .filter_map(|p| expr.values.get(p.trim()))
            .filter_map(|v| v.as_s().ok().cloned())
            .collect();
        assert_eq!(
            allowed,
            vec!["starting", "provisioning", "running", "stopping"]
        );
        assert!(
            expr.expression().contains("REMOVE"),
            "an ended session leaves the active index"
        );
    }

    #[test]
    fn every_status_change_records_when_it_happened_in_the_same_write() {
        let store = DynamoStore::new(mock_client!(aws_sdk_dynamodb, []), tables());
        let at = chrono::DateTime::parse_from_rfc3339("2026-01-01T10:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let written = |expr: &UpdateExpr, attribute: &str| -> Option<AttributeValue> {
            let (name, _) = expr.names.iter().find(|(_, a)| *a == attribute)?;
            let set = expr
                .set
                .iter()
                .find(|s| s.starts_with(&format!("{name} = ")))?;
            expr.values.get(set.rsplit(' ').next()?).cloned()
        };
        let changes = [
            Change::Launched {
                task_arn: "arn:task".into(),
                awaits_health: true,
                at: chrono::Utc::now(),
            },
            Change::StopRequested {
                reason: Reason::User,
                at: chrono::Utc::now(),
            },
            Change::Failed {
                reason: Reason::Lost,
                cause: "stuck".into(),
                at,
            },
        ];
        for change in changes {
            let (_, expr) = store.change_expr(change.clone());
            assert!(written(&expr, "status").is_some(), "{change:?}");
            assert!(
                written(&expr, "status_changed_at").is_some(),
                "{change:?} does not record when the status changed"
            );
        }
        let (_, expr) = store.change_expr(Change::Failed {
            reason: Reason::Lost,
            cause: "stuck".into(),
            at,
        });
        assert_eq!(
            written(&expr, "status_changed_at"),
            Some(s("2026-01-01T10:00:00.000Z"))
        );
    }

    #[tokio::test]
    async fn caching_a_task_definition_drops_the_evicted_entries_in_the_same_write() {
        let update = mock!(aws_sdk_dynamodb::Client::update_item)
            .match_requests(|r| {
                let names = r.expression_attribute_names().cloned().unwrap_or_default();
                r.update_expression()
                    == Some("SET #defs.#key = :arn REMOVE #defs.#old0, #defs.#old1")
                    && names.get("#key").map(String::as_str) == Some("1.0:new")
                    && names.get("#old0").map(String::as_str) == Some("0.1:a")
                    && names.get("#old1").map(String::as_str) == Some("0.2:b")
            })
            .then_output(|| {
                aws_sdk_dynamodb::operation::update_item::UpdateItemOutput::builder().build()
            });
        let store = DynamoStore::new(mock_client!(aws_sdk_dynamodb, [&update]), tables());
        store
            .cache_task_definition(
                "u",
                "1.0:new",
                "arn:td:3",
                // The replaced key itself is never removed: SET and REMOVE may not overlap.
                &["0.1:a".into(), "1.0:new".into(), "0.2:b".into()],
            )
            .await
            .unwrap();
        assert_eq!(update.num_calls(), 1);
    }
}
