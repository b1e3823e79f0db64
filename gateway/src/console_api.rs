//! The console's calls to the API (docs/console.md): on the login host, a request of
//! the console's page to `/_gateway/api/{path}` is forwarded to `{API_URL}/{path}` with
//! the access token the load balancer got for the signed-in user as its bearer token.
//! The page calls its own origin, so no CORS, and never holds a token.
//!
//! What reaches the API is built here, not passed through: the URL from `API_URL` and a
//! path that is one of the console's API routes, and a head of three of the request's
//! headers and the `Authorization` made from the token; never cookies, the load
//! balancer's headers or the client's own `Authorization`. The API checks the token
//! itself: the gateway only carries it, so a caller gets no more than they could get
//! by calling the API with their own token.
//!
//! The gateway's own answers here are JSON in the API's error shape (`{"error":
//! {"code", "message"}}`), so the page reads them as it reads the API's.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{
    HeaderName, HeaderValue, AUTHORIZATION, CACHE_CONTROL, CONNECTION, CONTENT_LENGTH,
    CONTENT_SECURITY_POLICY, CONTENT_TYPE, ORIGIN, REFERRER_POLICY, RETRY_AFTER,
};
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use session_core::session::SessionId;

use crate::body::{Counted, RequestLog, ResponseBody};
use crate::console;
use crate::headers::is_upgrade;

/// Requests under this path on the login host are the console's calls to the API.
pub const PREFIX: &str = "/_gateway/api/";

/// Where the load balancer puts the access token it got from the provider for the
/// signed-in user.
pub const ACCESS_TOKEN_HEADER: &str = "x-amzn-oidc-accesstoken";

/// Set by the console's script on every call. A cross-site form cannot set a header,
/// and a cross-site script setting one must first pass a CORS preflight, which this
/// origin never answers.
pub const CONSOLE_HEADER: &str = "x-console";

/// The API's request bodies are a few small JSON fields.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Far more than the API answers (a page of 100 sessions is a few tens of KiB).
const MAX_ANSWER_BYTES: u64 = 1024 * 1024;

/// API Gateway gives up on its integration after 30 s and answers 504 itself: a little
/// longer here lets that answer through, and still bounds an API that never answers.
const TIMEOUT: Duration = Duration::from_secs(35);

/// The request headers the API reads; no other reaches it.
const FORWARDED: [&str; 3] = ["content-type", "accept", "idempotency-key"];

/// The API's answer headers the page needs; the gateway sets the rest.
const RELAYED: [HeaderName; 2] = [CONTENT_TYPE, RETRY_AFTER];

/// The client that calls the API, if `API_URL` is set.
pub struct ConsoleApi {
    /// `API_URL`, without a trailing `/`.
    base: Option<String>,
    agent: ureq::Agent,
}

impl ConsoleApi {
    pub fn new(base: Option<String>) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(TIMEOUT))
            // The API's refusals are answers for the page, not failures of the call.
            .http_status_as_error(false)
            // Never on to another host: a redirect goes back to the page as it is.
            .max_redirects(0)
            .build()
            .into();
        Self { base, agent }
    }

    /// Answers a request to [`PREFIX`] of a user the load balancer signed in: the API's
    /// answer, or the gateway's refusal. `login_origin` is the login host's origin, the
    /// only one the console's page has.
    pub async fn answer(
        &self,
        req: Request<Incoming>,
        login_origin: &str,
        mut log: RequestLog,
    ) -> Response<ResponseBody> {
        let upgrade = is_upgrade(req.headers());
        let Some(base) = &self.base else {
            return Refused::NotConfigured.respond(log, upgrade);
        };
        if let Err(refused) = check_caller(req.headers(), login_origin) {
            return refused.respond(log, upgrade);
        }
        let path = req.uri().path().strip_prefix(PREFIX).unwrap_or_default();
        if upgrade || !is_api_route(req.method(), path) {
            return Refused::NoSuchRoute.respond(log, upgrade);
        }
        let head = match access_token(req.headers()) {
            Ok(token) => api_head(req.headers(), token),
            Err(refused) => return refused.respond(log, upgrade),
        };
        let too_large = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .is_some_and(|length| length > MAX_BODY_BYTES as u64);
        if too_large {
            return Refused::TooLarge.respond(log, upgrade);
        }
        let url = match req.uri().query() {
            Some(query) => format!("{base}/{path}?{query}"),
            None => format!("{base}/{path}"),
        };
        let mut request = Request::builder().method(req.method().clone()).uri(url);
        if let Some(headers) = request.headers_mut() {
            *headers = head;
        }
        // A checked path and a query hyper took make a URL; were it not one, no route is.
        let Ok(request) = request.body(()) else {
            return Refused::NoSuchRoute.respond(log, upgrade);
        };
        let body = Limited::new(
            Counted::new(req.into_body(), Arc::clone(&log.bytes_in)),
            MAX_BODY_BYTES,
        );
        let body = match body.collect().await {
            Ok(body) => body.to_bytes(),
            Err(e) if e.is::<LengthLimitError>() => return Refused::TooLarge.respond(log, upgrade),
            Err(_) => return Refused::BodyUnreadable.respond(log, upgrade),
        };
        let agent = self.agent.clone();
        let called = tokio::task::spawn_blocking(move || call(&agent, request, body)).await;
        let answer = match called {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => {
                let why = if matches!(e, ureq::Error::Timeout(_)) {
                    "api timed out"
                } else {
                    "api unreachable"
                };
                tracing::warn!(error = %e, "the console's call to the API failed");
                return Refused::Unreachable(why).respond(log, upgrade);
            }
            Err(e) => {
                tracing::error!(error = %e, "the console's call to the API did not finish");
                return Refused::Unreachable("api call did not finish").respond(log, upgrade);
            }
        };
        log.status = answer.status.as_u16();
        let mut response = Response::new(ResponseBody::page(answer.body, log));
        *response.status_mut() = answer.status;
        let headers = response.headers_mut();
        headers.extend(answer.headers);
        set_own_headers(headers);
        response
    }
}

