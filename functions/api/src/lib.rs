//! The public API (API Gateway HTTP API, payload 2.0): start, list, read, stop and
//! heartbeat sessions, and list the versions a session may run. Identity comes only
//! from the JWT claims; another user's session is a 404. A start admits the session
//! (the same Authorize step the state machine runs: user, image, slot) before it starts
//! the execution, so a refusal is an answer here and not a failed execution later, and
//! a stop can land at any moment after.

mod cursor;
pub mod error;
pub mod event;
#[cfg(test)]
mod fake;
mod handlers;
mod http;
mod idempotency;
pub mod identity;
mod route;
pub mod view;

use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Deserialize;
use serde_json::Value;

use session_core::config::{AdmissionSettings, ApiSettings};
use session_core::ports::{Clock, Registry, SessionStore, Workflow};

pub use error::ApiError;
pub use handlers::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use http::{error_response, parse_body};
pub use http::{IDEMPOTENCY_HEADER, MAX_BODY_BYTES};
pub use idempotency::idempotent_session_id;
pub use identity::{Caller, Token};
pub use route::Route;

/// The API with its ports: DynamoDB, Step Functions and ECR in Lambda; whatever a
/// test gives it otherwise.
pub struct Api<S, W, R, K> {
    pub settings: ApiSettings,
    pub admission: AdmissionSettings,
    pub store: S,
    pub workflow: W,
    pub registry: R,
    pub clock: K,
}

/// The seed's body for `POST /session`.
#[derive(Debug, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
enum SeedRequest {
    Start {
        #[serde(default)]
        version: Option<String>,
        #[serde(default)]
        user_id: Option<String>,
    },
    Stop {
        session_id: String,
        #[serde(default)]
        user_id: Option<String>,
    },
}

/// The body of `POST /sessions` (empty means all defaults).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    user_id: Option<String>,
}

impl<S: SessionStore, W: Workflow, R: Registry, K: Clock> Api<S, W, R, K> {
    /// Answers one API Gateway event, whatever it holds: one that carries no request
    /// `http` can represent is a 400.
    pub async fn answer(&self, event: Value) -> ApiGatewayV2httpResponse {
        let response = match event::request_from_event(event) {
            Ok(req) => self.handle(req).await,
            Err(err) => {
                tracing::info!(status = err.status.as_u16(), message = %err.message, "unreadable event");
                error_response(&err)
            }
        };
        event::event_from_response(response)
    }

    /// Answers one request. Never panics on input and never answers bad input with 5xx.
    pub async fn handle(&self, req: Request) -> Response<Body> {
        let path = match req.raw_http_path() {
            "" => req.uri().path().to_owned(),
            raw => raw.to_owned(),
        };
        let method = req.method().clone();
        let result = match Route::of(&method, &path) {
            Ok(route) => self.route(route, &req).await,
            Err(err) => Err(err),
        };
        let response = result.unwrap_or_else(|err| error_response(&err));
        tracing::info!(%method, path = %path, status = response.status().as_u16(), "answered");
        response
    }

