//! One request through the gateway: refuse what is malformed or ambiguous, identify the
//! caller, authorize them for the session named by the host, and forward to the
//! session's service, streaming both ways (WebSocket upgrades included).
//!
//! Only the session's owner is let in. The API also lets admins act for other users,
//! but that rule needs the admin scope of an API token, and the load balancer's signed
//! claims carry no scopes: here it cannot be checked, so admins get no way in.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Limited;
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, CACHE_CONTROL, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, TRANSFER_ENCODING,
};
use hyper::{Request, Response, StatusCode, Uri, Version};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use session_core::hosts::{parse_host, service_label};

use crate::body::{Counted, RequestLog, ResponseBody};
use crate::config::Config;
use crate::framing::{Tracker, Verdict};
use crate::headers::{is_upgrade, remove_credentials, remove_hop_by_hop, safe_path, set_forwarded};
use crate::identity::{Verifier, OIDC_DATA_HEADER};
use crate::sessions::{CachedLookup, SessionLookup, SessionRoute};

/// What a request body is forwarded as: streamed, counted, and cut at the limit.
pub type UpstreamBody = Limited<Counted<Incoming>>;

/// Everything a request needs, shared by all connections.
pub struct Shared<L> {
    pub config: Config,
    pub verifier: Verifier,
    pub sessions: CachedLookup<L>,
    pub client: Client<HttpConnector, UpstreamBody>,
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
            Refusal::NotFound(_) => "not found\n",
            Refusal::TooLarge => "payload too large\n",
            Refusal::Unavailable => "service unavailable\n",
            Refusal::BadGateway => "bad gateway\n",
            Refusal::GatewayTimeout => "gateway timeout\n",
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Refusal::BadRequest(why) | Refusal::SignIn(why) | Refusal::NotFound(why) => why,
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
    match authorize(shared, verdict, &req, &mut log).await {
        Ok(target) => forward(shared, peer, req, target, log).await,
        Err(refusal) => {
            let upgrade = is_upgrade(req.headers());
            refusal.respond(log, upgrade)
        }
    }
}

/// Where an authorized request goes.
struct Target {
    host: HeaderValue,
    upstream: Uri,
}

async fn authorize<L: SessionLookup>(
    shared: &Shared<L>,
    verdict: Option<Verdict>,
    req: &Request<Incoming>,
    log: &mut RequestLog,
) -> Result<Target, Refusal> {
    check_framing(verdict, req)?;
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str())
        .filter(|_| req.uri().scheme().is_none() && req.uri().authority().is_none())
        .ok_or(Refusal::BadRequest("request target not in origin-form"))?;
    if !safe_path(req.uri().path()) {
        return Err(Refusal::BadRequest("unsafe path"));
    }
    let mut hosts = req.headers().get_all(HOST).iter();
    let (Some(host), None) = (hosts.next(), hosts.next()) else {
        return Err(Refusal::BadRequest("missing or repeated Host"));
    };
    let named = host
        .to_str()
        .ok()
        .and_then(|h| parse_host(h, &shared.config.session_domain))
        .ok_or(Refusal::BadRequest("host names no session service"))?;
    log.service = Some(named.label.clone());
    log.session_id = Some(named.session_id.clone());

    let mut tokens = req.headers().get_all(OIDC_DATA_HEADER).iter();
    let token = match (tokens.next(), tokens.next()) {
        (Some(token), None) => token
            .to_str()
            .map_err(|_| Refusal::SignIn("malformed token"))?,
        (None, _) => return Err(Refusal::SignIn("no identity token")),
        (Some(_), Some(_)) => return Err(Refusal::SignIn("repeated identity token")),
    };
    let identity = shared
        .verifier
        .verify(token)
        .await
        .map_err(|rejected| Refusal::SignIn(rejected.as_str()))?;
    log.user_key = Some(session_core::template::user_key(&identity.user_id));

    let too_large = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|length| length > shared.config.max_request_body_bytes);
    if too_large {
        return Err(Refusal::TooLarge);
    }

    let route = shared.sessions.get(&named.session_id).await.map_err(|e| {
        tracing::error!(error = %e, "session look-up failed");
        Refusal::Unavailable
    })?;
    let route = route.ok_or(Refusal::NotFound("no such session"))?;
    let port = admit(&route, &identity.user_id, &named.label)?;
    let upstream = format!("http://{}:{port}{path_and_query}", route.private_ip)
        .parse()
        .map_err(|_| Refusal::BadRequest("request target"))?;
    Ok(Target {
        host: host.clone(),
        upstream,
    })
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