/// What the page gets of the API's answer.
struct Answer {
    status: StatusCode,
    /// Only the [`RELAYED`] headers.
    headers: HeaderMap,
    body: Vec<u8>,
}

/// Calls the API, blocking. The console's POSTs carry their body; its GETs and DELETEs
/// have none, and none is sent.
fn call(agent: &ureq::Agent, request: Request<()>, body: Bytes) -> Result<Answer, ureq::Error> {
    let mut response = if request.method() == Method::POST {
        agent.run(request.map(|()| &body[..]))?
    } else {
        agent.run(request)?
    };
    let headers = RELAYED
        .iter()
        .flat_map(|name| {
            response
                .headers()
                .get_all(name)
                .iter()
                .map(|value| (name.clone(), value.clone()))
        })
        .collect();
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER_BYTES)
        .read_to_vec()?;
    Ok(Answer {
        status: response.status(),
        headers,
        body,
    })
}

/// Refuses a request the console's page did not make: without [`CONSOLE_HEADER`]
/// (`1`), or with an `Origin` other than the login host's. Same-origin GETs may carry no
/// `Origin`.
fn check_caller(headers: &HeaderMap, login_origin: &str) -> Result<(), Refused> {
    let mut consoles = headers.get_all(CONSOLE_HEADER).iter();
    if !matches!((consoles.next(), consoles.next()), (Some(v), None) if v == "1") {
        return Err(Refused::NotTheConsole("no X-Console header"));
    }
    let mut origins = headers.get_all(ORIGIN).iter();
    match (origins.next(), origins.next()) {
        (None, _) => Ok(()),
        (Some(origin), None)
            if origin
                .as_bytes()
                .eq_ignore_ascii_case(login_origin.as_bytes()) =>
        {
            Ok(())
        }
        _ => Err(Refused::NotTheConsole("cross-origin request")),
    }
}

/// Whether `path` (after [`PREFIX`]) is a route of the API the console calls. The
/// session id is checked as the API checks it, so nothing else can make up a segment:
/// no `.`, `..`, `%`, `/` or empty segment reaches the URL. The seed's `POST /session`
/// is the API's but not the console's.
fn is_api_route(method: &Method, path: &str) -> bool {
    let segments: Vec<&str> = path.split('/').collect();
    let id = |id: &str| SessionId::parse(id).is_ok();
    match (method, segments.as_slice()) {
        (&Method::GET | &Method::POST, ["sessions"]) | (&Method::GET, ["versions"]) => true,
        (&Method::GET | &Method::DELETE, ["sessions", session]) => id(session),
        (&Method::POST, ["sessions", session, "heartbeat"]) => id(session),
        _ => false,
    }
}

/// The one access token the load balancer passed.
fn access_token(headers: &HeaderMap) -> Result<&str, Refused> {
    let mut tokens = headers.get_all(ACCESS_TOKEN_HEADER).iter();
    match (tokens.next(), tokens.next()) {
        (Some(token), None) => token
            .to_str()
            .ok()
            .filter(|t| !t.is_empty() && !t.contains(char::is_whitespace))
            .ok_or(Refused::NoAccessToken("malformed access token")),
        (None, _) => Err(Refused::NoAccessToken("no access token")),
        (Some(_), Some(_)) => Err(Refused::NoAccessToken("repeated access token")),
    }
}

