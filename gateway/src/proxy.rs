//! One request through the gateway: refuse what is malformed or ambiguous, identify the
//! caller, authorize them for the session named by the host, and forward to the
//! session's service, streaming both ways (WebSocket upgrades included). On the login
//! host, and at a session host's ticket path, the gateway answers itself: the sign-in
//! of `signin.rs`, and on the login host the console (`console.rs`) and its calls to
//! the API (`console_api.rs`).
//!
//! Who calls: on the login host, the load balancer's signed token (the load balancer
//! authenticates that host only); on a session host, the gateway's sign-in cookie for
//! that host, and nothing else: a token there can only be one a client sent, and is
//! ignored (and never forwarded). Only the session's owner is let in. The API also lets admins act for other users,
//! but that rule needs the admin scope of an API token, and the load balancer's signed
//! claims carry no scopes: here it cannot be checked, so admins get no way in.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::BodyExt;
use http_body_util::Limited;
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, CACHE_CONTROL, CONNECTION, CONTENT_LENGTH, CONTENT_SECURITY_POLICY, CONTENT_TYPE,
    HOST, LOCATION, ORIGIN, REFERRER_POLICY, SET_COOKIE, TRANSFER_ENCODING,
};
use hyper::Method;
use hyper::{Request, Response, StatusCode, Uri, Version};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use session_core::hosts::{is_login_host, login_host, parse_host, service_label, SessionHost};

use crate::body::{Counted, RequestLog, ResponseBody};
use crate::config::Config;
use crate::console;
use crate::console_api::{self, ConsoleApi};
use crate::framing::{Tracker, Verdict};
use crate::headers::{is_upgrade, remove_credentials, remove_hop_by_hop, safe_path, set_forwarded};
use crate::identity::{Verifier, OIDC_DATA_HEADER};
use crate::sessions::{CachedLookup, SessionLookup, SessionRoute};
use crate::signin::{self, SignIn};

/// What a request body is forwarded as: streamed, counted, and cut at the limit.
pub type UpstreamBody = Limited<Counted<Incoming>>;

/// Everything a request needs, shared by all connections.
pub struct Shared<L> {
    pub config: Config,
    pub verifier: Verifier,
    pub sign_in: SignIn,
    pub sessions: CachedLookup<L>,
    pub client: Client<HttpConnector, UpstreamBody>,
    /// The console's calls to the API, on the login host.
    pub console_api: ConsoleApi,
    /// Tracks the WebSocket tunnels, so that shutdown waits for them too.
    pub tunnels: tokio::sync::mpsc::Sender<()>,
}

/// The pooled client to the sessions' services.
pub fn client(config: &Config) -> Client<HttpConnector, UpstreamBody> {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(config.upstream_connect_timeout));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        // Below the 5 s keep-alive timeout of Node's and uvicorn's servers, so an idle
        // pooled connection is dropped here before the service closes it under a request.
        .pool_idle_timeout(Duration::from_secs(4))
        .build(connector)
}

