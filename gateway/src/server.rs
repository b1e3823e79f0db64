//! The listeners: the proxy and the load balancer's health check, and their graceful
//! shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::body::ResponseBody;
use crate::config::Config;
use crate::console_api::ConsoleApi;
use crate::framing::{Framing, Tracker};
use crate::identity::{PublicKeys, Verifier};
use crate::proxy::{self, Shared};
use crate::sessions::{CachedLookup, SessionLookup};
use crate::signin::SignIn;

/// A running gateway. Dropping it stops accepting connections, as [`Gateway::shutdown`]
/// does, without waiting.
pub struct Gateway {
    proxy_addr: SocketAddr,
    health_addr: SocketAddr,
    stop: watch::Sender<bool>,
    /// Closed once every connection and tunnel has ended.
    drained: mpsc::Receiver<()>,
}

impl Gateway {
    /// Where the proxy listens.
    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy_addr
    }

    /// Where `GET /healthz` is answered.
    pub fn health_addr(&self) -> SocketAddr {
        self.health_addr
    }

    /// Stops accepting connections, lets requests in flight finish and closes idle
    /// connections; waits at most `grace` for them. True if all ended in time.
    pub async fn shutdown(mut self, grace: Duration) -> bool {
        self.stop.send_replace(true);
        tokio::time::timeout(grace, self.drained.recv())
            .await
            .is_ok()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// Binds the proxy and health listeners of `config` and serves until shut down.
pub async fn serve<L: SessionLookup>(
    config: Config,
    lookup: L,
    keys: PublicKeys,
) -> io::Result<Gateway> {
    let proxy_listener = TcpListener::bind(config.listen).await?;
    let health_listener = TcpListener::bind(config.health_listen).await?;
    let (stop, stopped) = watch::channel(false);
    let (in_flight, drained) = mpsc::channel::<()>(1);
    let gateway = Gateway {
        proxy_addr: proxy_listener.local_addr()?,
        health_addr: health_listener.local_addr()?,
        stop,
        drained,
    };

    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_header_size(config.max_header_bytes)
        .keep_alive(true);
    let shared = Arc::new(Shared {
        verifier: Verifier::new(config.alb_arn.clone(), keys),
        sign_in: SignIn::new(config.sign_in_key.clone(), config.sign_in_ttl),
        sessions: CachedLookup::new(lookup, config.session_cache_ttl),
        client: proxy::client(&config),
        console_api: ConsoleApi::new(config.api_url.clone()),
        tunnels: in_flight.clone(),
        config,
    });

    let max_head = shared.config.max_header_bytes;
    tokio::spawn(accept(
        proxy_listener,
        stopped.clone(),
        in_flight.clone(),
        move |stream, peer, stopped, guard| {
            let shared = Arc::clone(&shared);
            let builder = builder.clone();
            async move {
                let tracker = Arc::new(Mutex::new(Tracker::new(max_head)));
                let io = TokioIo::new(Framing::new(stream, Arc::clone(&tracker)));
                let service = service_fn(move |req| {
                    let shared = Arc::clone(&shared);
                    let tracker = Arc::clone(&tracker);
                    async move { Ok::<_, Infallible>(proxy::handle(&shared, &tracker, peer, req).await) }
                });
                let connection = builder.serve_connection(io, service).with_upgrades();
                until_stopped(connection, stopped, |c| c.graceful_shutdown()).await;
                drop(guard);
            }
        },
    ));

    let mut health = http1::Builder::new();
    health
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10));
    tokio::spawn(accept(
        health_listener,
        stopped,
        in_flight,
        move |stream, _peer, stopped, guard| {
            let health = health.clone();
            async move {
                let connection = health.serve_connection(TokioIo::new(stream), service_fn(healthz));
                until_stopped(connection, stopped, |c| c.graceful_shutdown()).await;
                drop(guard);
            }
        },
    ));
    Ok(gateway)
}

/// Accepts connections until stopped, each served by `serve` on its own task holding a
/// guard of `in_flight`.
async fn accept<F, Fut>(
    listener: TcpListener,
    stopped: watch::Receiver<bool>,
    in_flight: mpsc::Sender<()>,
    serve: F,
) where
    F: Fn(TcpStream, SocketAddr, watch::Receiver<bool>, mpsc::Sender<()>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut stop = stopped.clone();
    loop {
        tokio::select! {
            () = until(&mut stop) => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(serve(stream, peer, stopped.clone(), in_flight.clone()));
                }
                // Out of file descriptors, or a connection reset before it was
                // accepted: keep serving the others.
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// Drives a connection; once stopped, asks it to finish its request in flight and
/// close.
async fn until_stopped<C, E>(
    connection: C,
    mut stopped: watch::Receiver<bool>,
    graceful: impl FnOnce(std::pin::Pin<&mut C>),
) where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = until(&mut stopped) => {
            graceful(connection.as_mut());
            connection.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Resolves once the gateway is stopping (or gone).
async fn until(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

async fn healthz(
    req: Request<hyper::body::Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    let (status, text) = if req.method() == Method::GET && req.uri().path() == "/healthz" {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::NOT_FOUND, "not found\n")
    };
    let mut response = Response::new(ResponseBody::unlogged(text));
    *response.status_mut() = status;
    Ok(response)
}