/// The head sent to the API: the request's [`FORWARDED`] headers and the bearer
/// token, nothing else.
fn api_head(from: &HeaderMap, token: &str) -> HeaderMap {
    let mut head = HeaderMap::new();
    for name in FORWARDED {
        for value in from.get_all(name) {
            head.append(HeaderName::from_static(name), value.clone());
        }
    }
    // A token of visible characters without spaces makes a valid value.
    if let Ok(mut bearer) = HeaderValue::from_str(&format!("Bearer {token}")) {
        bearer.set_sensitive(true);
        head.insert(AUTHORIZATION, bearer);
    }
    head
}

/// What the gateway adds to each answer here: it is one user's, and the console's.
fn set_own_headers(headers: &mut HeaderMap) {
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(console::POLICY),
    );
}

/// The gateway's own answers to the console's API calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refused {
    /// No `API_URL`.
    NotConfigured,
    NoSuchRoute,
    NotTheConsole(&'static str),
    /// The load balancer passed no usable access token: signing in again gets one.
    NoAccessToken(&'static str),
    TooLarge,
    /// The client's body ended early or was malformed.
    BodyUnreadable,
    Unreachable(&'static str),
}

impl Refused {
    fn status(self) -> StatusCode {
        match self {
            Refused::NotConfigured | Refused::NoSuchRoute => StatusCode::NOT_FOUND,
            Refused::NotTheConsole(_) => StatusCode::FORBIDDEN,
            Refused::NoAccessToken(_) => StatusCode::UNAUTHORIZED,
            Refused::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refused::BodyUnreadable => StatusCode::BAD_REQUEST,
            Refused::Unreachable(_) => StatusCode::BAD_GATEWAY,
        }
    }

    /// The `code` of the error body; `route_not_found` is the API's own.
    fn code(self) -> &'static str {
        match self {
            Refused::NotConfigured => "api_not_configured",
            Refused::NoSuchRoute => "route_not_found",
            Refused::NotTheConsole(_) => "forbidden",
            Refused::NoAccessToken(_) => "sign_in_required",
            Refused::TooLarge => "payload_too_large",
            Refused::BodyUnreadable => "bad_request",
            Refused::Unreachable(_) => "api_unreachable",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Refused::NotConfigured => "the console's API is not configured on this gateway",
            Refused::NoSuchRoute => "no such route",
            Refused::NotTheConsole(_) => "only the console's own page may call the API here",
            Refused::NoAccessToken(_) => "sign in again",
            Refused::TooLarge => "the request body is too large",
            Refused::BodyUnreadable => "the request body could not be read",
            Refused::Unreachable(_) => "the API could not be reached; try again",
        }
    }

    /// Why, in the request's log line.
    fn reason(self) -> &'static str {
        match self {
            Refused::NotConfigured => "console api not configured",
            Refused::NoSuchRoute => "not a console api route",
            Refused::TooLarge => "body too large",
            Refused::BodyUnreadable => "body unreadable",
            Refused::NotTheConsole(why)
            | Refused::NoAccessToken(why)
            | Refused::Unreachable(why) => why,
        }
    }

    fn body(self) -> serde_json::Value {
        serde_json::json!({ "error": { "code": self.code(), "message": self.message() } })
    }

    /// A body too large or unreadable, or a refused upgrade, ends the connection, as
    /// the gateway's other refusals do.
    fn respond(self, mut log: RequestLog, upgrade: bool) -> Response<ResponseBody> {
        log.status = self.status().as_u16();
        log.refused = Some(self.reason());
        let mut response = Response::new(ResponseBody::page(self.body().to_string(), log));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        set_own_headers(headers);
        if upgrade || matches!(self, Refused::TooLarge | Refused::BodyUnreadable) {
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOGIN: &str = "https://login.sessions.example.com";

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    #[test]
    fn only_the_api_routes_the_console_calls_are_forwarded() {
        let id = "sess-0192d1b2c3d4e5f60718293a4b5c6d7e";
        for (method, path) in [
            (Method::GET, "sessions".to_owned()),
            (Method::POST, "sessions".to_owned()),
            (Method::GET, format!("sessions/{id}")),
            (Method::DELETE, format!("sessions/{id}")),
            (Method::POST, format!("sessions/{id}/heartbeat")),
            (Method::GET, "versions".to_owned()),
        ] {
            assert!(is_api_route(&method, &path), "{method} {path}");
        }
        for (method, path) in [
            (Method::POST, "session"),
            (Method::PUT, "sessions"),
            (Method::HEAD, "sessions"),
            (Method::DELETE, "sessions"),
            (Method::POST, "sessions/sess-1"),
            (Method::GET, "sessions/sess-1/heartbeat"),
            (Method::POST, "versions"),
            (Method::GET, ""),
            (Method::GET, "sessions/"),
            (Method::GET, "/sessions"),
            (Method::GET, "sessions//"),
            (Method::GET, "admin"),
            (Method::GET, "sessions/sess-1/logs"),
        ] {
            assert!(!is_api_route(&method, path), "{method} {path}");
        }
    }

    #[test]
    fn a_session_id_segment_cannot_climb_encode_or_name_another_host() {
        for id in [
            "..",
            ".",
            "%2e%2e",
            "a%2fb",
            "a%2Fb",
            "sess-1%00",
            "@evil.example",
            "sess-1?x",
            "sess-1#x",
            "",
            &"a".repeat(SessionId::MAX_LEN + 1),
        ] {
            assert!(
                !is_api_route(&Method::GET, &format!("sessions/{id}")),
                "{id}"
            );
            assert!(
                !is_api_route(&Method::POST, &format!("sessions/{id}/heartbeat")),
                "{id}"
            );
        }
    }

    #[test]
    fn only_the_consoles_page_on_the_login_host_may_call() {
        let console = [("x-console", "1")];
        assert_eq!(check_caller(&headers(&console), LOGIN), Ok(()));
        assert_eq!(
            check_caller(&headers(&[("x-console", "1"), ("origin", LOGIN)]), LOGIN),
            Ok(())
        );
        for refused in [
            headers(&[]),
            headers(&[("x-console", "0")]),
            headers(&[("x-console", "1"), ("x-console", "1")]),
            headers(&[("origin", LOGIN)]),
            headers(&[("x-console", "1"), ("origin", "https://evil.example")]),
            headers(&[("x-console", "1"), ("origin", "null")]),
            headers(&[
                ("x-console", "1"),
                ("origin", "http://login.sessions.example.com"),
            ]),
            headers(&[("x-console", "1"), ("origin", LOGIN), ("origin", LOGIN)]),
            headers(&[
                ("x-console", "1"),
                ("origin", "https://api--sess-1.sessions.example.com"),
            ]),
        ] {
            let refusal = check_caller(&refused, LOGIN).unwrap_err();
            assert_eq!(refusal.status(), StatusCode::FORBIDDEN, "{refused:?}");
        }
    }

    #[test]
    fn the_api_gets_three_headers_and_the_bearer_token_only() {
        let from = headers(&[
            ("content-type", "application/json"),
            ("accept", "application/json"),
            ("idempotency-key", "k-1"),
            ("authorization", "Bearer the-clients-own"),
            ("cookie", "AWSELBAuthSessionCookie-0=alb; theme=dark"),
            ("x-amzn-oidc-data", "signed.claims.token"),
            ("x-amzn-oidc-accesstoken", "access.token.value"),
            ("x-amzn-oidc-identity", "owner-1"),
            ("x-forwarded-for", "203.0.113.7"),
            ("x-console", "1"),
            ("origin", LOGIN),
            ("host", "login.sessions.example.com"),
        ]);
        let token = access_token(&from).unwrap();
        let head = api_head(&from, token);
        assert_eq!(
            head,
            headers(&[
                ("content-type", "application/json"),
                ("accept", "application/json"),
                ("idempotency-key", "k-1"),
                ("authorization", "Bearer access.token.value"),
            ])
        );
        assert!(head[AUTHORIZATION].is_sensitive());
    }

    #[test]
    fn without_one_usable_access_token_the_user_signs_in_again() {
        for from in [
            headers(&[]),
            headers(&[(ACCESS_TOKEN_HEADER, "")]),
            headers(&[(ACCESS_TOKEN_HEADER, "a b")]),
            headers(&[(ACCESS_TOKEN_HEADER, "a"), (ACCESS_TOKEN_HEADER, "b")]),
        ] {
            let refusal = access_token(&from).unwrap_err();
            assert_eq!(refusal.status(), StatusCode::UNAUTHORIZED, "{from:?}");
        }
    }

    #[test]
    fn the_gateways_refusals_are_json_in_the_apis_error_shape() {
        for refused in [
            Refused::NotConfigured,
            Refused::NoSuchRoute,
            Refused::NotTheConsole("cross-origin request"),
            Refused::NoAccessToken("no access token"),
            Refused::TooLarge,
            Refused::BodyUnreadable,
            Refused::Unreachable("api timed out"),
        ] {
            let body = refused.body();
            assert_eq!(body["error"]["code"], refused.code(), "{refused:?}");
            assert!(body["error"]["message"].is_string(), "{refused:?}");
            let response = refused.respond(RequestLog::new("GET"), false);
            assert_eq!(response.status(), refused.status());
            assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
            assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
            assert_eq!(response.headers()[CONTENT_SECURITY_POLICY], console::POLICY);
        }
        let closes = |refused: Refused, upgrade| {
            refused
                .respond(RequestLog::new("POST"), upgrade)
                .headers()
                .contains_key(CONNECTION)
        };
        assert!(closes(Refused::TooLarge, false));
        assert!(closes(Refused::BodyUnreadable, false));
        assert!(closes(Refused::NoSuchRoute, true));
        assert!(!closes(Refused::NoSuchRoute, false));
    }
}
