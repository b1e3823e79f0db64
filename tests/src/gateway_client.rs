//! The session gateway of the local stack ([`LocalGateway`]): its process, started
//! and stopped with the [`Stack`], and the client the tests reach sessions through
//! (through the load balancer as a signed-in browser, or straight to the gateway).

use std::collections::HashMap;
use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::load_balancer;
use crate::stack::{log_file, log_tail};
use crate::Stack;

/// The session gateway of the local stack: the real `gateway` binary, reading the
/// sessions table on the emulator, behind the stand-in for the load balancer
/// ([`load_balancer`]) that signs users in with the development identity.
pub struct LocalGateway {
    pub load_balancer: load_balancer::LoadBalancer,
    /// Where the gateway itself listens (behind the load balancer on AWS: only the
    /// load balancer's security group reaches it).
    pub address: std::net::SocketAddr,
    pub health_address: std::net::SocketAddr,
    /// Signs the load balancer's tokens: tests forge and expire them with it.
    pub signer: Arc<gateway::testing::AlbSigner>,
    pub keys: gateway::testing::KeyServer,
    /// The sessions' domain (`SESSION_DOMAIN`), with the load balancer's port.
    pub domain: String,
    /// The sign-in cookie of each (identity, session host), as a browser keeps them.
    cookies: Mutex<HashMap<(String, String), String>>,
    process: Mutex<Option<Child>>,
}

impl LocalGateway {
    /// Sends a request for a session URL as a signed-in browser does: to the load
    /// balancer, with the URL's host and the sign-in cookie of that host for the user
    /// of `token` (`dev:<user>`; signing in first, as [`Self::sign_in`]; none: not
    /// signed in). A `cookie` in `headers` goes along. Returns the status and the body.
    pub async fn request(
        &self,
        method: &str,
        url: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> (u16, String) {
        let (host, path) = split_url(url);
        let mut cookies: Vec<String> = headers
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case("cookie"))
            .map(|(_, value)| (*value).to_owned())
            .collect();
        if let Some(token) = token {
            cookies.push(self.sign_in(token, host).await);
        }
        let cookie = cookies.join("; ");
        let mut all = Vec::new();
        if !cookie.is_empty() {
            all.push(("cookie", cookie.as_str()));
        }
        all.extend(
            headers
                .iter()
                .filter(|(name, _)| !name.eq_ignore_ascii_case("cookie")),
        );
        let (status, _, body) = self
            .exchange(method, &format!("http://{host}{path}"), &all)
            .await;
        (status, body)
    }

    /// One request to `url` through the load balancer with `headers` and nothing
    /// added (no sign-in): the status, headers and body.
    pub async fn exchange(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
    ) -> (u16, hyper::HeaderMap, String) {
        let (host, path) = split_url(url);
        let mut all = vec![("host", host)];
        all.extend_from_slice(headers);
        http_exchange(self.lb_address(), method, path, &all, "").await
    }

