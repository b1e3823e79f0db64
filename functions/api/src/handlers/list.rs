use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::{json, Value};

use session_core::ports::{Clock, Registry, SessionStore, Workflow};
use session_core::steps::authorize::parse_user_id;

use crate::cursor::{decode_cursor, encode_cursor, Listing};
use crate::error::ApiError;
use crate::http::json_response;
use crate::identity::Caller;
use crate::Api;

pub const DEFAULT_PAGE_SIZE: u32 = 20;
pub const MAX_PAGE_SIZE: u32 = 100;

impl<S: SessionStore, W: Workflow, R: Registry, K: Clock> Api<S, W, R, K> {
    pub(crate) async fn list(
        &self,
        caller: &Caller,
        req: &Request,
    ) -> Result<Response<Body>, ApiError> {
        let query = req.query_string_parameters();
        for name in query.iter().map(|(name, _)| name) {
            if !matches!(name, "limit" | "next_token" | "user_id") {
                return Err(ApiError::bad_request(
                    "invalid_parameter",
                    format!(
                        "unknown query parameter {name:?}; expected limit, next_token or user_id"
                    ),
                ));
            }
        }
        let limit = match query.first("limit") {
            None => DEFAULT_PAGE_SIZE,
            Some(raw) => raw
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_parameter",
                        format!("limit must be a whole number from 1 to {MAX_PAGE_SIZE}"),
                    )
                })?,
        };
        let named = query
            .first("user_id")
            .map(|raw| {
                parse_user_id(Some(&Value::String(raw.to_owned())))
                    .map_err(|e| ApiError::bad_request("invalid_parameter", e.to_string()))
            })
            .transpose()?;
        let user_id = caller.acting_for(named.as_deref())?;
        let listing = Listing {
            caller: &caller.user_id,
            user: &user_id,
        };
        let cursor = query
            .first("next_token")
            .map(|token| decode_cursor(&self.settings.cursor_key, listing, token))
            .transpose()?;
        let page = self
            .store
            .sessions_of_user(&user_id, limit, cursor.as_ref())
            .await?;
        let sessions = self.views(&page.sessions).await?;
        Ok(json_response(
            StatusCode::OK,
            &json!({
                "sessions": sessions,
                "next_token": page
                    .next
                    .as_ref()
                    .map(|next| encode_cursor(&self.settings.cursor_key, listing, next)),
            }),
        ))
    }
}

#[cfg(test)]
mod tests {
    use crate::cursor::tests::cursor;
    use crate::fake;
    use crate::tests::alice;

    use super::*;

    #[tokio::test]
    async fn a_next_token_is_accepted_only_from_the_user_it_was_given_to() {
        let mut store = fake::ReadOnlyStore::default();
        store.page.next = Some(cursor());
        let api = fake::api(store);
        let list = |user: &str, query: &str| {
            fake::request("GET", "/sessions", query, alice(json!({"sub": user})), None)
        };
        let (status, first) = fake::answer(api.handle(list("alice", "")).await);
        assert_eq!(status, 200, "{first}");
        let token = first["next_token"].as_str().expect("a next_token");
        let query = format!("next_token={token}");
        assert_eq!(fake::answer(api.handle(list("alice", &query)).await).0, 200);
        let (status, body) = fake::answer(api.handle(list("bob", &query)).await);
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("invalid_parameter"))
        );
        let tampered = format!("next_token=x{token}");
        assert_eq!(
            fake::answer(api.handle(list("alice", &tampered)).await).0,
            400
        );
    }
}
