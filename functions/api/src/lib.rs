//! The public API (API Gateway HTTP API, payload 2.0): start, list, read, stop and
//! heartbeat sessions, and list the versions a session may run. Identity comes only
//! from the JWT claims; another user's session is a 404. A start admits the session
//! (the same Authorize step the state machine runs: user, image, slot) before it starts
//! the execution, so a refusal is an answer here and not a failed execution later, and
//! a stop can land at any moment after.

pub mod error;
pub mod event;
#[cfg(test)]
mod fake;
pub mod identity;
pub mod view;

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use lambda_http::http::{HeaderValue, Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use session_core::config::{AdmissionSettings, ApiSettings, Secret};
use session_core::limits::UserLimits;
use session_core::ports::{Clock, PageCursor, Registry, SessionStore, Workflow};
use session_core::session::{timestamp, Reason, Session, SessionId, Status, SESSION_ID_PREFIX};
use session_core::steps::authorize::{parse_user_id, parse_version};
use session_core::steps::request_stop::{request_stop, StopRequest};
use session_core::steps::start::{start, StartSession, Started};
use session_core::versions::available_versions;

pub use error::ApiError;
pub use identity::{Caller, Token};
use view::{HeartbeatView, SessionView, VersionsView};

/// Bodies are a few fields; anything larger is refused before it is parsed.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
pub const DEFAULT_PAGE_SIZE: u32 = 20;
pub const MAX_PAGE_SIZE: u32 = 100;
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
const MAX_IDEMPOTENCY_KEY_LEN: usize = 128;
/// Far more than a token of this API takes (about 220 characters); anything longer is
/// refused before it is decoded.
const MAX_PAGE_TOKEN_LEN: usize = 512;

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

/// The routes, as API Gateway's route keys name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route<'a> {
    /// `POST /session`: the seed's `{"action": "start" | "stop", ...}`.
    Seed,
    Start,
    List,
    Get(&'a str),
    Stop(&'a str),
    Heartbeat(&'a str),
    /// `GET /versions`: the image versions a session may run.
    Versions,
}

impl<'a> Route<'a> {
    /// Every route key the API serves (Terraform declares exactly these).
    pub const KEYS: [&'static str; 7] = [
        "POST /session",
        "POST /sessions",
        "GET /sessions",
        "GET /sessions/{id}",
        "DELETE /sessions/{id}",
        "POST /sessions/{id}/heartbeat",
        "GET /versions",
    ];

    /// Matches a request; `Err` is the 404 or 405 to answer.
    pub fn of(method: &Method, path: &'a str) -> Result<Self, ApiError> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let route = match (method, segments.as_slice()) {
            (&Method::POST, ["session"]) => Route::Seed,
            (&Method::POST, ["sessions"]) => Route::Start,
            (&Method::GET, ["sessions"]) => Route::List,
            (&Method::GET, ["sessions", id]) => Route::Get(id),
            (&Method::DELETE, ["sessions", id]) => Route::Stop(id),
            (&Method::POST, ["sessions", id, "heartbeat"]) => Route::Heartbeat(id),
            (&Method::GET, ["versions"]) => Route::Versions,
            (
                _,
                ["session"]
                | ["sessions"]
                | ["sessions", _]
                | ["sessions", _, "heartbeat"]
                | ["versions"],
            ) => {
                return Err(ApiError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    format!("{method} is not allowed on {path}"),
                ))
            }
            _ => {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "route_not_found",
                    "no such route",
                ))
            }
        };
        Ok(route)
    }
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

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let mut response = Response::new(Body::Text(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert("cache-control", HeaderValue::from_static("no-store"));
    response
}

fn error_response(err: &ApiError) -> Response<Body> {
    let mut response = json_response(err.status, &err.body());
    if err.status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
    }
    response
}

