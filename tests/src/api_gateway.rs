//! The local stand-in for API Gateway's HTTP API: a server on 127.0.0.1 that turns
//! each request into a payload 2.0 event, invokes the real `api` function through the
//! local Lambda service, and answers with the function's response.
//!
//! It keeps API Gateway's own limits, so that nothing reaches the function locally
//! that could not reach it on AWS ("Quotas for configuring and running an HTTP API in
//! API Gateway", API Gateway developer guide):
//! - "Total combined size of request line and header values: 10240 bytes" — past it,
//!   414 when the request line alone is too long, else 431;
//! - "Payload size: 10 MB" — 413;
//! - "Maximum integration timeout: 30 seconds" — 503;
//! - a request line or header that is not HTTP (raw bytes outside ASCII in the path,
//!   a malformed line) — 400.
//!
//! AWS documents the limits, not its answers' bodies; these are API Gateway's own
//! error shape, `{"message": "..."}`. The request head is read and judged here, with
//! `httparse`, before hyper serves the request, so that every refusal has a body.
//!
//! **Development identity.** In place of a JWT authorizer it accepts
//! `Authorization: Bearer dev:<user_id>`, and `Bearer dev-admin:<user_id>` for a caller
//! holding the admin scope; anything else is a 401, as API Gateway answers. This exists
//! only in this test harness: the `api` function has no development mode, so no
//! deployment setting can turn one on.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Map, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::lambda::{InvokeError, Invoker, Outcome};

/// The claim and scope the development identity carries (the api's defaults).
pub const DEV_ADMIN_SCOPE: &str = "sessions/admin";
/// "Total combined size of request line and header values".
pub const MAX_REQUEST_LINE_AND_HEADERS: usize = 10_240;
/// "Payload size".
pub const MAX_PAYLOAD: usize = 10 * 1024 * 1024;
/// "Maximum integration timeout".
pub const INTEGRATION_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of a request head is read before it is refused unread: far past the
/// limit, so that every head the limit refuses is measured, not guessed.
const MAX_HEAD_READ: usize = 128 * 1024;
/// A client that sends no complete head in this long is dropped.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

pub struct ApiGateway {
    pub port: u16,
    runtime: Option<tokio::runtime::Runtime>,
}

/// The verified claims a development token stands for.
pub fn dev_claims(authorization: Option<&str>) -> Option<Value> {
    let token = authorization?.strip_prefix("Bearer ")?.trim();
    let (admin, user) = if let Some(user) = token.strip_prefix("dev-admin:") {
        (true, user)
    } else {
        (false, token.strip_prefix("dev:")?)
    };
    if user.is_empty() {
        return None;
    }
    let mut claims = json!({ "sub": user, "iss": "local-dev", "token_use": "access" });
    if admin {
        claims["scope"] = json!(DEV_ADMIN_SCOPE);
    }
    Some(claims)
}

/// API Gateway's own route matching (the api function matches again, by path).
fn route_key(method: &str, path: &str) -> Option<(String, Option<String>)> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (template, id) = match segments.as_slice() {
        ["session"] => ("/session", None),
        ["sessions"] => ("/sessions", None),
        ["sessions", id] => ("/sessions/{id}", Some(*id)),
        ["sessions", id, "heartbeat"] => ("/sessions/{id}/heartbeat", Some(*id)),
        ["versions"] => ("/versions", None),
        _ => return None,
    };
    let key = format!("{method} {template}");
    api::Route::KEYS
        .contains(&key.as_str())
        .then(|| (key, id.map(str::to_owned)))
}

/// Why a request head is refused before anything else looks at it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    BadRequest,
    UriTooLong,
    HeadersTooLarge,
}

impl Refusal {
    fn status(self) -> StatusCode {
        match self {
            Self::BadRequest => StatusCode::BAD_REQUEST,
            Self::UriTooLong => StatusCode::URI_TOO_LONG,
            Self::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        }
    }

    fn message(self) -> &'static str {
        match self {
            Self::BadRequest => "Bad Request",
            Self::UriTooLong => "Request-URI Too Long",
            Self::HeadersTooLarge => "Request Header Fields Too Large",
        }
    }
}

/// Judges a request head (`complete`: its blank line was found within what was read).
pub fn judge_head(head: &[u8], complete: bool) -> Result<(), Refusal> {
    if !complete {
        return Err(Refusal::HeadersTooLarge);
    }
    let mut headers = vec![httparse::EMPTY_HEADER; 512];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Err(httparse::Error::TooManyHeaders) => return Err(Refusal::HeadersTooLarge),
        Ok(httparse::Status::Partial) | Err(_) => return Err(Refusal::BadRequest),
    }
    let (Some(method), Some(path)) = (request.method, request.path) else {
        return Err(Refusal::BadRequest);
    };
    if !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Refusal::BadRequest);
    }
    let request_line = method.len() + 1 + path.len() + 1 + "HTTP/1.1".len();
    let values: usize = request.headers.iter().map(|h| h.value.len()).sum();
    if request_line > MAX_REQUEST_LINE_AND_HEADERS {
        Err(Refusal::UriTooLong)
    } else if request_line + values > MAX_REQUEST_LINE_AND_HEADERS {
        Err(Refusal::HeadersTooLarge)
    } else {
        Ok(())
    }
}

