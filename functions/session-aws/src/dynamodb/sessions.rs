//! The sessions table: one item per session, keyed by `session_id`, with the
//! `by-user` index (a user's sessions, newest first) and the sparse `active` index
//! (sessions not yet ended). Every status change is one conditional update on the
//! statuses `Status::on` allows.

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use super::expr::UpdateExpr;
use super::{
    conditional, decode, n, s, to_item, DynamoStore, ACTIVE_INDEX, ACTIVE_USER_ID, BY_USER_INDEX,
    EXPIRES_AT,
};
use crate::from_sdk;
use session_core::error::Result;
use session_core::ports::{ActiveSessions, Change, PageCursor, SessionPage, TaskObservation};
use session_core::session::{timestamp, Event, Reason, Session, SessionId, Status, Urls};

pub(super) fn session_key(id: &SessionId) -> HashMap<String, AttributeValue> {
    HashMap::from([("session_id".to_owned(), s(id.as_str()))])
}

impl DynamoStore {
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

    pub(super) fn change_expr(&self, change: Change) -> (Event, UpdateExpr) {
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

    pub(super) async fn read_session(&self, id: &SessionId) -> Result<Option<Session>> {
        self.get_item(&self.tables.sessions, session_key(id)).await
    }

    pub(super) async fn write_change(
        &self,
        id: &SessionId,
        change: Change,
    ) -> Result<Option<Session>> {
        let (event, mut expr) = self.change_expr(change);
        let condition = expr.status_in(&Status::predecessors(event, event.target()));
        self.update_session(id, expr, condition).await
    }

    /// Records as failed a session Authorize refused before creating it; `None` when
    /// an item with its id exists after all.
    pub(super) async fn put_failed(
        &self,
        session: &Session,
        reason: Reason,
        cause: &str,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<Session>> {
        let mut failed = session.clone();
        failed.status = Status::Failed;
        failed.stop_reason = Some(reason);
        failed.failure_cause = Some(cause.to_owned());
        failed.stopped_at = Some(at.into());
        failed.status_changed_at = Some(at.into());
        let mut item = to_item("PutItem", &failed)?;
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

    /// Stores a task token of the session's execution in `attribute`.
    pub(super) async fn write_token(
        &self,
        id: &SessionId,
        attribute: &str,
        token: &str,
    ) -> Result<Option<Session>> {
        let mut expr = UpdateExpr::default();
        expr.set(attribute, s(token));
        self.update_session(id, expr, "attribute_exists(session_id)".into())
            .await
    }

    pub(super) async fn write_observation(
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

    pub(super) async fn delete_unstarted(&self, id: &SessionId) -> Result<bool> {
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

    pub(super) async fn scan_active(&self) -> Result<ActiveSessions> {
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

    pub(super) async fn query_of_user(
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
                created_at: last.created_at.to_string(),
                session_id: last.session_id.clone(),
            });
        Ok(SessionPage { sessions, next })
    }

    pub(super) async fn write_activity(
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
    use aws_smithy_mocks::mock_client;

    use super::*;
    use crate::dynamodb::tests::tables;

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
}