/// Parses a JSON body of at most [`MAX_BODY_BYTES`]; an empty body is `default`.
fn parse_body<T: serde::de::DeserializeOwned>(
    req: &Request,
    default: Option<T>,
) -> Result<T, ApiError> {
    let raw: &[u8] = req.body().as_ref();
    if raw.len() > MAX_BODY_BYTES {
        return Err(ApiError::bad_request(
            "body_too_large",
            format!(
                "the body has {} bytes; at most {MAX_BODY_BYTES} are accepted",
                raw.len()
            ),
        ));
    }
    if raw.iter().all(u8::is_ascii_whitespace) {
        return default
            .ok_or_else(|| ApiError::bad_request("invalid_json", "a JSON body is required"));
    }
    let text = std::str::from_utf8(raw)
        .map_err(|_| ApiError::bad_request("invalid_json", "the body is not UTF-8"))?;
    let value: Value = serde_json::from_str(text)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("the body is not JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "invalid_request",
            "the body must be a JSON object",
        ));
    }
    serde_json::from_value(value)
        .map_err(|e| ApiError::bad_request("invalid_request", e.to_string()))
}

fn parse_session_id(raw: &str) -> Result<SessionId, ApiError> {
    SessionId::parse(raw).map_err(|e| ApiError::bad_request("invalid_session_id", e.to_string()))
}

/// A start's session id when the client sent an `Idempotency-Key`: the same key of the
/// same user always names the same session, so a repeat can never make a second one.
pub fn idempotent_session_id(user_id: &str, key: &str) -> Result<SessionId, ApiError> {
    let valid = !key.is_empty()
        && key.len() <= MAX_IDEMPOTENCY_KEY_LEN
        && key.bytes().all(|b| b.is_ascii_graphic());
    if !valid {
        return Err(ApiError::bad_request(
            "invalid_idempotency_key",
            format!(
                "the Idempotency-Key header must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"
            ),
        ));
    }
    let digest = Sha256::new()
        .chain_update(user_id.as_bytes())
        .chain_update([0u8])
        .chain_update(key.as_bytes())
        .finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    parse_session_id(&format!("{SESSION_ID_PREFIX}{hex}"))
}

fn idempotency_key_reused(first: &Session) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "idempotency_key_reused",
        format!(
            "this Idempotency-Key started session {} with version {}",
            first.session_id, first.version
        ),
    )
}

/// Whose listing a page token belongs to: the caller who was given it and the user
/// whose sessions it pages through.
#[derive(Clone, Copy, Debug)]
struct Listing<'a> {
    caller: &'a str,
    user: &'a str,
}

/// The length of a page token's MAC (HMAC-SHA256).
const PAGE_MAC_LEN: usize = 32;

/// The MAC of a token's JSON for one listing. User ids hold no control characters,
/// so the NUL separators make the data unambiguous.
fn page_mac(key: &Secret, listing: Listing<'_>, json: &[u8]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.bytes())
        .expect("HMAC takes keys of any length");
    for part in [
        listing.caller.as_bytes(),
        b"\0",
        listing.user.as_bytes(),
        b"\0",
        json,
    ] {
        mac.update(part);
    }
    mac
}

/// A page token: base64url of the HMAC-SHA256 of the cursor for the listing it was
/// given in, then the cursor as JSON. DynamoDB refuses a start key that is not a key
/// of the index (a 500 here), so only tokens this API gave, to this caller for this
/// listing, are accepted.
fn encode_cursor(key: &Secret, listing: Listing<'_>, cursor: &PageCursor) -> String {
    let json = serde_json::to_vec(cursor).unwrap_or_default();
    let mut token = page_mac(key, listing, &json)
        .finalize()
        .into_bytes()
        .to_vec();
    token.extend(json);
    URL_SAFE_NO_PAD.encode(token)
}

fn decode_cursor(key: &Secret, listing: Listing<'_>, token: &str) -> Result<PageCursor, ApiError> {
    let invalid = || {
        ApiError::bad_request(
            "invalid_parameter",
            "next_token is not a token this API gave",
        )
    };
    if token.len() > MAX_PAGE_TOKEN_LEN {
        return Err(invalid());
    }
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    if bytes.len() < PAGE_MAC_LEN {
        return Err(invalid());
    }
    let (mac, json) = bytes.split_at(PAGE_MAC_LEN);
    page_mac(key, listing, json)
        .verify_slice(mac)
        .map_err(|_| invalid())?;
    // Even a token that carries a valid MAC is checked, so a leaked key cannot send
    // DynamoDB a start key in a form the index never holds. `SessionId` checks itself.
    let cursor: PageCursor = serde_json::from_slice(json).map_err(|_| invalid())?;
    if !is_table_timestamp(&cursor.created_at) {
        return Err(invalid());
    }
    Ok(cursor)
}

