//! The local stand-in for the Application Load Balancer in front of the session
//! gateway. On AWS the ALB signs users in with the OpenID Connect provider
//! (`authenticate-oidc`) on the login host only (`login.{domain}`, the provider's one
//! callback) and passes those requests on with the user's claims in
//! `x-amzn-oidc-data`, a JWT it signs with ES256 (its `signer` is the load balancer's
//! ARN, its key published at `https://public-keys.auth.elb.{region}.amazonaws.com/{kid}`);
//! every other host goes to the gateway as sent (the gateway signs users in there with
//! its own cookie). Here the login host's user is the local HTTP API's development
//! identity (`Authorization: Bearer dev:<user>`, harness only: the gateway itself never
//! accepts it), or, for browsers, the `dev-identity` cookie that this stand-in's own
//! sign-in form sets (it plays the provider's page: a user name, no password, local
//! only). A browser's page load without either is sent to that form, as the ALB sends
//! it to the provider; any other request without one gets 401, as the ALB answers
//! requests it cannot redirect. Like the ALB, it passes the user's access token on in
//! `x-amzn-oidc-accesstoken` — here the local HTTP API's `dev:<user>` — which the
//! gateway forwards to the API for the web console. The token is signed
//! with a key made for this stack and published as AWS publishes the ALB's
//! (`gateway::testing::KeyServer`), so the gateway checks it exactly as it checks the
//! ALB's.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, COOKIE, HOST, LOCATION, SET_COOKIE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Signs the ALB's user-claims token for a user id (the `sub` claim).
pub type Mint = Arc<dyn Fn(&str) -> String + Send + Sync>;

type Body = BoxBody<Bytes, hyper::Error>;

/// The ARN the local load balancer signs as (the gateway's `ALB_ARN`).
pub const LOCAL_ALB_ARN: &str =
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/sessions-local/50dc6c495c0c9188";

pub struct LoadBalancer {
    pub port: u16,
    accept: JoinHandle<()>,
}

/// Which requests the load balancer signs in: those to the login host of `domain`.
#[derive(Clone)]
struct Rules {
    domain: Arc<str>,
    mint: Mint,
}