    fn lb_address(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.load_balancer.port).into()
    }

    /// Signs the user of `token` in on the session host `host` as a browser does, and
    /// returns the gateway's cookie (`name=value`): the login host's authorize page
    /// (where the load balancer signs the user in) gives a ticket, which the session
    /// host takes for the cookie. Kept per (token, host), as a browser keeps cookies.
    pub async fn sign_in(&self, token: &str, host: &str) -> String {
        let key = (token.to_owned(), host.to_ascii_lowercase());
        if let Some(cookie) = self.cookies.lock().unwrap().get(&key) {
            return cookie.clone();
        }
        let login_host = session_core::hosts::login_host(&self.domain);
        let authorize = gateway::signin::login_redirect("http", &self.domain, host, "/");
        let (_, authorize_path) = split_url(&authorize);
        let bearer = format!("Bearer {token}");
        let (status, _, page) = http_exchange(
            self.lb_address(),
            "GET",
            authorize_path,
            &[("host", &login_host), ("authorization", &bearer)],
            "",
        )
        .await;
        assert_eq!(status, 200, "the login host's authorize page: {page}");
        let ticket = page
            .split("name=\"ticket\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("no ticket in the login page: {page}"));
        let origin = format!("http://{login_host}");
        let (status, headers, body) = http_exchange(
            self.lb_address(),
            "POST",
            gateway::signin::TICKET_PATH,
            &[
                ("host", host),
                ("origin", &origin),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            &format!("ticket={ticket}&to=%2F"),
        )
        .await;
        assert_eq!(status, 303, "the session host took no ticket: {body}");
        let cookie = headers
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .expect("a sign-in cookie")
            .to_owned();
        self.cookies.lock().unwrap().insert(key, cookie.clone());
        cookie
    }

    /// Sends a request straight to the gateway, past the load balancer (what only the
    /// load balancer's security group may do on AWS): with whatever identity token the
    /// test made.
    pub async fn request_to_gateway(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (u16, String) {
        http_request(self.address, method, path, headers).await
    }

    pub(crate) async fn start(stack: &Stack, load_balancer: TcpListener) -> std::io::Result<Self> {
        let signer = Arc::new(gateway::testing::AlbSigner::generate(
            "local-load-balancer-key",
        ));
        let keys = gateway::testing::KeyServer::start(&[&signer]).await?;
        let env = stack.function_env();
        let binary = stack.tools.functions_dir.join("gateway");
        let process = Command::new(&binary)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("GATEWAY_LISTEN", "127.0.0.1:0")
            .env("GATEWAY_HEALTH_LISTEN", "127.0.0.1:0")
            .env("SESSIONS_TABLE", &stack.info.sessions_table)
            .env("SESSION_DOMAIN", &env["SESSION_DOMAIN"])
            .env("SESSION_URL_SCHEME", &env["SESSION_URL_SCHEME"])
            // The local stack's, in the open; on AWS a secret (Secrets Manager).
            .env("SIGN_IN_KEY", "the local stack's sign-in key, not a secret")
            .env("ALB_ARN", load_balancer::LOCAL_ALB_ARN)
            .env("ALB_PUBLIC_KEYS_URL", keys.url())
            // The web console's calls go to the local HTTP API, with the load
            // balancer's access token (`dev:<user>`) as their bearer token.
            .env("API_URL", stack.api_gateway.url())
            .envs(
                [
                    "AWS_REGION",
                    "AWS_ENDPOINT_URL",
                    "AWS_ACCESS_KEY_ID",
                    "AWS_SECRET_ACCESS_KEY",
                ]
                .iter()
                .map(|k| (k, &env[*k])),
            )
            .stdout(log_file(stack.dir.path(), "gateway"))
            .stderr(log_file(stack.dir.path(), "gateway.err"))
            .spawn()
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", binary.display())))?;
        let process = Mutex::new(Some(process));
        // The gateway binds ports of its own choosing and logs them once it serves.
        let deadline = Instant::now() + Duration::from_secs(30);
        let (address, health_address) = loop {
            if let Some(addresses) = listening_addresses(stack.dir.path()) {
                break addresses;
            }
            let exited = process.lock().unwrap().as_mut().map(|p| p.try_wait());
            if Instant::now() > deadline || matches!(exited, Some(Ok(Some(_)))) {
                return Err(std::io::Error::other(format!(
                    "the gateway did not start within 30 s; its log:\n{}\n{}",
                    log_tail(stack.dir.path(), "gateway"),
                    log_tail(stack.dir.path(), "gateway.err"),
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        if !healthy(health_address) {
            return Err(std::io::Error::other(format!(
                "the gateway's health check on {health_address} fails"
            )));
        }
        let mint_signer = signer.clone();
        let domain = env["SESSION_DOMAIN"].clone();
        let load_balancer = load_balancer::LoadBalancer::start(
            load_balancer,
            address,
            &domain,
            Arc::new(move |user: &str| mint_signer.token(load_balancer::LOCAL_ALB_ARN, user)),
        )
        .await?;
        Ok(Self {
            load_balancer,
            address,
            health_address,
            signer,
            keys,
            domain,
            cookies: Mutex::new(HashMap::new()),
            process,
        })
    }

    /// The gateway process's id (its memory and CPU are what a benchmark reads).
    pub fn pid(&self) -> Option<u32> {
        self.process.lock().unwrap().as_ref().map(Child::id)
    }

    pub(crate) fn stop(self) {
        drop(self.keys);
        if let Some(mut process) = self.process.lock().unwrap().take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

/// The host and the path (with query) of a URL, `/` if it has none.
fn split_url(url: &str) -> (&str, &str) {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or(url);
    match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, "/"),
    }
}

/// One HTTP/1.1 request on a new connection; `headers` carry the `host`.
async fn http_request(
    to: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let (status, _, body) = http_exchange(to, method, path, headers, "").await;
    (status, body)
}

/// One HTTP/1.1 exchange on a new connection: the status, headers and body.
async fn http_exchange(
    to: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, hyper::HeaderMap, String) {
    use http_body_util::{BodyExt, Full};
    let stream = tokio::net::TcpStream::connect(to)
        .await
        .unwrap_or_else(|e| panic!("connect to {to}: {e}"));
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("HTTP/1.1 handshake");
    tokio::spawn(conn);
    let mut request = hyper::Request::builder().method(method).uri(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(bytes::Bytes::from(body.to_owned())))
        .expect("a valid request");
    let response = sender.send_request(request).await.expect("an answer");
    let status = response.status().as_u16();
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
        .unwrap_or_default();
    (status, parts.headers, body)
}

/// The proxy and health addresses in the gateway's "gateway listening" log line.
fn listening_addresses(dir: &Path) -> Option<(std::net::SocketAddr, std::net::SocketAddr)> {
    let log = std::fs::read_to_string(dir.join("logs").join("gateway.log")).ok()?;
    log.lines().find_map(|line| {
        let fields = serde_json::from_str::<Value>(line).ok()?["fields"].take();
        if fields["message"] != "gateway listening" {
            return None;
        }
        Some((
            fields["proxy"].as_str()?.parse().ok()?,
            fields["health"].as_str()?.parse().ok()?,
        ))
    })
}

/// The gateway's health check answers 200, as the load balancer's target group sees it.
fn healthy(address: std::net::SocketAddr) -> bool {
    use std::io::Write;
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(1))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}