type Answer = Response<Full<Bytes>>;

fn message(status: StatusCode, text: &str) -> Answer {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            json!({ "message": text }).to_string(),
        )))
        .expect("a valid response")
}

/// A connection whose first bytes were already read (the judged head).
struct Prefixed {
    prefix: Vec<u8>,
    read: usize,
    stream: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.read < self.prefix.len() {
            let n = buf.remaining().min(self.prefix.len() - self.read);
            let start = self.read;
            buf.put_slice(&self.prefix[start..start + n]);
            self.read += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

fn find_blank_line(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
}

async fn connection(mut stream: TcpStream, peer: SocketAddr, invoker: Invoker, port: u16) {
    let mut read = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 * 1024];
    let head_end = loop {
        if let Some(end) = find_blank_line(&read) {
            break Some(end);
        }
        if read.len() > MAX_HEAD_READ {
            break None;
        }
        match tokio::time::timeout(HEAD_TIMEOUT, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => read.extend_from_slice(&chunk[..n]),
            _ => return,
        }
    };
    if let Err(refusal) = judge_head(&read[..head_end.unwrap_or(read.len())], head_end.is_some()) {
        let body = json!({ "message": refusal.message() }).to_string();
        let status = refusal.status();
        let response = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            status.as_u16(),
            status.canonical_reason().unwrap_or_default(),
            body.len()
        );
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
        return;
    }
    let io = Prefixed {
        prefix: read,
        read: 0,
        stream,
    };
    let service = hyper::service::service_fn(move |request| {
        let invoker = invoker.clone();
        async move { Ok::<_, Infallible>(serve(request, peer, &invoker, port).await) }
    });
    // One request per connection: each head is judged above before hyper reads it.
    let _ = hyper::server::conn::http1::Builder::new()
        .keep_alive(false)
        .max_buf_size(MAX_HEAD_READ * 2)
        .serve_connection(hyper_util::rt::TokioIo::new(io), service)
        .await;
}

fn header_text(value: &hyper::header::HeaderValue) -> String {
    String::from_utf8_lossy(value.as_bytes()).into_owned()
}

async fn serve(
    request: Request<Incoming>,
    peer: SocketAddr,
    invoker: &Invoker,
    port: u16,
) -> Answer {
    let authorization = request.headers().get("authorization").map(header_text);
    let Some(claims) = dev_claims(authorization.as_deref()) else {
        return message(StatusCode::UNAUTHORIZED, "Unauthorized");
    };
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let Some((route_key, id)) = route_key(&method, &path) else {
        return message(StatusCode::NOT_FOUND, "Not Found");
    };
    let mut headers = Map::new();
    for (name, value) in request.headers() {
        let value = header_text(value);
        match headers.get_mut(name.as_str()) {
            Some(Value::String(existing)) => *existing = format!("{existing},{value}"),
            _ => {
                headers.insert(name.as_str().to_owned(), json!(value));
            }
        }
    }
    let body = match Limited::new(request.into_body(), MAX_PAYLOAD)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(_) => return message(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large"),
    };
    let mut parameters: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        parameters
            .entry(name.into_owned())
            .and_modify(|v| *v = format!("{v},{value}"))
            .or_insert_with(|| value.into_owned());
    }
    let (body, encoded) = match String::from_utf8(body.to_vec()) {
        Ok(text) => (text, false),
        Err(e) => (STANDARD.encode(e.into_bytes()), true),
    };
    static REQUESTS: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let request_id = format!("local-{}", REQUESTS.fetch_add(1, Ordering::Relaxed));
    let mut event = json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "authorizer": { "jwt": { "claims": claims, "scopes": null } },
            "domainName": format!("127.0.0.1:{port}"),
            "domainPrefix": "127",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": peer.ip().to_string(),
                "userAgent": headers.get("user-agent").cloned().unwrap_or(json!("")),
            },
            "requestId": request_id,
            "routeKey": route_key,
            "stage": "$default",
            "time": "",
            "timeEpoch": now.as_millis() as u64,
        },
        "isBase64Encoded": encoded,
    });
    if !body.is_empty() {
        event["body"] = json!(body);
    }
    if !parameters.is_empty() {
        event["queryStringParameters"] = json!(parameters);
    }
    if let Some(id) = id {
        event["pathParameters"] = json!({ "id": id });
    }
    let outcome = invoker
        .invoke("api", Bytes::from(event.to_string()), INTEGRATION_TIMEOUT)
        .await;
    let answer: Value = match outcome {
        Ok(Outcome::Response(body)) => serde_json::from_slice(&body).unwrap_or(Value::Null),
        Err(InvokeError::TimedOut) => {
            return message(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
        }
        // A function error, or an answer that is not a response: API Gateway's own 500.
        Ok(Outcome::Error(_)) | Err(_) => Value::Null,
    };
    let Some(status) = answer["statusCode"]
        .as_u64()
        .and_then(|s| StatusCode::from_u16(s as u16).ok())
    else {
        return message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
    };
    let body = answer["body"].as_str().unwrap_or_default();
    let body = if answer["isBase64Encoded"].as_bool() == Some(true) {
        STANDARD.decode(body).unwrap_or_default()
    } else {
        body.as_bytes().to_vec()
    };
    let mut response = Response::builder().status(status);
    for (name, value) in answer["headers"].as_object().into_iter().flatten() {
        if let Some(value) = value.as_str() {
            response = response.header(name.as_str(), value);
        }
    }
    response
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"))
}