impl LoadBalancer {
    /// Serves on `listener` and passes requests to `gateway`, signing in those to the
    /// login host of the sessions' `domain`.
    pub async fn start(
        listener: std::net::TcpListener,
        gateway: SocketAddr,
        domain: &str,
        mint: Mint,
    ) -> std::io::Result<Self> {
        let rules = Rules {
            domain: domain.into(),
            mint,
        };
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener)?;
        let port = listener.local_addr()?.port();
        let accept = tokio::spawn(async move {
            while let Ok((stream, client)) = listener.accept().await {
                let rules = rules.clone();
                tokio::spawn(async move {
                    let handler = hyper::service::service_fn(move |req| {
                        pass_on(req, gateway, client, rules.clone())
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), handler)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Ok(Self { port, accept })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for LoadBalancer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(
            Full::new(Bytes::from_static(text.as_bytes()))
                .map_err(|e| match e {})
                .boxed(),
        )
        .expect("a valid response")
}

/// The sign-in form's path on the login host (the provider's page, played locally).
pub const SIGN_IN_PATH: &str = "/_local/sign-in";

/// The cookie the sign-in form sets: the signed-in user's id, in the open (local only).
const IDENTITY_COOKIE: &str = "dev-identity";

/// The development identity of a request: `Bearer dev:<user>`, else the sign-in
/// form's cookie.
fn dev_user(req: &Request<Incoming>) -> Option<String> {
    let bearer = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer dev:"));
    let user = match bearer {
        Some(user) => user.trim().to_owned(),
        None => identity_cookie(req.headers())?,
    };
    valid_user(&user).then_some(user)
}

/// A user id the stand-in passes on in headers: 1 to 128 printable ASCII characters
/// (spaces too, as some providers' ids have; a header value takes no other).
fn valid_user(user: &str) -> bool {
    (1..=128).contains(&user.len()) && user.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
}

fn identity_cookie(headers: &hyper::HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == IDENTITY_COOKIE)
        .and_then(|(_, value)| {
            form_urlencoded::parse(format!("u={value}").as_bytes())
                .next()
                .map(|(_, user)| user.into_owned())
        })
}

/// A page load a browser makes (which the ALB would redirect to the provider).
fn is_page_load(req: &Request<Incoming>) -> bool {
    req.method() == Method::GET
        && req
            .headers()
            .get(ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.contains("text/html"))
}

fn html(status: StatusCode, page: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "text/html; charset=utf-8")
        .header("cache-control", "no-store")
        .body(Full::new(Bytes::from(page)).map_err(|e| match e {}).boxed())
        .expect("a valid response")
}

fn see_other(location: &str, cookie: Option<String>) -> Response<Body> {
    let mut response = Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(LOCATION, location)
        .header("cache-control", "no-store");
    if let Some(cookie) = cookie {
        response = response.header(SET_COOKIE, cookie);
    }
    response
        .body(Full::new(Bytes::new()).map_err(|e| match e {}).boxed())
        .expect("a valid response")
}

/// The provider's sign-in page, played: `GET` shows a form asking for a user name,
/// `POST` signs that user in (the cookie) and goes to the console.
async fn sign_in_form(req: Request<Incoming>) -> Response<Body> {
    if req.method() == Method::POST {
        let Ok(body) = http_body_util::Limited::new(req.into_body(), 4096)
            .collect()
            .await
            .map(|b| b.to_bytes())
        else {
            return plain(StatusCode::BAD_REQUEST, "sign-in form unreadable\n");
        };
        let user = form_urlencoded::parse(&body)
            .find(|(name, _)| name == "user")
            .map(|(_, user)| user.trim().to_owned())
            .unwrap_or_default();
        if !valid_user(&user) {
            return plain(
                StatusCode::BAD_REQUEST,
                "a user name is 1 to 128 printable ASCII characters\n",
            );
        }
        let value: String = form_urlencoded::byte_serialize(user.as_bytes()).collect();
        let cookie = format!("{IDENTITY_COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax");
        return see_other("/", Some(cookie));
    }
    html(
        StatusCode::OK,
        format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>Sign in (local stack)</title></head><body><main>\
             <h1>Sign in</h1><p>The local stack's stand-in for your identity provider: \
             any user name, no password.</p>\
             <form method=\"post\" action=\"{SIGN_IN_PATH}\">\
             <label for=\"user\">User name</label> \
             <input id=\"user\" name=\"user\" autocomplete=\"username\" required> \
             <button type=\"submit\">Sign in</button></form></main></body></html>\n"
        ),
    )
}

async fn pass_on(
    mut req: Request<Incoming>,
    gateway: SocketAddr,
    client: SocketAddr,
    rules: Rules,
) -> Result<Response<Body>, Infallible> {
    let login = req
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|host| session_core::hosts::is_login_host(host, &rules.domain));
    if login && req.uri().path() == SIGN_IN_PATH {
        return Ok(sign_in_form(req).await);
    }
    let user = dev_user(&req);
    let page_load = is_page_load(&req);
    let headers = req.headers_mut();
    // Only the load balancer's own claims go on; the gateway trusts them only for
    // their signature anyway, which a client cannot make.
    let forged: Vec<_> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("x-amzn-oidc-"))
        .cloned()
        .collect();
    for name in forged {
        headers.remove(name);
    }
    let value = |v: &str| HeaderValue::from_str(v).expect("a valid header value");
    if login {
        let Some(user) = user else {
            if page_load {
                return Ok(see_other(SIGN_IN_PATH, None));
            }
            return Ok(plain(StatusCode::UNAUTHORIZED, "sign-in required\n"));
        };
        headers.remove(AUTHORIZATION);
        headers.insert("x-amzn-oidc-data", value(&(rules.mint)(&user)));
        headers.insert("x-amzn-oidc-identity", value(&user));
        headers.insert("x-amzn-oidc-accesstoken", value(&format!("dev:{user}")));
    }
    headers.insert("x-forwarded-for", value(&client.ip().to_string()));
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));

    let Ok(stream) = TcpStream::connect(gateway).await else {
        return Ok(plain(StatusCode::BAD_GATEWAY, "502 Bad Gateway\n"));
    };
    let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    else {
        return Ok(plain(StatusCode::BAD_GATEWAY, "502 Bad Gateway\n"));
    };
    tokio::spawn(conn.with_upgrades());
    let client_upgrade = hyper::upgrade::on(&mut req);
    let Ok(mut response) = sender.send_request(req).await else {
        return Ok(plain(StatusCode::BAD_GATEWAY, "502 Bad Gateway\n"));
    };
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let gateway_upgrade = hyper::upgrade::on(&mut response);
        tokio::spawn(async move {
            if let (Ok(client), Ok(gateway)) = (client_upgrade.await, gateway_upgrade.await) {
                let _ = tokio::io::copy_bidirectional(
                    &mut TokioIo::new(client),
                    &mut TokioIo::new(gateway),
                )
                .await;
            }
        });
    }
    Ok(response.map(BodyExt::boxed))
}