    async fn route(&self, route: Route<'_>, req: &Request) -> Result<Response<Body>, ApiError> {
        let token = Token::from_request(
            req,
            &self.settings.identity_claim,
            &self.settings.admin_scope,
        )?;
        let caller = Caller::of(token, &self.store).await?;
        match route {
            Route::Seed => match parse_body::<SeedRequest>(req, None)? {
                SeedRequest::Start { version, user_id } => {
                    self.start(&caller, StartBody { version, user_id }, req)
                        .await
                }
                SeedRequest::Stop {
                    session_id,
                    user_id,
                } => {
                    caller.acting_for(user_id.as_deref())?;
                    self.stop(&caller, &session_id).await
                }
            },
            Route::Start => {
                let body = parse_body(req, Some(StartBody::default()))?;
                self.start(&caller, body, req).await
            }
            Route::List => self.list(&caller, req).await,
            Route::Get(id) => self.read(&caller, id).await,
            Route::Stop(id) => self.stop(&caller, id).await,
            Route::Heartbeat(id) => self.heartbeat(&caller, id).await,
            Route::Versions => self.versions(req).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    pub(crate) fn alice(claims: Value) -> Value {
        let mut all = json!({"sub": "alice", "scope": null, "token_use": "access"});
        all.as_object_mut()
            .unwrap()
            .extend(claims.as_object().unwrap().clone());
        all
    }

    const ADMIN_SCOPE: &str = "sessions/admin";

    #[tokio::test]
    async fn the_admin_scope_without_the_admin_flag_is_an_ordinary_user() {
        let api = fake::api(
            fake::ReadOnlyStore::default()
                .with_user("alice", false)
                .with_session("sess-of-bob", "bob"),
        );
        let scoped = alice(json!({"scope": ADMIN_SCOPE}));
        let get = |path: &str| fake::request("GET", path, "", scoped.clone(), None);
        let (status, foreign) = fake::answer(api.handle(get("/sessions/sess-of-bob")).await);
        assert_eq!(
            (status, foreign["error"]["code"].as_str()),
            (404, Some("session_not_found"))
        );
        let (_, missing) = fake::answer(api.handle(get("/sessions/sess-of-nobody")).await);
        assert_eq!(
            foreign["error"]["message"]
                .as_str()
                .unwrap()
                .replace("sess-of-bob", "X"),
            missing["error"]["message"]
                .as_str()
                .unwrap()
                .replace("sess-of-nobody", "X"),
        );
        let list = fake::request("GET", "/sessions", "user_id=bob", scoped.clone(), None);
        let (status, body) = fake::answer(api.handle(list).await);
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some("forbidden"))
        );
        let start = fake::request(
            "POST",
            "/sessions",
            "",
            scoped,
            Some(json!({"user_id": "bob"})),
        );
        let (status, body) = fake::answer(api.handle(start).await);
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some("forbidden"))
        );
    }

    #[tokio::test]
    async fn the_admin_flag_without_the_admin_scope_is_an_ordinary_user() {
        let api = fake::api(
            fake::ReadOnlyStore::default()
                .with_user("alice", true)
                .with_session("sess-of-bob", "bob"),
        );
        let get = fake::request("GET", "/sessions/sess-of-bob", "", alice(json!({})), None);
        assert_eq!(fake::answer(api.handle(get).await).0, 404);
        assert_eq!(
            api.store
                .user_reads
                .load(std::sync::atomic::Ordering::SeqCst),
            0
        );
    }

    #[tokio::test]
    async fn the_admin_scope_and_the_admin_flag_make_an_admin() {
        let api = fake::api(
            fake::ReadOnlyStore::default()
                .with_user("alice", true)
                .with_session("sess-of-bob", "bob"),
        );
        let scoped = alice(json!({"scope": format!("openid {ADMIN_SCOPE}")}));
        let get = fake::request("GET", "/sessions/sess-of-bob", "", scoped.clone(), None);
        let (status, body) = fake::answer(api.handle(get).await);
        assert_eq!(
            (status, body["user_id"].as_str()),
            (200, Some("bob")),
            "{body}"
        );
        let list = fake::request("GET", "/sessions", "user_id=bob", scoped, None);
        assert_eq!(fake::answer(api.handle(list).await).0, 200);
        assert_eq!(
            api.store
                .user_reads
                .load(std::sync::atomic::Ordering::SeqCst),
            2
        );
    }

    #[tokio::test]
    async fn an_id_token_is_a_401() {
        let api = fake::api(fake::ReadOnlyStore::default());
        let list = fake::request(
            "GET",
            "/sessions",
            "",
            alice(json!({"token_use": "id"})),
            None,
        );
        let (status, body) = fake::answer(api.handle(list).await);
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (401, Some("unauthenticated")),
            "{body}"
        );
    }

    #[tokio::test]
    async fn an_access_token_and_a_token_without_token_use_pass() {
        let api = fake::api(fake::ReadOnlyStore::default());
        for token_use in [json!("access"), Value::Null] {
            let claims = alice(json!({ "token_use": token_use }));
            let list = fake::request("GET", "/sessions", "", claims, None);
            let (status, body) = fake::answer(api.handle(list).await);
            assert_eq!(status, 200, "token_use {token_use}: {body}");
        }
    }
}