impl ApiGateway {
    /// Serves on 127.0.0.1:`port` (0: a free one), invoking the `api` function through
    /// `invoker`. A port in use is an error naming it.
    pub fn start(port: u16, invoker: Invoker) -> Result<Self, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("api-gateway")
            .enable_all()
            .build()
            .map_err(|e| format!("a runtime for the HTTP API: {e}"))?;
        // Bound here, served on its own runtime: the caller may be inside another
        // runtime, where blocking on this one is not allowed.
        let listener = std::net::TcpListener::bind(("127.0.0.1", port))
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| {
                format!(
                    "port {port} on 127.0.0.1 is already in use ({e}): stop what listens there first"
                )
            })?;
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(port);
        runtime.spawn(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                return;
            };
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(connection(stream, peer, invoker.clone(), port));
            }
        });
        Ok(Self {
            port,
            runtime: Some(runtime),
        })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for ApiGateway {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Not waiting: this may run inside another runtime (a test's).
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_development_tokens_carry_an_identity() {
        assert_eq!(
            dev_claims(Some("Bearer dev:alice")).unwrap()["sub"],
            "alice"
        );
        assert_eq!(
            dev_claims(Some("Bearer dev:élève")).unwrap()["sub"],
            "élève"
        );
        let admin = dev_claims(Some("Bearer dev-admin:root")).unwrap();
        assert_eq!(admin["scope"], DEV_ADMIN_SCOPE);
        for bad in [
            None,
            Some(""),
            Some("Bearer dev:"),
            Some("Basic dev:alice"),
            Some("Bearer eyJhbGciOi"),
        ] {
            assert_eq!(dev_claims(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn only_the_apis_routes_reach_the_function() {
        assert_eq!(
            route_key("GET", "/sessions/sess-1"),
            Some(("GET /sessions/{id}".into(), Some("sess-1".into())))
        );
        assert_eq!(
            route_key("GET", "/versions"),
            Some(("GET /versions".into(), None))
        );
        assert_eq!(route_key("PUT", "/sessions/sess-1"), None);
        assert_eq!(route_key("POST", "/versions"), None);
        assert_eq!(route_key("GET", "/admin"), None);
    }

    fn head(line: &str, headers: &[(&str, String)]) -> Vec<u8> {
        let mut head = format!("{line}\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        head.into_bytes()
    }

    #[test]
    fn heads_within_api_gateways_limit_pass() {
        let line = format!("GET /sessions?x={} HTTP/1.1", "a".repeat(9000));
        assert_eq!(
            judge_head(&head(&line, &[("host", "h".into())]), true),
            Ok(())
        );
    }

    #[test]
    fn the_request_line_and_header_values_share_one_limit() {
        let long_line = format!("GET /{} HTTP/1.1", "a".repeat(MAX_REQUEST_LINE_AND_HEADERS));
        assert_eq!(
            judge_head(&head(&long_line, &[]), true),
            Err(Refusal::UriTooLong)
        );
        let line = "GET /sessions HTTP/1.1";
        let at_limit = vec![(
            "x-big",
            "v".repeat(MAX_REQUEST_LINE_AND_HEADERS - line.len()),
        )];
        assert_eq!(judge_head(&head(line, &at_limit), true), Ok(()));
        let big = vec![(
            "x-big",
            "v".repeat(MAX_REQUEST_LINE_AND_HEADERS + 1 - line.len()),
        )];
        assert_eq!(
            judge_head(&head(line, &big), true),
            Err(Refusal::HeadersTooLarge)
        );
        assert_eq!(
            judge_head(b"GET / HTTP/1.1\r\nx: 1", false),
            Err(Refusal::HeadersTooLarge)
        );
    }

    #[test]
    fn raw_bytes_outside_ascii_in_the_path_are_a_bad_request() {
        let line = "GET /sessions/élève HTTP/1.1";
        assert_eq!(judge_head(&head(line, &[]), true), Err(Refusal::BadRequest));
        assert_eq!(
            judge_head(b"GARBAGE\r\n\r\n", true),
            Err(Refusal::BadRequest)
        );
    }

    #[test]
    fn raw_utf8_in_a_header_value_is_not_refused_by_the_gateway() {
        let headers = [("authorization", "Bearer dev:élève".to_owned())];
        assert_eq!(
            judge_head(&head("GET /sessions HTTP/1.1", &headers), true),
            Ok(())
        );
    }
}