/// Whether `raw` is a timestamp exactly as the tables hold them ([`timestamp`]).
fn is_table_timestamp(raw: &str) -> bool {
    raw.len() <= 32
        && chrono::DateTime::parse_from_rfc3339(raw)
            .is_ok_and(|at| timestamp(at.with_timezone(&chrono::Utc)) == raw)
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
            Route::Get(id) => {
                let session = self.visible(&caller, id).await?;
                Ok(json_response(StatusCode::OK, &self.view(&session).await?))
            }
            Route::Stop(id) => self.stop(&caller, id).await,
            Route::Heartbeat(id) => self.heartbeat(&caller, id).await,
            Route::Versions => self.versions(req).await,
        }
    }

    /// The limits the owners of running sessions among `sessions` are held to. Each
    /// owner's item is read once per answer (a listing is one owner's), and only when
    /// one of their sessions runs: only a running session shows when it would stop.
    async fn limits_of(
        &self,
        sessions: &[Session],
    ) -> Result<BTreeMap<String, UserLimits>, ApiError> {
        let mut limits = BTreeMap::new();
        for session in sessions.iter().filter(|s| s.status == Status::Running) {
            if !limits.contains_key(&session.user_id) {
                let owner = self.store.user(&session.user_id).await?;
                limits.insert(
                    session.user_id.clone(),
                    self.settings.limits.of_user(owner.as_ref()),
                );
            }
        }
        Ok(limits)
    }

    /// The views of `sessions`, each running one with when the reaper would stop it.
    async fn views(&self, sessions: &[Session]) -> Result<Vec<Value>, ApiError> {
        let limits = self.limits_of(sessions).await?;
        Ok(sessions
            .iter()
            .map(|s| SessionView::of(s, limits.get(&s.user_id)).json())
            .collect())
    }

    async fn view(&self, session: &Session) -> Result<Value, ApiError> {
        let mut views = self.views(std::slice::from_ref(session)).await?;
        Ok(views.pop().unwrap_or(Value::Null))
    }

    /// A session the caller may see; anyone else's is indistinguishable from none.
    async fn visible(&self, caller: &Caller, raw_id: &str) -> Result<Session, ApiError> {
        let id = parse_session_id(raw_id)?;
        self.store
            .session(&id)
            .await?
            .filter(|s| caller.may_access(&s.user_id))
            .ok_or_else(|| ApiError::session_not_found(id.as_str()))
    }

    async fn start(
        &self,
        caller: &Caller,
        body: StartBody,
        req: &Request,
    ) -> Result<Response<Body>, ApiError> {
        let user_id = caller.acting_for(body.user_id.as_deref())?;
        let version = parse_version(body.version.map(Value::String).as_ref())?;
        let key = req
            .headers()
            .get(IDEMPOTENCY_HEADER)
            .map(|v| v.to_str().unwrap_or(""));
        let id = match key {
            Some(key) => idempotent_session_id(&user_id, key)?,
            None => SessionId::generate(),
        };
        let started = start(
            StartSession {
                session_id: id.clone(),
                keyed: key.is_some(),
                user_id,
                version,
                execution_arn: self.settings.execution_arn(id.as_str()),
            },
            &self.admission,
            &self.settings.state_machine_arn,
            &self.store,
            &self.registry,
            &self.workflow,
            &self.clock,
        )
        .await?;
        let session = match started {
            Started::Accepted { session, .. } => session,
            Started::KeyReused(first) => return Err(idempotency_key_reused(&first)),
        };
        let mut body = self.view(&session).await?;
        let status_url = format!("/sessions/{id}");
        body["status_url"] = json!(status_url);
        let mut response = json_response(StatusCode::ACCEPTED, &body);
        if let Ok(location) = HeaderValue::from_str(&status_url) {
            response.headers_mut().insert("location", location);
        }
        Ok(response)
    }

    async fn stop(&self, caller: &Caller, raw_id: &str) -> Result<Response<Body>, ApiError> {
        let session = self.visible(caller, raw_id).await?;
        let id = &session.session_id;
        let outcome = request_stop(id, Reason::User, &self.store, &self.workflow).await?;
        let status = match outcome {
            StopRequest::NotFound => return Err(ApiError::session_not_found(id.as_str())),
            StopRequest::Requested { .. } | StopRequest::AlreadyStopping => StatusCode::ACCEPTED,
            StopRequest::AlreadyEnded { .. } => StatusCode::OK,
        };
        let now = self.store.session(id).await?.unwrap_or(session);
        let mut body = self.view(&now).await?;
        body["message"] = json!(match now.status {
            Status::Stopping => "the session is stopping",
            Status::Stopped => "the session has ended",
            _ => "the session has already ended",
        });
        Ok(json_response(status, &body))
    }

    async fn heartbeat(&self, caller: &Caller, raw_id: &str) -> Result<Response<Body>, ApiError> {
        let session = self.visible(caller, raw_id).await?;
        if session.status != Status::Running {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "session_not_running",
                format!("the session is {}, not running", session.status),
            )
            .with("status", json!(session.status)));
        }
        let now = self.clock.now();
        let interval = chrono::Duration::seconds(
            i64::try_from(self.settings.limits.heartbeat_interval_s).unwrap_or(i64::MAX / 1000),
        );
        let mut session = session;
        let recorded = self
            .store
            .touch(&session.session_id, &session.user_id, now, interval)
            .await?;
        if recorded {
            session.last_activity_at = Some(timestamp(now));
        }
        // Read after the beat is written, so that a failed read cannot cost the user
        // the activity it records.
        let owner = self.store.user(&session.user_id).await?;
        let limits = self.settings.limits.of_user(owner.as_ref());
        Ok(json_response(
            StatusCode::OK,
            &HeartbeatView::of(&session, recorded, &limits).json(),
        ))
    }

    async fn list(&self, caller: &Caller, req: &Request) -> Result<Response<Body>, ApiError> {
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

    /// The versions a session may run, newest first ([`available_versions`]). Only a
    /// deployment that checks images looks into its registry (another account's may be
    /// out of its reach): without the check it lists none and says so, and a start
    /// takes any valid tag.
    async fn versions(&self, req: &Request) -> Result<Response<Body>, ApiError> {
        if let Some((name, _)) = req.query_string_parameters().iter().next() {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                format!("unknown query parameter {name:?}; this route takes none"),
            ));
        }
        if !self.admission.check_images {
            return Ok(json_response(
                StatusCode::OK,
                &VersionsView::not_listed().json(),
            ));
        }
        let versions = available_versions(&self.admission.template, &self.registry).await?;
        Ok(json_response(
            StatusCode::OK,
            &VersionsView::listed(&versions).json(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_exactly_the_route_keys() {
        let cases = [
            (Method::POST, "/session", Route::Seed),
            (Method::POST, "/sessions", Route::Start),
            (Method::GET, "/sessions/", Route::List),
            (Method::GET, "/sessions/sess-1", Route::Get("sess-1")),
            (Method::DELETE, "/sessions/sess-1", Route::Stop("sess-1")),
            (
                Method::POST,
                "/sessions/sess-1/heartbeat",
                Route::Heartbeat("sess-1"),
            ),
            (Method::GET, "/versions", Route::Versions),
        ];
        for (method, path, route) in cases {
            assert_eq!(Route::of(&method, path).unwrap(), route, "{method} {path}");
        }
        for (method, path) in [(Method::PUT, "/sessions/x"), (Method::POST, "/versions")] {
            assert_eq!(
                Route::of(&method, path).unwrap_err().status,
                StatusCode::METHOD_NOT_ALLOWED
            );
        }
        assert_eq!(
            Route::of(&Method::GET, "/admin").unwrap_err().status,
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn an_idempotency_key_names_one_session_per_user() {
        let a = idempotent_session_id("alice", "k-1").unwrap();
        assert_eq!(a, idempotent_session_id("alice", "k-1").unwrap());
        assert_ne!(a, idempotent_session_id("bob", "k-1").unwrap());
        assert_ne!(a, idempotent_session_id("alice", "k-2").unwrap());
        assert!(a.as_str().starts_with(SESSION_ID_PREFIX));
        for bad in ["", "with space", &"k".repeat(129), "é"] {
            assert_eq!(
                idempotent_session_id("alice", bad).unwrap_err().code,
                "invalid_idempotency_key"
            );
        }
    }

    const ALICE: Listing<'static> = Listing {
        caller: "alice",
        user: "alice",
    };

    fn cursor() -> PageCursor {
        PageCursor {
            created_at: "2026-11-26T00:00:00.000Z".into(),
            session_id: SessionId::parse("sess-1").unwrap(),
        }
    }

    /// A token over any JSON, with a valid MAC: what a holder of the key could make.
    fn signed(listing: Listing<'_>, json: &str) -> String {
        let mut token = page_mac(&fake::cursor_key(), listing, json.as_bytes())
            .finalize()
            .into_bytes()
            .to_vec();
        token.extend(json.as_bytes());
        URL_SAFE_NO_PAD.encode(token)
    }

    /// A token over any JSON with a made-up MAC.
    fn forged(json: &str) -> String {
        let mut token = vec![0u8; PAGE_MAC_LEN];
        token.extend(json.as_bytes());
        URL_SAFE_NO_PAD.encode(token)
    }

    fn refused(listing: Listing<'_>, token: &str) -> bool {
        decode_cursor(&fake::cursor_key(), listing, token)
            .is_err_and(|e| e.status == StatusCode::BAD_REQUEST && e.code == "invalid_parameter")
    }

    #[test]
    fn a_page_token_of_this_api_round_trips() {
        let key = fake::cursor_key();
        let token = encode_cursor(&key, ALICE, &cursor());
        assert!(token.len() <= MAX_PAGE_TOKEN_LEN);
        assert_eq!(decode_cursor(&key, ALICE, &token).unwrap(), cursor());
        assert_eq!(
            decode_cursor(
                &key,
                ALICE,
                &signed(ALICE, &serde_json::to_string(&cursor()).unwrap())
            )
            .unwrap(),
            cursor()
        );
    }

    #[test]
    fn a_page_token_with_a_flipped_byte_is_a_400() {
        let token = encode_cursor(&fake::cursor_key(), ALICE, &cursor());
        for at in 0..token.len() {
            let mut bytes = token.clone().into_bytes();
            bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
            let flipped = String::from_utf8(bytes).unwrap();
            assert!(refused(ALICE, &flipped), "byte {at}: {flipped}");
        }
    }

    #[test]
    fn a_page_token_of_another_user_or_listing_or_key_is_a_400() {
        let token = encode_cursor(&fake::cursor_key(), ALICE, &cursor());
        let bob = Listing {
            caller: "bob",
            user: "bob",
        };
        let bob_for_alice = Listing {
            caller: "bob",
            user: "alice",
        };
        let alice_for_bob = Listing {
            caller: "alice",
            user: "bob",
        };
        for other in [bob, bob_for_alice, alice_for_bob] {
            assert!(refused(other, &token), "{other:?}");
        }
        let other_key = Secret::new("another key of at least thirty-two bytes");
        assert!(decode_cursor(&other_key, ALICE, &token).is_err());
    }

    #[test]
    fn a_page_token_whose_json_holds_no_key_of_the_index_is_a_400_even_when_signed() {
        let long = "a".repeat(4096);
        let payloads = [
            r#"{"created_at":"2026-11-26T00:00:00.000Z","session_id":""}"#.to_owned(),
            format!(r#"{{"created_at":"2026-11-26T00:00:00.000Z","session_id":"{long}"}}"#),
            r#"{"created_at":"2026-11-26T00:00:00.000Z","session_id":"a b"}"#.to_owned(),
            r#"{"created_at":"","session_id":"sess-1"}"#.to_owned(),
            format!(r#"{{"created_at":"{long}","session_id":"sess-1"}}"#),
            r#"{"created_at":"2026-11-26","session_id":"sess-1"}"#.to_owned(),
            r#"{"created_at":"2026-11-26T00:00:00+01:00","session_id":"sess-1"}"#.to_owned(),
            r#"{"session_id":"sess-1"}"#.to_owned(),
            "not json".to_owned(),
        ];
        for json in &payloads {
            assert!(refused(ALICE, &forged(json)), "forged {json}");
            assert!(refused(ALICE, &signed(ALICE, json)), "signed {json}");
        }
    }

    #[test]
    fn a_page_token_that_is_not_base64_is_a_400() {
        let token = encode_cursor(&fake::cursor_key(), ALICE, &cursor());
        for bad in [
            "",
            ".",
            "%%%",
            "not base64!",
            &token[..token.len() - 1],
            &format!("{token}="),
            &format!("{token}.x"),
            &token[..PAGE_MAC_LEN],
        ] {
            assert!(refused(ALICE, bad), "{bad}");
        }
    }

    fn alice(claims: Value) -> Value {
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

    /// Alice with her own 10-minute idle timeout, a session of hers running since
    /// 10:01 and one starting; `page` lists both, the running one first.
    fn alice_running_and_starting() -> fake::ReadOnlyStore {
        let mut store = fake::ReadOnlyStore::default()
            .with_user("alice", false)
            .with_session("sess-running", "alice")
            .with_session("sess-starting", "alice");
        store.users.get_mut("alice").unwrap().idle_timeout_s = Some(600);
        let running = store
            .sessions
            .get_mut(&SessionId::parse("sess-running").unwrap())
            .unwrap();
        running.status = Status::Running;
        running.started_at = Some("2026-11-26T10:01:00.000Z".into());
        store.page.sessions = store.sessions.values().cloned().collect();
        store
            .page
            .sessions
            .sort_by(|a, b| a.session_id.cmp(&b.session_id));
        store
    }

    fn user_reads(api: &fake::FakeApi) -> usize {
        api.store
            .user_reads
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    #[tokio::test]
    async fn a_listing_reads_the_owners_item_once_and_shows_the_stop_times_of_running_sessions() {
        let mut store = alice_running_and_starting();
        let mut another = store.page.sessions[0].clone();
        another.session_id = SessionId::parse("sess-running-too").unwrap();
        another.last_activity_at = Some("2026-11-26T10:30:00.000Z".into());
        store.page.sessions.insert(1, another);
        let api = fake::api(store);
        let list = fake::request("GET", "/sessions", "", alice(json!({})), None);
        let (status, body) = fake::answer(api.handle(list).await);
        assert_eq!(status, 200, "{body}");
        let stops: Vec<(&str, &Value, &Value)> = body["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["status"].as_str().unwrap(),
                    &s["idle_stop_at"],
                    &s["ends_at"],
                )
            })
            .collect();
        assert_eq!(
            stops,
            [
                (
                    "running",
                    &json!("2026-11-26T10:11:00.000Z"),
                    &json!("2026-11-26T18:00:00.000Z")
                ),
                (
                    "running",
                    &json!("2026-11-26T10:40:00.000Z"),
                    &json!("2026-11-26T18:00:00.000Z")
                ),
                ("starting", &Value::Null, &Value::Null),
            ]
        );
        assert_eq!(user_reads(&api), 1);
    }

    #[tokio::test]
    async fn reading_a_session_reads_its_owners_item_only_while_it_runs() {
        let api = fake::api(alice_running_and_starting());
        let get = |id: &str| {
            fake::request(
                "GET",
                &format!("/sessions/{id}"),
                "",
                alice(json!({})),
                None,
            )
        };
        let (status, starting) = fake::answer(api.handle(get("sess-starting")).await);
        assert_eq!((status, &starting["idle_stop_at"]), (200, &Value::Null));
        assert_eq!(user_reads(&api), 0);
        let (status, running) = fake::answer(api.handle(get("sess-running")).await);
        assert_eq!(
            (status, &running["idle_stop_at"]),
            (200, &json!("2026-11-26T10:11:00.000Z"))
        );
        assert_eq!(user_reads(&api), 1);
    }

    /// The template's versioned repositories (the default template's).
    const REPOSITORIES: [&str; 3] = ["api_service", "frontend", "suv_ui"];

    /// `images` with an image of `tags` in every repository, each its own digest.
    fn everywhere(images: fake::Images, digest: &str, tags: &[&str], at: &str) -> fake::Images {
        REPOSITORIES.iter().fold(images, |images, repository| {
            images.with(repository, &format!("{digest}-{repository}"), tags, at)
        })
    }

    /// `GET /versions` of alice on an api with `registry` and `env`.
    async fn versions<R: Registry>(registry: R, env: &[(&str, &str)], query: &str) -> (u16, Value) {
        let api = fake::api_with(fake::ReadOnlyStore::default(), registry, env);
        let get = fake::request("GET", "/versions", query, alice(json!({})), None);
        fake::answer(api.handle(get).await)
    }

    /// The listed versions as `(version, pushed_at, latest)`.
    fn listed(body: &Value) -> Vec<(&str, &str, bool)> {
        assert_eq!(body["listed"], true, "{body}");
        body["versions"]
            .as_array()
            .unwrap_or_else(|| panic!("a versions array: {body}"))
            .iter()
            .map(|v| {
                (
                    v["version"].as_str().unwrap(),
                    v["pushed_at"].as_str().unwrap(),
                    v["latest"].as_bool().unwrap(),
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn versions_are_the_tags_in_every_repository_newest_first() {
        let images = everywhere(
            fake::Images::default(),
            "a",
            &["2.0.0"],
            "2026-11-20T10:00:00Z",
        );
        let images = everywhere(images, "b", &["1.0.0"], "2026-11-01T10:00:00Z");
        // 1.9.1 is pushed after 2.0.0, its last image (suv_ui) later still: the newest.
        let images = images
            .with("api_service", "c1", &["1.9.1"], "2026-11-21T10:00:00Z")
            .with("frontend", "c2", &["1.9.1"], "2026-11-21T10:00:00Z")
            .with("suv_ui", "c3", &["1.9.1"], "2026-11-22T08:30:00Z");
        // 3.0.0 is missing from suv_ui; `-x` is a tag ECR allows but no version.
        let images = images
            .with("api_service", "d1", &["3.0.0"], "2026-11-23T10:00:00Z")
            .with("frontend", "d2", &["3.0.0"], "2026-11-23T10:00:00Z");
        let images = everywhere(images, "e", &["-x"], "2026-11-24T10:00:00Z");
        let (status, body) = versions(images, &[], "").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            listed(&body),
            [
                ("1.9.1", "2026-11-22T08:30:00.000Z", false),
                ("2.0.0", "2026-11-20T10:00:00.000Z", false),
                ("1.0.0", "2026-11-01T10:00:00.000Z", false),
            ]
        );
    }

    #[tokio::test]
    async fn the_version_latest_names_is_marked_and_latest_is_not_listed_beside_it() {
        let images = everywhere(
            fake::Images::default(),
            "a",
            &["1.1.0", "latest", "1.1"],
            "2026-11-20T10:00:00Z",
        );
        let images = everywhere(images, "b", &["1.0.0"], "2026-11-01T10:00:00Z");
        let (status, body) = versions(images, &[], "").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            listed(&body),
            [
                ("1.1.0", "2026-11-20T10:00:00.000Z", true),
                ("1.1", "2026-11-20T10:00:00.000Z", true),
                ("1.0.0", "2026-11-01T10:00:00.000Z", false),
            ]
        );
    }

    #[tokio::test]
    async fn latest_is_listed_itself_when_no_version_has_all_its_images() {
        // `latest` names 1.1.0's images but for suv_ui, where it names another build.
        let images = everywhere(
            fake::Images::default(),
            "a",
            &["1.1.0"],
            "2026-11-20T10:00:00Z",
        );
        let images = images
            .with(
                "api_service",
                "a-api_service",
                &["latest"],
                "2026-11-20T10:00:00Z",
            )
            .with(
                "frontend",
                "a-frontend",
                &["latest"],
                "2026-11-20T10:00:00Z",
            )
            .with("suv_ui", "f", &["latest"], "2026-11-25T10:00:00Z");
        let (status, body) = versions(images, &[], "").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            listed(&body),
            [
                ("latest", "2026-11-25T10:00:00.000Z", true),
                ("1.1.0", "2026-11-20T10:00:00.000Z", false),
            ]
        );
    }

    #[tokio::test]
    async fn no_tag_in_every_repository_lists_no_version() {
        let images = fake::Images::default()
            .with(
                "api_service",
                "a",
                &["1.0.0", "latest"],
                "2026-11-20T10:00:00Z",
            )
            .with(
                "frontend",
                "b",
                &["1.0.0", "latest"],
                "2026-11-20T10:00:00Z",
            );
        let (status, body) = versions(images, &[], "").await;
        assert_eq!((status, listed(&body)), (200, vec![]), "{body}");
    }

    #[tokio::test]
    async fn without_the_image_check_no_version_is_listed_and_the_registry_is_not_asked() {
        let (status, body) = versions(fake::Unreached, &[("CHECK_IMAGES", "false")], "").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body, json!({"listed": false, "versions": []}));
    }

    #[tokio::test]
    async fn a_query_parameter_on_versions_is_a_400() {
        let (status, body) = versions(fake::Unreached, &[], "limit=1").await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("invalid_parameter")),
            "{body}"
        );
    }
}
