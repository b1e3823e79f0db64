//! A gateway on real sockets, in-process: the in-memory session store, a local key
//! server, an ALB signing key, and an upstream that echoes what reaches it on each of
//! a session's three service ports.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use gateway::testing::{AlbSigner, KeyServer};
use gateway::{Config, Gateway, MemorySessions, PublicKeys, SessionRoute};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use session_core::hosts::{login_host, parse_host, session_host};
use session_core::session::SessionId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

pub const DOMAIN: &str = "sessions.test";
pub const ALB_ARN: &str =
    "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/sessions/0123456789abcdef";
pub const OWNER: &str = "owner-1";
pub const SERVICES: [&str; 3] = ["api", "frontend", "suv_ui"];

/// A pattern a streamed body is made of, so the receiver can check every byte.
pub fn pattern(offset: u64) -> u8 {
    (offset % 251) as u8
}

/// The pattern's bytes from `offset`, `len` of them (at most 64 KiB).
pub fn pattern_slice(offset: u64, len: usize) -> &'static [u8] {
    static PATTERN: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let all = PATTERN.get_or_init(|| (0..64 * 1024 + 251).map(pattern).collect());
    &all[(offset % 251) as usize..][..len]
}

pub fn config(keys_url: &str) -> Config {
    Config {
        listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        health_listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        sessions_table: "sessions".into(),
        session_domain: DOMAIN.into(),
        alb_arn: ALB_ARN.into(),
        alb_public_keys_url: keys_url.into(),
        session_cache_ttl: Duration::from_millis(200),
        max_request_body_bytes: 1024 * 1024,
        max_header_bytes: 64 * 1024,
        upstream_connect_timeout: Duration::from_secs(2),
        upstream_response_timeout: Duration::from_secs(10),
        header_read_timeout: Duration::from_secs(10),
        sign_in_key: gateway::signin::SignInKey::new(SIGN_IN_KEY.to_vec()).unwrap(),
        sign_in_ttl: Duration::from_secs(3600),
        url_scheme: "https".into(),
        api_url: None,
    }
}

pub const SIGN_IN_KEY: &[u8; 32] = b"the tests' sign-in key, 32 bytes";

pub struct Harness {
    pub gateway: Gateway,
    pub signer: AlbSigner,
    pub keys: KeyServer,
    pub sessions: MemorySessions,
    pub upstream: Upstream,
    pub session: SessionId,
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A gateway whose config `adjust` may change, and one running session of
    /// [`OWNER`] whose three services the upstream answers.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let signer = AlbSigner::generate("3f1b2c4d-0000-4000-8000-0123456789ab");
        let keys = KeyServer::start(&[&signer]).await.unwrap();
        let upstream = Upstream::start().await;
        let sessions = MemorySessions::new();
        let session = SessionId::generate();
        sessions.insert(session.clone(), upstream.route(OWNER, "running"));
        let mut config = config(keys.url());
        adjust(&mut config);
        let gateway = gateway::serve(config, sessions.clone(), PublicKeys::new(keys.url()))
            .await
            .unwrap();
        Self {
            gateway,
            signer,
            keys,
            sessions,
            upstream,
            session,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.gateway.proxy_addr()
    }

    pub fn host(&self, url_key: &str) -> String {
        session_host(url_key, &self.session, DOMAIN)
    }

    pub fn token(&self, user: &str) -> String {
        self.signer.token(ALB_ARN, user)
    }

