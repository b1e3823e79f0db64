//! The users table: one item per user, keyed by `user_id` — whether they may start
//! sessions and how many, the slots of their active sessions, and the resources
//! Launch made for them (EFS access point, task role, task definitions).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};

use super::{conditional, decode, s, DynamoStore};
use crate::from_sdk;
use session_core::error::{Error, Result};
use session_core::ports::User;
use session_core::session::SessionId;

/// The most keys one BatchGetItem takes.
const BATCH_GET_KEYS: usize = 100;
/// How often keys left unprocessed are asked again (50 ms doubling: 3 s in all).
const BATCH_GET_RETRIES: u32 = 5;

pub(super) fn user_key(user_id: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([("user_id".to_owned(), s(user_id))])
}

impl DynamoStore {
    pub(super) async fn read_user(&self, user_id: &str) -> Result<Option<User>> {
        self.get_item(&self.tables.users, user_key(user_id)).await
    }

    pub(super) async fn read_users(
        &self,
        user_ids: &BTreeSet<String>,
    ) -> Result<BTreeMap<String, User>> {
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

    pub(super) async fn session_limit_error(&self, user_id: &str, max: u32) -> Result<Error> {
        let user = self.read_user(user_id).await?;
        match user {
            None => Ok(Error::NotAuthorized),
            Some(user) => Ok(Error::SessionLimitReached {
                max,
                active: user.active_sessions.into_iter().collect(),
            }),
        }
    }

    pub(super) async fn remove_slot(&self, user_id: &str, id: &SessionId) -> Result<()> {
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

    pub(super) async fn write_access_point(
        &self,
        user_id: &str,
        access_point_id: &str,
    ) -> Result<String> {
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
                .read_user(user_id)
                .await?
                .and_then(|u| u.efs_access_point_id)
                .ok_or(Error::NotAuthorized),
        }
    }

    pub(super) async fn write_task_role(&self, user_id: &str, role_arn: &str) -> Result<String> {
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
                .read_user(user_id)
                .await?
                .and_then(|u| u.task_role_arn)
                .ok_or(Error::NotAuthorized),
        }
    }

    pub(super) async fn write_task_definition(
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
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    use super::*;
    use crate::dynamodb::tests::tables;
    use session_core::ports::SessionStore;

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
