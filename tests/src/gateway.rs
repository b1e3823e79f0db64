//! The local stand-in for API Gateway: an HTTP server on 127.0.0.1 that turns each
//! request into an HTTP API payload 2.0 event, invokes the real `api` function through
//! the Lambda emulator, and answers with the function's response.
//!
//! **Development identity.** In place of a JWT authorizer it accepts
//! `Authorization: Bearer dev:<user_id>`, and `Bearer dev-admin:<user_id>` for a caller
//! holding the admin scope; anything else is a 401, as API Gateway answers. This exists
//! only in this test harness: the `api` function has no development mode, so no
//! deployment setting can turn one on.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Map, Value};

/// The claim and scope the development identity carries (the api's defaults).
pub const DEV_ADMIN_SCOPE: &str = "sessions/admin";
/// API Gateway's payload limit.
const MAX_BODY: u64 = 10 * 1024 * 1024;

pub struct Gateway {
    pub port: u16,
    stopping: Arc<AtomicBool>,
    server: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
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
        _ => return None,
    };
    let key = format!("{method} {template}");
    api::Route::KEYS
        .contains(&key.as_str())
        .then(|| (key, id.map(str::to_owned)))
}

fn event(request: &mut tiny_http::Request, claims: Value, port: u16) -> Result<Value, String> {
    static REQUESTS: AtomicU64 = AtomicU64::new(0);
    let method = request.method().as_str().to_owned();
    let url = request.url().to_owned();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let (route_key, id) = route_key(&method, path).ok_or("Not Found")?;

    let mut headers = Map::new();
    for header in request.headers() {
        let name = header.field.as_str().as_str().to_ascii_lowercase();
        let value = header.value.as_str().to_owned();
        match headers.get_mut(&name) {
            Some(Value::String(existing)) => *existing = format!("{existing},{value}"),
            _ => {
                headers.insert(name, json!(value));
            }
        }
    }
    let mut parameters: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        parameters
            .entry(name.into_owned())
            .and_modify(|v| *v = format!("{v},{value}"))
            .or_insert_with(|| value.into_owned());
    }
    let mut body = Vec::new();
    request
        .as_reader()
        .take(MAX_BODY + 1)
        .read_to_end(&mut body)
        .map_err(|e| format!("read the body: {e}"))?;
    if body.len() as u64 > MAX_BODY {
        return Err("Request Entity Too Large".into());
    }
    let (body, encoded) = match String::from_utf8(body) {
        Ok(text) => (text, false),
        Err(e) => (STANDARD.encode(e.into_bytes()), true),
    };
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
                "sourceIp": request.remote_addr().map(|a| a.ip().to_string()).unwrap_or_default(),
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
    Ok(event)
}

fn respond(request: tiny_http::Request, status: u16, headers: &Map<String, Value>, body: Vec<u8>) {
    let mut response = tiny_http::Response::from_data(body).with_status_code(status);
    for (name, value) in headers {
        if let Some(header) = value
            .as_str()
            .and_then(|v| tiny_http::Header::from_bytes(name.as_bytes(), v.as_bytes()).ok())
        {
            response.add_header(header);
        }
    }
    let _ = request.respond(response);
}

fn message(request: tiny_http::Request, status: u16, text: &str) {
    let headers = Map::from_iter([("content-type".to_owned(), json!("application/json"))]);
    respond(
        request,
        status,
        &headers,
        json!({ "message": text }).to_string().into_bytes(),
    );
}

fn serve(mut request: tiny_http::Request, invoke_url: &str, port: u16) {
    let authorization = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("authorization"))
        .map(|h| h.value.as_str().to_owned());
    let Some(claims) = dev_claims(authorization.as_deref()) else {
        return message(request, 401, "Unauthorized");
    };
    let event = match event(&mut request, claims, port) {
        Ok(event) => event,
        Err(text) if text == "Not Found" => return message(request, 404, "Not Found"),
        Err(text) => return message(request, 413, &text),
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let answer = agent
        .post(invoke_url)
        .send_json(&event)
        .and_then(|mut r| r.body_mut().read_json::<Value>());
    let answer = match answer {
        Ok(answer) if answer.get("statusCode").is_some() => answer,
        // A function error or timeout: API Gateway answers 500 (or 503) itself.
        _ => return message(request, 500, "Internal Server Error"),
    };
    let status = answer["statusCode"].as_u64().unwrap_or(500) as u16;
    let headers = answer["headers"].as_object().cloned().unwrap_or_default();
    let body = answer["body"].as_str().unwrap_or_default();
    let body = if answer["isBase64Encoded"].as_bool() == Some(true) {
        STANDARD.decode(body).unwrap_or_default()
    } else {
        body.as_bytes().to_vec()
    };
    respond(request, status, &headers, body);
}

impl Gateway {
    /// Serves on 127.0.0.1:`port`, invoking the `api` function of the emulator on
    /// `lambda_port`. A port in use is an error naming it.
    pub fn start(port: u16, lambda_port: u16) -> Result<Self, String> {
        let server = tiny_http::Server::http(("127.0.0.1", port)).map_err(|e| {
            format!(
                "port {port} on 127.0.0.1 is already in use ({e}): stop what listens there first"
            )
        })?;
        let port = server
            .server_addr()
            .to_ip()
            .map(|a| a.port())
            .unwrap_or(port);
        let server = Arc::new(server);
        let stopping = Arc::new(AtomicBool::new(false));
        let invoke_url =
            format!("http://127.0.0.1:{lambda_port}/2015-03-31/functions/api/invocations");
        let thread = {
            let (server, stopping) = (server.clone(), stopping.clone());
            std::thread::spawn(move || {
                while !stopping.load(Ordering::Relaxed) {
                    let Ok(request) = server.recv() else { break };
                    let invoke_url = invoke_url.clone();
                    std::thread::spawn(move || serve(request, &invoke_url, port));
                }
            })
        };
        Ok(Self {
            port,
            stopping,
            server,
            thread: Some(thread),
        })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
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
        assert_eq!(route_key("PUT", "/sessions/sess-1"), None);
        assert_eq!(route_key("GET", "/admin"), None);
    }
}