    /// Signs `user` in on `host` as a browser does: the login host's page (with the
    /// load balancer's token) gives a ticket, which the session host takes for a
    /// cookie. Returns the cookie (`name=value`) to send back.
    pub async fn sign_in(&self, user: &str, host: &str) -> String {
        let to = format!("https://{host}/");
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("to", &to)
            .finish();
        let page = send(
            self.addr(),
            Request::get(format!("{}?{query}", gateway::signin::AUTHORIZE_PATH))
                .header("host", login_host(DOMAIN))
                .header("x-amzn-oidc-data", self.token(user))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text());
        let ticket = page
            .text()
            .split("name=\"ticket\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("the page holds a ticket")
            .to_owned();
        let form = format!("ticket={ticket}&to=%2F");
        let redeemed = send(
            self.addr(),
            Request::post(gateway::signin::TICKET_PATH)
                .header("host", host)
                .header("origin", format!("https://{}", login_host(DOMAIN)))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Full::new(Bytes::from(form)))
                .unwrap(),
        )
        .await;
        assert_eq!(
            redeemed.status,
            StatusCode::SEE_OTHER,
            "{}",
            redeemed.text()
        );
        redeemed.headers["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned()
    }

    /// The sign-in cookie (`name=value`) of `user` on the service `url_key` of the
    /// session, as the session host sets it at the end of a sign-in (made here with the
    /// gateway's key; [`Self::sign_in`] goes through the whole flow).
    pub fn cookie(&self, user: &str, url_key: &str) -> String {
        self.cookie_on(user, &self.host(url_key))
    }

    /// The sign-in cookie of `user` on any session host `host` of the domain.
    pub fn cookie_on(&self, user: &str, host: &str) -> String {
        let sign_in = gateway::signin::SignIn::new(
            gateway::signin::SignInKey::new(SIGN_IN_KEY.to_vec()).unwrap(),
            Duration::from_secs(3600),
        );
        let host = parse_host(host, DOMAIN).unwrap();
        let set_cookie = sign_in.set_cookie(user, &host, gateway::testing::now());
        set_cookie.split(';').next().unwrap().to_owned()
    }

    /// A GET to `url_key` of the session as `user` signed in there (not signed in if
    /// `None`).
    pub async fn get(&self, url_key: &str, path: &str, user: Option<&str>) -> Answer {
        let mut request = Request::get(path).header("host", self.host(url_key));
        if let Some(user) = user {
            request = request.header("cookie", self.cookie(user, url_key));
        }
        send(self.addr(), request.body(Full::new(Bytes::new())).unwrap()).await
    }

    /// The login host's authorize request for the session's api, with `token` as the
    /// load balancer's `x-amzn-oidc-data` (none if `None`).
    pub fn authorize(&self, token: Option<&str>) -> Request<Full<Bytes>> {
        let to = format!("https://{}/", self.host("api"));
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("to", &to)
            .finish();
        let mut request = Request::get(format!("{}?{query}", gateway::signin::AUTHORIZE_PATH))
            .header("host", login_host(DOMAIN));
        if let Some(token) = token {
            request = request.header("x-amzn-oidc-data", token);
        }
        request.body(Full::new(Bytes::new())).unwrap()
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one request on a new connection.
pub async fn send<B>(addr: SocketAddr, request: Request<B>) -> Answer
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let response = sender.send_request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

/// Writes `bytes` on a new connection and reads until the gateway closes it.
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = stream.split();
    let mut out = Vec::new();
    let (_, read) = tokio::join!(writer.write_all(bytes), async {
        tokio::time::timeout(Duration::from_secs(10), reader.read_to_end(&mut out)).await
    });
    assert!(read.is_ok(), "the gateway kept the connection open");
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of a raw response.
pub fn status_of(raw: &str) -> u16 {
    raw.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a response: {raw:?}"))
}

/// Waits for `condition`, failing after `limit`.
pub async fn eventually(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Log output captured in memory.
#[derive(Clone, Default)]
pub struct Captured(pub Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// The JSON log lines written so far.
    pub fn lines(&self) -> Vec<serde_json::Value> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// Keeps this thread's log capture on while it lives.
pub struct Capturing {
    _default: tracing::subscriber::DefaultGuard,
    _second: tracing::Dispatch,
}

/// Captures the JSON log lines of this thread, and so of a gateway on this test's
/// runtime, while the guard lives.
pub fn capture_logs() -> (Captured, Capturing) {
    // tracing caches whether a call site is enabled once, globally. With one scoped
    // subscriber registered, it asks the subscriber of whichever thread gets to a call
    // site first: another test's thread, which has none, would turn the call site off
    // for this one too. A second registered dispatcher makes it ask them all.
    let second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer({
            let captured = captured.clone();
            move || captured.clone()
        })
        .finish();
    let guard = Capturing {
        _default: tracing::subscriber::set_default(subscriber),
        _second: second,
    };
    (captured, guard)
}

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What the upstream saw of one request body it was sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    Body(usize),
    Incomplete,
}

/// The session's services: an HTTP echo on three ports, with a few special paths.
pub struct Upstream {
    pub ports: BTreeMap<String, u16>,
    requests: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
    bodies: Arc<Mutex<Vec<Seen>>>,
    /// Lets `/slow-body` start reading its body.
    pub release: Arc<Notify>,
    /// Notified when `/slow-body` has its head.
    pub slow_started: Arc<Notify>,
}

impl Upstream {
    pub async fn start() -> Self {
        let requests = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let bodies: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let release = Arc::new(Notify::new());
        let slow_started = Arc::new(Notify::new());
        let mut ports = BTreeMap::new();
        for service in SERVICES {
            let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
            ports.insert(service.to_owned(), listener.local_addr().unwrap().port());
            let state = Echo {
                service,
                requests: Arc::clone(&requests),
                bodies: Arc::clone(&bodies),
                release: Arc::clone(&release),
                slow_started: Arc::clone(&slow_started),
            };
            let connections = Arc::clone(&connections);
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    connections.fetch_add(1, Ordering::SeqCst);
                    let state = state.clone();
                    let service = hyper::service::service_fn(move |req| state.clone().answer(req));
                    tokio::spawn(
                        hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .with_upgrades(),
                    );
                }
            });
        }
        Self {
            ports,
            requests,
            connections,
            bodies,
            release,
            slow_started,
        }
    }

    pub fn route(&self, user: &str, status: &str) -> SessionRoute {
        SessionRoute {
            user_id: user.into(),
            status: status.into(),
            private_ip: Ipv4Addr::LOCALHOST,
            service_ports: self.ports.clone(),
        }
    }

    /// Requests and connections that reached any service.
    pub fn reached(&self) -> (usize, usize) {
        (
            self.requests.load(Ordering::SeqCst),
            self.connections.load(Ordering::SeqCst),
        )
    }

    pub fn bodies(&self) -> Vec<Seen> {
        self.bodies.lock().unwrap().clone()
    }
}

#[derive(Clone)]
struct Echo {
    service: &'static str,
    requests: Arc<AtomicUsize>,
    bodies: Arc<Mutex<Vec<Seen>>>,
    release: Arc<Notify>,
    slow_started: Arc<Notify>,
}

impl Echo {
    async fn answer(self, mut req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        match req.uri().path() {
            "/ws" if req.headers().contains_key(UPGRADE) => {
                let key = req.headers().get(SEC_WEBSOCKET_KEY).cloned();
                let upgrade = hyper::upgrade::on(&mut req);
                tokio::spawn(async move {
                    let upgraded = upgrade.await.unwrap();
                    let mut ws = WebSocketStream::from_raw_socket(
                        TokioIo::new(upgraded),
                        Role::Server,
                        None,
                    )
                    .await;
                    while let Some(Ok(message)) = ws.next().await {
                        if message.is_text() || message.is_binary() {
                            ws.send(message).await.unwrap();
                        }
                    }
                });
                let accept = derive_accept_key(key.unwrap().as_bytes());
                let mut response = Response::new(Full::new(Bytes::new()));
                *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
                let headers = response.headers_mut();
                headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
                headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
                headers.insert(SEC_WEBSOCKET_ACCEPT, accept.parse().unwrap());
                Ok(response)
            }
            "/hang" => std::future::pending().await,
            "/slow-body" => {
                self.slow_started.notify_one();
                self.release.notified().await;
                let mut body = req.into_body();
                let (mut seen, mut intact) = (0u64, true);
                while let Some(frame) = body.frame().await {
                    let Ok(frame) = frame else {
                        self.bodies.lock().unwrap().push(Seen::Incomplete);
                        return Ok(Response::new(Full::new(Bytes::new())));
                    };
                    if let Some(data) = frame.data_ref() {
                        intact &= data
                            .iter()
                            .enumerate()
                            .all(|(i, b)| *b == pattern(seen + i as u64));
                        seen += data.len() as u64;
                    }
                }
                self.bodies.lock().unwrap().push(Seen::Body(seen as usize));
                let answer = json!({"bytes": seen, "intact": intact});
                Ok(Response::new(Full::new(Bytes::from(answer.to_string()))))
            }
            _ => {
                let (parts, body) = req.into_parts();
                let body = match body.collect().await {
                    Ok(body) => body.to_bytes(),
                    Err(_) => {
                        self.bodies.lock().unwrap().push(Seen::Incomplete);
                        return Ok(Response::new(Full::new(Bytes::new())));
                    }
                };
                self.bodies.lock().unwrap().push(Seen::Body(body.len()));
                let headers: Vec<(String, String)> = parts
                    .headers
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.to_string(),
                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                        )
                    })
                    .collect();
                let answer = json!({
                    "service": self.service,
                    "method": parts.method.as_str(),
                    "target": parts.uri.to_string(),
                    "headers": headers,
                    "body": String::from_utf8_lossy(&body),
                });
                let mut response = Response::new(Full::new(Bytes::from(answer.to_string())));
                let headers = response.headers_mut();
                headers.insert("x-service", HeaderValue::from_static(self.service));
                headers.insert(CONNECTION, HeaderValue::from_static("x-upstream-hop"));
                headers.insert("x-upstream-hop", HeaderValue::from_static("secret"));
                headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
                headers.insert("proxy-authenticate", HeaderValue::from_static("Basic"));
                Ok(response)
            }
        }
    }
}

/// The headers of an echo answer named `name`, in order.
pub fn echoed(answer: &serde_json::Value, name: &str) -> Vec<String> {
    answer["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|pair| pair[0] == name)
        .map(|pair| pair[1].as_str().unwrap().to_owned())
        .collect()
}
