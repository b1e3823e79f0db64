//! Sessions and users in DynamoDB, one file per table (`sessions.rs`, `users.rs`):
//! this file holds the store, its port implementation (which table answers each
//! method) and the one write that spans both tables, opening a session. Every status
//! change is a conditional update on the statuses the transition function allows, so
//! duplicate or late writers can never move a session backwards.

mod expr;
mod sessions;
mod users;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;

use crate::from_sdk;
use session_core::config::Tables;
use session_core::error::{Error, Result};
use session_core::ports::{
    ActiveSessions, Change, PageCursor, SessionPage, SessionStore, TaskObservation, User,
};
use session_core::session::{Reason, Session, SessionId};
use users::user_key;

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

fn decode<T: serde::de::DeserializeOwned>(
    what: &'static str,
    item: HashMap<String, AttributeValue>,
) -> Result<T> {
    serde_dynamo::from_item(item).map_err(|e| Error::Aws {
        operation: what,
        message: format!("unreadable item: {e}"),
    })
}

fn to_item<T: serde::Serialize>(
    what: &'static str,
    value: &T,
) -> Result<HashMap<String, AttributeValue>> {
    serde_dynamo::to_item(value).map_err(|e| Error::Aws {
        operation: what,
        message: e.to_string(),
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
impl DynamoStore {
    pub fn new(client: Client, tables: Tables) -> Self {
        Self { client, tables }
    }

    pub fn connect(sdk: &aws_config::SdkConfig, tables: Tables) -> Self {
        Self::new(Client::new(sdk), tables)
    }

    /// One item of `table` by its key, read consistently.
    async fn get_item<T: serde::de::DeserializeOwned>(
        &self,
        table: &str,
        key: HashMap<String, AttributeValue>,
    ) -> Result<Option<T>> {
        let out = self
            .client
            .get_item()
            .table_name(table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| from_sdk("GetItem", e))?;
        out.item.map(|item| decode("GetItem", item)).transpose()
    }
}

/// Attempts of the session-opening transaction while DynamoDB cancels it for a
/// conflict with another transaction on the same user.
pub const OPEN_ATTEMPTS: u32 = 3;

impl SessionStore for DynamoStore {
    async fn user(&self, user_id: &str) -> Result<Option<User>> {
        self.read_user(user_id).await
    }

    async fn users(&self, user_ids: &BTreeSet<String>) -> Result<BTreeMap<String, User>> {
        self.read_users(user_ids).await
    }

    async fn open(&self, session: &Session, max_sessions: u32) -> Result<()> {
        let mut item = to_item("PutItem", session)?;
        item.insert(ACTIVE_USER_ID.to_owned(), s(session.user_id.as_str()));
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
            if let Some(existing) = self.read_session(&session.session_id).await? {
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
        self.read_session(id).await
    }

    async fn apply(&self, id: &SessionId, change: Change) -> Result<Option<Session>> {
        self.write_change(id, change).await
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
        if let Some(updated) = self.write_change(&session.session_id, change).await? {
            return Ok(Some(updated));
        }
        // Authorize refused the session before creating it: record it as failed.
        self.put_failed(session, reason, cause, at).await
    }

    async fn store_ip_token(&self, id: &SessionId, token: &str) -> Result<Option<Session>> {
        self.write_token(id, "ip_token", token).await
    }

    async fn store_stop_token(&self, id: &SessionId, token: &str) -> Result<Option<Session>> {
        self.write_token(id, "stop_token", token).await
    }

    async fn store_tasks_stopped_token(
        &self,
        id: &SessionId,
        token: &str,
    ) -> Result<Option<Session>> {
        self.write_token(id, "tasks_stopped_token", token).await
    }

    async fn observe_task(
        &self,
        id: &SessionId,
        observation: &TaskObservation,
    ) -> Result<Option<Session>> {
        self.write_observation(id, observation).await
    }

    async fn discard_unstarted(&self, id: &SessionId) -> Result<bool> {
        self.delete_unstarted(id).await
    }

    async fn release_slot(&self, user_id: &str, id: &SessionId) -> Result<()> {
        self.remove_slot(user_id, id).await
    }

    async fn set_access_point(&self, user_id: &str, access_point_id: &str) -> Result<String> {
        self.write_access_point(user_id, access_point_id).await
    }

    async fn set_task_role(&self, user_id: &str, role_arn: &str) -> Result<String> {
        self.write_task_role(user_id, role_arn).await
    }

    async fn cache_task_definition(
        &self,
        user_id: &str,
        key: &str,
        arn: &str,
        evict: &[String],
    ) -> Result<()> {
        self.write_task_definition(user_id, key, arn, evict).await
    }

    async fn active_sessions(&self) -> Result<ActiveSessions> {
        self.scan_active().await
    }

    async fn sessions_of_user(
        &self,
        user_id: &str,
        limit: u32,
        after: Option<&PageCursor>,
    ) -> Result<SessionPage> {
        self.query_of_user(user_id, limit, after).await
    }

    async fn touch(
        &self,
        id: &SessionId,
        user_id: &str,
        at: chrono::DateTime<chrono::Utc>,
        min_interval: chrono::Duration,
    ) -> Result<bool> {
        self.write_activity(id, user_id, at, min_interval).await
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    use aws_sdk_dynamodb::types::error::TransactionCanceledException;
    use aws_sdk_dynamodb::types::CancellationReason;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    use super::*;
    use session_core::session::{UserId, Version};

    pub(crate) fn tables() -> Tables {
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
            UserId::parse("u").unwrap(),
            Version::default(),
            chrono::Utc::now(),
        );
        let err = store.open(&session, 1).await.unwrap_err();
        assert_eq!(err.error_type(), "SessionLimitReached");
        assert_eq!(
            err.to_string(),
            "session limit of 1 reached; active: sess-active"
        );
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
                UserId::parse("u").unwrap(),
                Version::default(),
                chrono::Utc::now(),
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
}
