//! What a session task's containers answer on the local stack: for each service port
//! of a running task, a small real HTTP server on the task's own private address (a
//! loopback address, see `--task-addresses` of the moto server), so that the session
//! gateway forwards to exactly where it would on AWS. Each answers any request with a
//! JSON echo of what it received, and upgrades `Upgrade: websocket` requests to a
//! WebSocket echo.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

/// The servers of one task; dropping it stops them (as the task's containers exit).
pub struct TaskServices {
    pub address: IpAddr,
    /// The port each service listens on (chosen by the system where asked for port 0).
    pub ports: Vec<u16>,
    servers: JoinSet<()>,
}

impl TaskServices {
    /// Listens on `address` at each `(service, port)`. Fails if an address is taken.
    pub async fn start(address: IpAddr, services: &[(String, u16)]) -> std::io::Result<Self> {
        let mut servers = JoinSet::new();
        let mut ports = Vec::with_capacity(services.len());
        for (service, port) in services {
            let listener = TcpListener::bind(SocketAddr::new(address, *port)).await?;
            let port = listener.local_addr()?.port();
            ports.push(port);
            servers.spawn(serve(listener, service.clone(), port));
        }
        Ok(Self {
            address,
            ports,
            servers,
        })
    }

    /// True once every service answers an HTTP request: what the task's container
    /// health checks (`curl http://127.0.0.1:{port}/`) would see.
    pub async fn healthy(&self, ports: &[u16]) -> bool {
        for port in ports {
            let Ok(stream) = tokio::net::TcpStream::connect((self.address, *port)).await else {
                return false;
            };
            let Ok((mut sender, conn)) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
            else {
                return false;
            };
            tokio::spawn(conn);
            let request = Request::get("/")
                .header("host", format!("127.0.0.1:{port}"))
                .body(Full::new(Bytes::new()))
                .expect("a valid request");
            if sender.send_request(request).await.is_err() {
                return false;
            }
        }
        true
    }
}

impl Drop for TaskServices {
    fn drop(&mut self) {
        self.servers.abort_all();
    }
}

async fn serve(listener: TcpListener, service: String, port: u16) {
    let mut connections = JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        let service = service.clone();
        connections.spawn(async move {
            let handler = hyper::service::service_fn(move |req| answer(req, service.clone(), port));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), handler)
                .with_upgrades()
                .await;
        });
        while connections.try_join_next().is_some() {}
    }
}

async fn answer(
    req: Request<Incoming>,
    service: String,
    port: u16,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let wants_websocket = req
        .headers()
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if wants_websocket {
        return Ok(websocket_echo(req));
    }
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let headers: serde_json::Map<String, serde_json::Value> = parts
        .headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                json!(String::from_utf8_lossy(value.as_bytes())),
            )
        })
        .collect();
    let echo = json!({
        "service": service,
        "port": port,
        "method": parts.method.as_str(),
        "path": parts.uri.to_string(),
        "headers": headers,
        "body_bytes": body.len(),
    });
    Ok(Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(echo.to_string())))
        .expect("a valid response"))
}

/// Accepts the WebSocket handshake (RFC 6455) and echoes every message back.
fn websocket_echo(mut req: Request<Incoming>) -> Response<Full<Bytes>> {
    let Some(key) = req.headers().get(SEC_WEBSOCKET_KEY).cloned() else {
        return Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .body(Full::new(Bytes::from_static(b"missing Sec-WebSocket-Key")))
            .expect("a valid response");
    };
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else {
            return;
        };
        let mut socket =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        while let Some(Ok(message)) = socket.next().await {
            if message.is_close() {
                break;
            }
            if (message.is_text() || message.is_binary()) && socket.send(message).await.is_err() {
                break;
            }
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(CONNECTION, "upgrade")
        .header(UPGRADE, "websocket")
        .header(SEC_WEBSOCKET_ACCEPT, derive_accept_key(key.as_bytes()))
        .body(Full::new(Bytes::new()))
        .expect("a valid response")
}
