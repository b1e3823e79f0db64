//! The console's calls to the API through the login host (`/_gateway/api/*`), against
//! a fake API on a real socket that records what reaches it.

mod support;

use std::convert::Infallible;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use session_core::hosts::login_host;
use support::*;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// What the load balancer passes as the user's access token.
const ACCESS_TOKEN: &str = "eyJhbGciOi.the-users-access-token.c2lnbmF0dXJl";
const SESSION: &str = "sess-0192d1b2c3d4e5f60718293a4b5c6d7e";

/// One request as the fake API received it.
#[derive(Clone, Debug)]
struct Received {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Received {
    fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// The API under a stage path (`/stage`): `POST /stage/sessions` is 201 with a
/// `Retry-After`, a cookie and a header of its own; `DELETE /stage/sessions/{id}` is
/// 409 in the API's error shape; anything else 200.
struct FakeApi {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
    task: JoinHandle<()>,
}

impl FakeApi {
    async fn start() -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let url = format!("http://{}/stage", listener.local_addr().unwrap());
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let task = tokio::spawn({
            let received = Arc::clone(&received);
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let received = Arc::clone(&received);
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let received = Arc::clone(&received);
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.unwrap().to_bytes();
                            received.lock().unwrap().push(Received {
                                method: parts.method.to_string(),
                                target: parts.uri.to_string(),
                                headers: parts
                                    .headers
                                    .iter()
                                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
                                    .collect(),
                                body: String::from_utf8_lossy(&body).into_owned(),
                            });
                            Ok::<_, Infallible>(Self::answer(&parts.method, parts.uri.path()))
                        }
                    });
                    tokio::spawn(
                        hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service),
                    );
                }
            }
        });
        Self {
            url,
            received,
            task,
        }
    }

    fn answer(method: &Method, path: &str) -> Response<Full<Bytes>> {
        let (status, body) = match (method, path) {
            (&Method::POST, "/stage/sessions") => {
                (StatusCode::CREATED, json!({ "session_id": SESSION }))
            }
            (&Method::DELETE, _) => (
                StatusCode::CONFLICT,
                json!({ "error": { "code": "conflict", "message": "already stopping" } }),
            ),
            _ => (StatusCode::OK, json!({ "path": path })),
        };
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .header("retry-after", "7")
            .header("set-cookie", "api-cookie=1")
            .header("x-amzn-requestid", "request-1")
            .header("access-control-allow-origin", "*")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap()
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A gateway whose `API_URL` is the fake API's.
async fn start() -> (Harness, FakeApi) {
    let api = FakeApi::start().await;
    let url = api.url.clone();
    let h = Harness::start_with(|config| config.api_url = Some(url)).await;
    (h, api)
}

/// A call of the console's page, as the load balancer passes it on: the signed claims
/// and the access token of [`OWNER`], the page's `X-Console` and its own origin.
fn call(h: &Harness, method: &str, path: &str, body: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("host", login_host(DOMAIN))
        .header("x-amzn-oidc-data", h.token(OWNER))
        .header("x-amzn-oidc-accesstoken", ACCESS_TOKEN)
        .header("x-console", "1")
        .header("origin", format!("https://{}", login_host(DOMAIN)))
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap()
}

fn without(mut request: Request<Full<Bytes>>, name: &str) -> Request<Full<Bytes>> {
    request.headers_mut().remove(name);
    request
}

fn assert_refused(answer: &Answer, status: StatusCode, code: &str) {
    assert_eq!(answer.status, status, "{}", answer.text());
    assert_eq!(answer.headers["content-type"], "application/json");
    assert_eq!(answer.headers["cache-control"], "no-store");
    let body = answer.json();
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
}

#[tokio::test]
async fn a_console_call_reaches_the_api_with_the_users_access_token_and_nothing_else_of_its_head() {
    let (h, api) = start().await;
    let body = r#"{"version":"v1.2.0"}"#;
    let mut request = call(&h, "POST", "/_gateway/api/sessions?dry=1&x=%20y", body);
    for (name, value) in [
        ("content-type", "application/json"),
        ("accept", "application/json"),
        ("idempotency-key", "key-1"),
        ("authorization", "Bearer the-clients-own-token"),
        ("cookie", "AWSELBAuthSessionCookie-0=alb-secret; theme=dark"),
        ("x-amzn-oidc-identity", OWNER),
        ("x-amzn-trace-id", "Root=1-abc"),
        ("x-forwarded-for", "203.0.113.9"),
        ("x-custom", "not for the api"),
    ] {
        request.headers_mut().append(name, value.parse().unwrap());
    }
    let answer = send(h.addr(), request).await;

    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text());
    assert_eq!(answer.json(), json!({ "session_id": SESSION }));
    assert_eq!(answer.headers["content-type"], "application/json");
    assert_eq!(answer.headers["retry-after"], "7");
    assert_eq!(answer.headers["cache-control"], "no-store");
    assert!(answer.headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
    for gone in [
        "set-cookie",
        "x-amzn-requestid",
        "access-control-allow-origin",
    ] {
        assert!(
            !answer.headers.contains_key(gone),
            "{gone} reached the page"
        );
    }
    assert!(!answer.text().contains(ACCESS_TOKEN));

    let [received] = api.received().try_into().unwrap();
    assert_eq!(received.method, "POST");
    assert_eq!(received.target, "/stage/sessions?dry=1&x=%20y");
    assert_eq!(received.body, body);
    assert_eq!(
        received.header("authorization"),
        [format!("Bearer {ACCESS_TOKEN}")]
    );
    assert_eq!(received.header("content-type"), ["application/json"]);
    assert_eq!(received.header("accept"), ["application/json"]);
    assert_eq!(received.header("idempotency-key"), ["key-1"]);
    assert_eq!(
        received.header("host"),
        [api.url
            .trim_start_matches("http://")
            .trim_end_matches("/stage")]
    );
    for gone in [
        "cookie",
        "x-amzn-oidc-data",
        "x-amzn-oidc-accesstoken",
        "x-amzn-oidc-identity",
        "x-amzn-trace-id",
        "x-forwarded-for",
        "x-custom",
        "x-console",
        "origin",
    ] {
        assert!(received.header(gone).is_empty(), "{gone} reached the api");
    }
    assert_eq!(h.upstream.reached(), (0, 0));
}

#[tokio::test]
async fn each_route_the_console_calls_reaches_the_api_and_its_refusals_come_back_as_they_are() {
    let (h, api) = start().await;
    for (method, path) in [
        ("GET", "sessions?limit=20".to_owned()),
        ("GET", format!("sessions/{SESSION}")),
        ("POST", format!("sessions/{SESSION}/heartbeat")),
        ("GET", "versions".to_owned()),
    ] {
        let request = call(&h, method, &format!("/_gateway/api/{path}"), "");
        let answer = send(h.addr(), request).await;
        assert_eq!(answer.status, StatusCode::OK, "{method} {path}");
        let received = api.received().pop().unwrap();
        assert_eq!(
            (received.method.as_str(), received.target.as_str()),
            (method, format!("/stage/{path}").as_str())
        );
    }
    let stop = call(
        &h,
        "DELETE",
        &format!("/_gateway/api/sessions/{SESSION}"),
        "",
    );
    let answer = send(h.addr(), stop).await;
    assert_eq!(answer.status, StatusCode::CONFLICT);
    assert_eq!(answer.json()["error"]["code"], "conflict");
    assert_eq!(api.received().len(), 5);
}

#[tokio::test]
async fn a_call_without_the_consoles_header_or_from_another_origin_is_403_and_reaches_nothing() {
    let (h, api) = start().await;
    let path = "/_gateway/api/sessions";
    let no_header = without(call(&h, "POST", path, "{}"), "x-console");
    assert_refused(
        &send(h.addr(), no_header).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    for origin in [
        "https://evil.example".to_owned(),
        "null".to_owned(),
        format!("http://{}", login_host(DOMAIN)),
        format!("https://{}", h.host("frontend")),
    ] {
        let mut request = call(&h, "POST", path, "{}");
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
        assert_refused(
            &send(h.addr(), request).await,
            StatusCode::FORBIDDEN,
            "forbidden",
        );
    }
    // A same-origin GET may come without Origin.
    let same_origin = without(call(&h, "GET", path, ""), "origin");
    assert_eq!(send(h.addr(), same_origin).await.status, StatusCode::OK);
    assert_eq!(api.received().len(), 1);
}

#[tokio::test]
async fn only_the_apis_own_routes_are_forwarded_and_no_path_leads_elsewhere() {
    let (h, api) = start().await;
    for (method, path, status) in [
        ("GET", "/_gateway/api/admin", StatusCode::NOT_FOUND),
        ("POST", "/_gateway/api/session", StatusCode::NOT_FOUND),
        ("PUT", "/_gateway/api/sessions", StatusCode::NOT_FOUND),
        ("GET", "/_gateway/api/sessions/", StatusCode::NOT_FOUND),
        (
            "GET",
            "/_gateway/api//evil.example/versions",
            StatusCode::NOT_FOUND,
        ),
        (
            "GET",
            "/_gateway/api/@evil.example/versions",
            StatusCode::NOT_FOUND,
        ),
        ("GET", "/_gateway/api/sessions/a.b", StatusCode::NOT_FOUND),
        // Dot segments and encoded separators: refused before any route is looked at.
        (
            "GET",
            "/_gateway/api/versions/../admin",
            StatusCode::BAD_REQUEST,
        ),
        (
            "GET",
            "/_gateway/api/sessions/%2e%2e/admin",
            StatusCode::BAD_REQUEST,
        ),
        (
            "GET",
            "/_gateway/api/sessions%2f..%2fadmin",
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let answer = send(h.addr(), call(&h, method, path, "")).await;
        assert_eq!(answer.status, status, "{method} {path}: {}", answer.text());
        if status == StatusCode::NOT_FOUND {
            assert_refused(&answer, status, "route_not_found");
        }
    }
    // The absolute form names a host of its own: refused as anywhere on the gateway.
    let absolute = format!(
        "GET {}/versions HTTP/1.1\r\nHost: {}\r\nx-amzn-oidc-data: {}\r\n\
         x-amzn-oidc-accesstoken: {ACCESS_TOKEN}\r\nx-console: 1\r\n\r\n",
        api.url,
        login_host(DOMAIN),
        h.token(OWNER),
    );
    assert_eq!(status_of(&raw(h.addr(), absolute.as_bytes()).await), 400);
    assert!(api.received().is_empty(), "{:?}", api.received());
}

#[tokio::test]
async fn without_the_load_balancers_sign_in_or_its_access_token_the_api_is_not_called() {
    let (h, api) = start().await;
    let path = "/_gateway/api/versions";
    // No signed claims: the login host's refusal, as for its other paths.
    let unsigned = without(call(&h, "GET", path, ""), "x-amzn-oidc-data");
    let answer = send(h.addr(), unsigned).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.text(), "sign-in required\n");
    let mut forged = call(&h, "GET", path, "");
    let other = gateway::testing::AlbSigner::generate("3f1b2c4d-0000-4000-8000-0123456789ab");
    forged.headers_mut().insert(
        "x-amzn-oidc-data",
        other.token(ALB_ARN, OWNER).parse().unwrap(),
    );
    assert_eq!(
        send(h.addr(), forged).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Signed in, but no access token passed: the page asks to sign in again.
    let no_token = without(call(&h, "GET", path, ""), "x-amzn-oidc-accesstoken");
    assert_refused(
        &send(h.addr(), no_token).await,
        StatusCode::UNAUTHORIZED,
        "sign_in_required",
    );
    assert!(api.received().is_empty());
}

#[tokio::test]
async fn a_body_over_16_kib_is_413_and_not_forwarded() {
    let (h, api) = start().await;
    let big = "x".repeat(gateway::console_api::MAX_BODY_BYTES + 1);
    let answer = send(h.addr(), call(&h, "POST", "/_gateway/api/sessions", &big)).await;
    assert_refused(&answer, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    assert_eq!(answer.headers["connection"], "close");
    // Chunked, so that only the limit on what is read stops it.
    let chunks = (0..5).map(|_| Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b'x'; 4096]))));
    let (head, _) = call(&h, "POST", "/_gateway/api/sessions", "").into_parts();
    let streamed = Request::from_parts(head, StreamBody::new(futures_util::stream::iter(chunks)));
    let answer = send(h.addr(), streamed).await;
    assert_refused(&answer, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    assert!(api.received().is_empty());
}

#[tokio::test]
async fn an_api_that_cannot_be_reached_is_502_in_json() {
    let closed = {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        listener.local_addr().unwrap()
    };
    let h = Harness::start_with(|config| config.api_url = Some(format!("http://{closed}"))).await;
    let answer = send(h.addr(), call(&h, "GET", "/_gateway/api/versions", "")).await;
    assert_refused(&answer, StatusCode::BAD_GATEWAY, "api_unreachable");
}

#[tokio::test]
async fn without_an_api_url_the_consoles_calls_are_404_not_configured() {
    let h = Harness::start().await;
    let answer = send(h.addr(), call(&h, "GET", "/_gateway/api/versions", "")).await;
    assert_refused(&answer, StatusCode::NOT_FOUND, "api_not_configured");
}

#[tokio::test]
async fn a_console_call_logs_its_status_and_never_the_token() {
    let (captured, _capturing) = capture_logs();
    let (h, _api) = start().await;
    let stop = call(
        &h,
        "DELETE",
        &format!("/_gateway/api/sessions/{SESSION}"),
        "",
    );
    assert_eq!(send(h.addr(), stop).await.status, StatusCode::CONFLICT);
    let requests = || {
        captured
            .lines()
            .into_iter()
            .filter(|l| l["fields"]["message"] == "request")
            .collect::<Vec<_>>()
    };
    eventually(Duration::from_secs(5), "the log line", || {
        !requests().is_empty()
    })
    .await;
    let [logged] = requests().try_into().unwrap();
    assert_eq!(logged["fields"]["method"], "DELETE");
    assert_eq!(logged["fields"]["status"], 409);
    assert_eq!(
        logged["fields"]["user_key"],
        session_core::template::user_key(OWNER)
    );
    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(!logs.contains(ACCESS_TOKEN), "{logs}");
}
