//! The local stand-in for the Application Load Balancer in front of the session
//! gateway. On AWS the ALB signs users in with the OpenID Connect provider
//! (`authenticate-oidc`) on the login host only (`login.{domain}`, the provider's one
//! callback) and passes those requests on with the user's claims in
//! `x-amzn-oidc-data`, a JWT it signs with ES256 (its `signer` is the load balancer's
//! ARN, its key published at `https://public-keys.auth.elb.{region}.amazonaws.com/{kid}`);
//! every other host goes to the gateway as sent (the gateway signs users in there with
//! its own cookie). Here the login host's user is the local HTTP API's development
//! identity (`Authorization: Bearer dev:<user>`, harness only: the gateway itself never
//! accepts it); a login-host request without one gets 401 where the ALB would redirect
//! to the provider. The token is signed
//! with a key made for this stack and published as AWS publishes the ALB's
//! (`gateway::testing::KeyServer`), so the gateway checks it exactly as it checks the
//! ALB's.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, HOST};
use hyper::{Request, Response, StatusCode};
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

/// The development identity of a request: `Bearer dev:<user>`.
fn dev_user(req: &Request<Incoming>) -> Option<String> {
    let value = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let user = value.strip_prefix("Bearer dev:")?.trim();
    (!user.is_empty()).then(|| user.to_owned())
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
    let user = dev_user(&req);
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
            return Ok(plain(StatusCode::UNAUTHORIZED, "sign-in required\n"));
        };
        headers.remove(AUTHORIZATION);
        headers.insert("x-amzn-oidc-data", value(&(rules.mint)(&user)));
        headers.insert("x-amzn-oidc-identity", value(&user));
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