/// The gateway's own answers: plain, short, the same whatever the reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    BadRequest(&'static str),
    SignIn(&'static str),
    /// A request from a page of another session, or another site.
    Forbidden(&'static str),
    /// No such session, someone else's, not running, no such service: one answer.
    NotFound(&'static str),
    TooLarge,
    Unavailable,
    BadGateway,
    GatewayTimeout,
}

impl Refusal {
    fn status(self) -> StatusCode {
        match self {
            Refusal::BadRequest(_) => StatusCode::BAD_REQUEST,
            Refusal::SignIn(_) => StatusCode::UNAUTHORIZED,
            Refusal::Forbidden(_) => StatusCode::FORBIDDEN,
            Refusal::NotFound(_) => StatusCode::NOT_FOUND,
            Refusal::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::BadGateway => StatusCode::BAD_GATEWAY,
            Refusal::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    fn body(self) -> &'static str {
        match self {
            Refusal::BadRequest(_) => "bad request\n",
            Refusal::SignIn(_) => "sign-in required\n",
            Refusal::Forbidden(_) => "forbidden\n",
            Refusal::NotFound(_) => "not found\n",
            Refusal::TooLarge => "payload too large\n",
            Refusal::Unavailable => "service unavailable\n",
            Refusal::BadGateway => "bad gateway\n",
            Refusal::GatewayTimeout => "gateway timeout\n",
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Refusal::BadRequest(why)
            | Refusal::SignIn(why)
            | Refusal::Forbidden(why)
            | Refusal::NotFound(why) => why,
            Refusal::TooLarge => "body too large",
            Refusal::Unavailable => "session look-up failed",
            Refusal::BadGateway => "upstream unreachable",
            Refusal::GatewayTimeout => "upstream timed out",
        }
    }

    /// Refusals that leave a request body unread, or the framing reader unsure, end
    /// the connection.
    fn closes(self) -> bool {
        matches!(self, Refusal::BadRequest(_) | Refusal::TooLarge)
    }

    fn respond(self, mut log: RequestLog, close: bool) -> Response<ResponseBody> {
        log.status = self.status().as_u16();
        log.refused = Some(self.reason());
        let mut response = Response::new(ResponseBody::own(self.body(), log));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if close || self.closes() {
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// Answers one request.
pub async fn handle<L: SessionLookup>(
    shared: &Shared<L>,
    framing: &Mutex<Tracker>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<ResponseBody> {
    let mut log = RequestLog::new(req.method().as_str());
    let verdict = framing
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .next_verdict();
    let upgrade = is_upgrade(req.headers());
    let checked = match check(shared, verdict, &req) {
        Ok(checked) => checked,
        Err(refusal) => return refusal.respond(log, upgrade),
    };
    let named = match checked.place {
        Place::Login => return login(shared, req, log).await,
        Place::Session(named) => named,
    };
    log.service = Some(named.label.clone());
    log.session_id = Some(named.session_id.clone());
    if req.uri().path() == signin::TICKET_PATH {
        return redeem(shared, req, &named, log).await;
    }
    match authorize(shared, &req, &checked.host, &named, &mut log).await {
        Ok(target) => forward(shared, peer, req, target, log).await,
        Err(Denied::Refused(refusal)) => refusal.respond(log, upgrade),
        Err(Denied::NotSignedIn) => {
            let navigation = matches!(*req.method(), Method::GET | Method::HEAD) && !upgrade;
            if !navigation {
                return Refusal::SignIn("no identity").respond(log, upgrade);
            }
            let location = signin::login_redirect(
                &shared.config.url_scheme,
                &shared.config.session_domain,
                &checked.host_name,
                &checked.path_and_query,
            );
            redirect(
                StatusCode::FOUND,
                &location,
                log,
                "sign-in at the login host",
            )
        }
    }
}

/// A request that is well framed and names a host the gateway serves.
struct Checked {
    host: HeaderValue,
    /// The host as the client wrote it (its port kept).
    host_name: String,
    path_and_query: String,
    place: Place,
}

enum Place {
    /// `login.{domain}`: where the load balancer signs users in.
    Login,
    /// `{service}--{session_id}.{domain}`.
    Session(SessionHost),
}

fn check<L: SessionLookup>(
    shared: &Shared<L>,
    verdict: Option<Verdict>,
    req: &Request<Incoming>,
) -> Result<Checked, Refusal> {
    check_framing(verdict, req)?;
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str())
        .filter(|_| req.uri().scheme().is_none() && req.uri().authority().is_none())
        .ok_or(Refusal::BadRequest("request target not in origin-form"))?
        .to_owned();
    if !safe_path(req.uri().path()) {
        return Err(Refusal::BadRequest("unsafe path"));
    }
    let mut hosts = req.headers().get_all(HOST).iter();
    let (Some(host), None) = (hosts.next(), hosts.next()) else {
        return Err(Refusal::BadRequest("missing or repeated Host"));
    };
    let host_name = host
        .to_str()
        .map_err(|_| Refusal::BadRequest("host names no session service"))?
        .to_owned();
    let domain = &shared.config.session_domain;
    let place = if is_login_host(&host_name, domain) {
        Place::Login
    } else {
        Place::Session(
            parse_host(&host_name, domain)
                .ok_or(Refusal::BadRequest("host names no session service"))?,
        )
    };
    Ok(Checked {
        host: host.clone(),
        host_name,
        path_and_query,
        place,
    })
}

/// Why a request to a session host is not forwarded.
enum Denied {
    /// No token and no sign-in cookie: sign in first.
    NotSignedIn,
    Refused(Refusal),
}

impl From<Refusal> for Denied {
    fn from(refusal: Refusal) -> Self {
        Denied::Refused(refusal)
    }
}

/// The user of a request with exactly one `x-amzn-oidc-data` token, verified; `None`
/// without one.
async fn token_user<L: SessionLookup>(
    shared: &Shared<L>,
    req: &Request<Incoming>,
) -> Result<Option<String>, Refusal> {
    let mut tokens = req.headers().get_all(OIDC_DATA_HEADER).iter();
    let token = match (tokens.next(), tokens.next()) {
        (None, _) => return Ok(None),
        (Some(token), None) => token
            .to_str()
            .map_err(|_| Refusal::SignIn("malformed token"))?,
        (Some(_), Some(_)) => return Err(Refusal::SignIn("repeated identity token")),
    };
    let identity = shared
        .verifier
        .verify(token)
        .await
        .map_err(|rejected| Refusal::SignIn(rejected.as_str()))?;
    Ok(Some(identity.user_id))
}

async fn authorize<L: SessionLookup>(
    shared: &Shared<L>,
    req: &Request<Incoming>,
    host: &HeaderValue,
    named: &SessionHost,
    log: &mut RequestLog,
) -> Result<Target, Denied> {
    let user_id = shared
        .sign_in
        .cookie_user(req.headers(), named, unix_now())
        .ok_or(Denied::NotSignedIn)?;
    log.user_key = Some(session_core::template::user_key(&user_id));
    check_origin(shared, req, named)?;

    let too_large = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|length| length > shared.config.max_request_body_bytes);
    if too_large {
        return Err(Refusal::TooLarge.into());
    }

    let route = shared.sessions.get(&named.session_id).await.map_err(|e| {
        tracing::error!(error = %e, "session look-up failed");
        Refusal::Unavailable
    })?;
    let route = route.ok_or(Refusal::NotFound("no such session"))?;
    let port = admit(&route, &user_id, &named.label)?;
    let path_and_query = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let upstream = format!("http://{}:{port}{path_and_query}", route.private_ip)
        .parse()
        .map_err(|_| Refusal::BadRequest("request target"))?;
    Ok(Target {
        host: host.clone(),
        upstream,
    })
}

/// Refuses a request a page of another origin made: another session's services share
/// the user's site (and so their `SameSite` cookies), but one session's page may not
/// act in another. Allowed: no `Origin` (navigations, same-origin GETs), the host
/// itself or another service of the same session.
fn check_origin<L: SessionLookup>(
    shared: &Shared<L>,
    req: &Request<Incoming>,
    named: &SessionHost,
) -> Result<(), Refusal> {
    let mut origins = req.headers().get_all(ORIGIN).iter();
    let origin = match (origins.next(), origins.next()) {
        (None, _) => return Ok(()),
        (Some(origin), None) => origin,
        (Some(_), Some(_)) => return Err(Refusal::Forbidden("repeated Origin")),
    };
    let scheme = &shared.config.url_scheme;
    let same_session = origin
        .to_str()
        .ok()
        .and_then(|o| o.strip_prefix(scheme.as_str())?.strip_prefix("://"))
        .and_then(|host| parse_host(host, &shared.config.session_domain))
        .is_some_and(|origin| origin.session_id == named.session_id);
    if same_session {
        Ok(())
    } else {
        Err(Refusal::Forbidden("cross-origin request"))
    }
}

/// The login host: `GET /_gateway/authorize?to={session URL}` answers the page that
/// posts a ticket for the signed-in user to that session host; the console's files,
/// who is signed in, and the console's calls to the API (`console_api.rs`) are
/// answered too. The load balancer signs in every request here, so a missing or bad
/// token is refused as anywhere.
async fn login<L: SessionLookup>(
    shared: &Shared<L>,
    req: Request<Incoming>,
    mut log: RequestLog,
) -> Response<ResponseBody> {
    let upgrade = is_upgrade(req.headers());
    let user_id = match token_user(shared, &req).await {
        Ok(Some(user_id)) => user_id,
        Ok(None) => return Refusal::SignIn("no identity token").respond(log, upgrade),
        Err(refusal) => return refusal.respond(log, upgrade),
    };
    log.user_key = Some(session_core::template::user_key(&user_id));
    if req.uri().path().starts_with(console_api::PREFIX) {
        let origin = login_origin(&shared.config);
        return shared.console_api.answer(req, &origin, log).await;
    }
    let read = matches!(*req.method(), Method::GET | Method::HEAD);
    let path = req.uri().path();
    if read && !upgrade {
        if let Some(asset) = console::asset(path) {
            return own_answer(
                asset.body.to_owned(),
                asset.content_type,
                console::POLICY,
                log,
            );
        }
        if path == console::WHOAMI_PATH {
            let body = console::whoami(&user_id);
            return own_answer(body, "application/json", console::POLICY, log);
        }
    }
    if !(read && path == signin::AUTHORIZE_PATH) {
        return Refusal::NotFound("nothing here on the login host").respond(log, upgrade);
    }
    let scheme = &shared.config.url_scheme;
    let Some(target) =
        signin::sign_in_target(req.uri().query(), scheme, &shared.config.session_domain)
    else {
        return Refusal::BadRequest("no session URL to sign in to").respond(log, upgrade);
    };
    let ticket = shared
        .sign_in
        .ticket(&user_id, &target.session_host, unix_now());
    let page = signin::ticket_page(scheme, &target, &ticket);
    let policy = signin::ticket_page_policy(scheme, &target);
    own_answer(page, "text/html; charset=utf-8", &policy, log)
}

/// The login host's origin, the only one of its pages (`{scheme}://login.{domain}`).
fn login_origin(config: &Config) -> String {
    format!(
        "{}://{}",
        config.url_scheme,
        login_host(&config.session_domain)
    )
}

/// A 200 the gateway answers itself on the login host: never cached (it is one
/// user's), the page's content security policy, and a referrer of the login host's
/// origin only (`strict-origin`: never the path, which may carry `?to=`). Not
/// `no-referrer`: under it a browser sends `Origin: null` with the ticket page's
/// POST to the session host (and with the console's own POSTs), which the gateway
/// must refuse, as it cannot tell the login host's page from any other.
fn own_answer(
    body: String,
    content_type: &'static str,
    policy: &str,
    mut log: RequestLog,
) -> Response<ResponseBody> {
    log.status = StatusCode::OK.as_u16();
    let mut response = Response::new(ResponseBody::page(body, log));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("strict-origin"));
    if let Ok(policy) = HeaderValue::from_str(policy) {
        headers.insert(CONTENT_SECURITY_POLICY, policy);
    }
    response
}

/// A session host's `POST /_gateway/ticket`, from the login host's page: a valid ticket
/// for this host sets the sign-in cookie and sends the browser back where it was going.
async fn redeem<L: SessionLookup>(
    shared: &Shared<L>,
    req: Request<Incoming>,
    named: &SessionHost,
    log: RequestLog,
) -> Response<ResponseBody> {
    let upgrade = is_upgrade(req.headers());
    if req.method() != Method::POST {
        return Refusal::NotFound("the ticket path takes POST").respond(log, upgrade);
    }
    let login_origin = login_origin(&shared.config);
    let from_login = req.headers().get(ORIGIN).is_none_or(|origin| {
        origin
            .as_bytes()
            .eq_ignore_ascii_case(login_origin.as_bytes())
    });
    if !from_login {
        return Refusal::Forbidden("ticket not from the login host").respond(log, true);
    }
    let body = http_body_util::Limited::new(req.into_body(), signin::MAX_TICKET_FORM_BYTES);
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return Refusal::BadRequest("ticket form unreadable or too large").respond(log, true);
    };
    let now = unix_now();
    let Some((ticket, path)) = signin::ticket_form(&body) else {
        return Refusal::BadRequest("no ticket").respond(log, false);
    };
    let Some(user_id) = shared.sign_in.redeem(&ticket, named, now) else {
        return Refusal::SignIn("invalid or expired ticket").respond(log, false);
    };
    let mut log = log;
    log.user_key = Some(session_core::template::user_key(&user_id));
    let cookie = shared.sign_in.set_cookie(&user_id, named, now);
    let mut response = redirect(StatusCode::SEE_OTHER, &path, log, "signed in");
    if let Ok(cookie) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(SET_COOKIE, cookie);
    }
    response
}

/// The gateway's own redirect (`location` already checked to be a URL of ours).
fn redirect(
    status: StatusCode,
    location: &str,
    mut log: RequestLog,
    why: &'static str,
) -> Response<ResponseBody> {
    let Ok(location) = HeaderValue::from_str(location) else {
        return Refusal::BadRequest("no URL to redirect to").respond(log, false);
    };
    log.status = status.as_u16();
    log.refused = Some(why);
    let mut response = Response::new(ResponseBody::own("", log));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(LOCATION, location);
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Where an authorized request goes.
struct Target {
    host: HeaderValue,
    upstream: Uri,
}

/// The port of the service `label` of `route`, if `user_id` may reach it now.
fn admit(route: &SessionRoute, user_id: &str, label: &str) -> Result<u16, Refusal> {
    if route.user_id != user_id {
        return Err(Refusal::NotFound("another user's session"));
    }
    if route.status != SessionRoute::RUNNING {
        return Err(Refusal::NotFound("session not running"));
    }
    let mut ports = route
        .service_ports
        .iter()
        .filter(|(key, _)| service_label(key) == label)
        .map(|(_, port)| *port);
    match (ports.next(), ports.next()) {
        (Some(port), None) => Ok(port),
        _ => Err(Refusal::NotFound("no such service")),
    }
}

/// Refuses what hyper let through but the framing reader refused, and checks the two
/// agree on which request this is. Both readers' rules are repeated on what is visible,
/// should either change.
fn check_framing(verdict: Option<Verdict>, req: &Request<Incoming>) -> Result<(), Refusal> {
    match verdict {
        Some(Verdict::Clean { method, target }) => {
            let same = method == req.method().as_str() && target == raw_target(req.uri());
            if !same {
                return Err(Refusal::BadRequest("framing reader out of step"));
            }
        }
        Some(Verdict::Refuse(why)) => return Err(Refusal::BadRequest(why)),
        None => return Err(Refusal::BadRequest("framing not followed")),
    }
    if req.version() != Version::HTTP_11 && req.version() != Version::HTTP_10 {
        return Err(Refusal::BadRequest("HTTP version"));
    }
    let headers = req.headers();
    let lengths = headers.get_all(CONTENT_LENGTH).iter().count();
    let encodings: Vec<_> = headers.get_all(TRANSFER_ENCODING).iter().collect();
    if lengths > 1 || (lengths > 0 && !encodings.is_empty()) {
        return Err(Refusal::BadRequest("ambiguous framing"));
    }
    if encodings.len() > 1
        || encodings
            .first()
            .is_some_and(|te| !te.as_bytes().trim_ascii().eq_ignore_ascii_case(b"chunked"))
    {
        return Err(Refusal::BadRequest(
            "a Transfer-Encoding other than chunked",
        ));
    }
    Ok(())
}

/// The request target as sent, for origin-form (the only form forwarded).
fn raw_target(uri: &Uri) -> String {
    match (uri.scheme(), uri.authority(), uri.path_and_query()) {
        (None, None, Some(pq)) => pq.as_str().to_owned(),
        _ => uri.to_string(),
    }
}

async fn forward<L: SessionLookup>(
    shared: &Shared<L>,
    peer: SocketAddr,
    mut req: Request<Incoming>,
    target: Target,
    mut log: RequestLog,
) -> Response<ResponseBody> {
    let upgrade = is_upgrade(req.headers()) && req.version() == Version::HTTP_11;
    let client_side = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    remove_hop_by_hop(&mut parts.headers, upgrade);
    remove_credentials(&mut parts.headers);
    parts.headers.insert(HOST, target.host.clone());
    set_forwarded(&mut parts.headers, peer_ip(peer), &target.host);
    parts.uri = target.upstream;
    parts.version = Version::HTTP_11;
    let body = Limited::new(
        Counted::new(body, Arc::clone(&log.bytes_in)),
        usize::try_from(shared.config.max_request_body_bytes).unwrap_or(usize::MAX),
    );
    let request = shared.client.request(Request::from_parts(parts, body));
    tokio::pin!(request);
    // The service may stay silent this long: the clock restarts while the request body
    // is still going out, so a long upload is not cut for taking long.
    let mut sent_before = log.bytes_in.load(Ordering::Relaxed);
    let sent = loop {
        match tokio::time::timeout(shared.config.upstream_response_timeout, request.as_mut()).await
        {
            Ok(sent) => break Some(sent),
            Err(_) => {
                let sent_now = log.bytes_in.load(Ordering::Relaxed);
                if sent_now == sent_before {
                    break None;
                }
                sent_before = sent_now;
            }
        }
    };
    let mut response = match sent {
        None => return Refusal::GatewayTimeout.respond(log, upgrade),
        Some(Err(e)) => {
            let refusal = if caused_by_length_limit(&e) {
                Refusal::TooLarge
            } else {
                tracing::warn!(error = %e, connect = e.is_connect(), "upstream request failed");
                Refusal::BadGateway
            };
            return refusal.respond(log, upgrade);
        }
        Some(Ok(response)) => response,
    };
    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    match client_side {
        Some(client_side) if switching => {
            let upstream_side = hyper::upgrade::on(&mut response);
            let tunnel = shared.tunnels.clone();
            tokio::spawn(async move {
                let _tunnel = tunnel;
                let (Ok(client), Ok(upstream)) = tokio::join!(client_side, upstream_side) else {
                    return;
                };
                let copied = tokio::io::copy_bidirectional(
                    &mut TokioIo::new(client),
                    &mut TokioIo::new(upstream),
                )
                .await;
                if let Ok((up, down)) = copied {
                    tracing::debug!(bytes_in = up, bytes_out = down, "tunnel closed");
                }
            });
        }
        _ if switching => return Refusal::BadGateway.respond(log, true),
        _ => {}
    }
    let (mut parts, body) = response.into_parts();
    remove_hop_by_hop(&mut parts.headers, switching);
    // A refused upgrade leaves the framing reader behind: end the connection.
    if upgrade && !switching {
        parts
            .headers
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    log.status = parts.status.as_u16();
    Response::from_parts(parts, ResponseBody::upstream(body, log))
}

fn peer_ip(peer: SocketAddr) -> IpAddr {
    match peer.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn caused_by_length_limit(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::Ipv4Addr;

    use super::*;

    fn route(user: &str, status: &str) -> SessionRoute {
        SessionRoute {
            user_id: user.into(),
            status: status.into(),
            private_ip: Ipv4Addr::LOCALHOST,
            service_ports: BTreeMap::from([
                ("api".into(), 8000),
                ("frontend".into(), 3000),
                ("suv_ui".into(), 3030),
            ]),
        }
    }

    #[test]
    fn only_the_owner_of_a_running_session_reaches_its_services() {
        assert_eq!(admit(&route("u", "running"), "u", "api"), Ok(8000));
        assert_eq!(admit(&route("u", "running"), "u", "suv-ui"), Ok(3030));
        for (route, user, label) in [
            (route("u", "running"), "v", "api"),
            (route("u", "stopping"), "u", "api"),
            (route("u", "provisioning"), "u", "api"),
            (route("u", "running"), "u", "suv_ui"),
            (route("u", "running"), "u", "db"),
        ] {
            let refusal = admit(&route, user, label).unwrap_err();
            assert_eq!(refusal.status(), StatusCode::NOT_FOUND);
            assert_eq!(refusal.body(), "not found\n");
        }
    }

    #[test]
    fn two_url_keys_with_one_label_reach_neither() {
        let mut ambiguous = route("u", "running");
        ambiguous.service_ports.insert("suv-ui".into(), 9999);
        assert!(admit(&ambiguous, "u", "suv-ui").is_err());
    }

    #[test]
    fn refusals_reveal_no_reason() {
        for refusal in [
            Refusal::NotFound("another user's session"),
            Refusal::NotFound("session not running"),
            Refusal::NotFound("no such session"),
        ] {
            assert_eq!(
                (refusal.status(), refusal.body()),
                (StatusCode::NOT_FOUND, "not found\n")
            );
        }
        assert_eq!(
            Refusal::SignIn("token signature").body(),
            "sign-in required\n"
        );
    }
}
