//! The session API over HTTP. The commands see only [`SessionsApi`], so that they are
//! tested with a fake; [`HttpApi`] is the one adapter, and the one place where an
//! answer becomes a value or an [`Error`].

use std::time::Duration;

use serde_json::{json, Value};

use crate::cli::Token;
use crate::error::{ApiFailure, Error};

/// The routes of the API a user calls (see `functions/api`).
pub trait SessionsApi {
    /// `POST /sessions`
    fn start(&self, version: Option<&str>, idempotency_key: Option<&str>) -> Result<Value, Error>;
    /// `GET /sessions/{id}`
    fn session(&self, id: &str) -> Result<Value, Error>;
    /// `DELETE /sessions/{id}`: 202 while it stops, 200 when it had already ended.
    fn stop(&self, id: &str) -> Result<Value, Error>;
    /// `POST /sessions/{id}/heartbeat`
    fn heartbeat(&self, id: &str) -> Result<Value, Error>;
    /// `GET /sessions?limit=&next_token=`: one page, newest first.
    fn list_page(&self, limit: Option<u32>, next_token: Option<&str>) -> Result<Value, Error>;
    /// `GET /versions`: the versions a session may run, newest first.
    fn versions(&self) -> Result<Value, Error>;
}

pub struct HttpApi {
    base_url: String,
    authorization: String,
    timeout: Duration,
    agent: ureq::Agent,
}

impl HttpApi {
    /// `base_url` without a trailing slash (as [`crate::cli::Settings`] gives it);
    /// `timeout` bounds each request, from connecting to the last byte of the answer.
    pub fn new(base_url: &str, token: &Token, timeout: Duration) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .user_agent(concat!("sessionctl/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Self {
            base_url: base_url.to_owned(),
            authorization: format!("Bearer {}", token.expose()),
            timeout,
            agent,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Turns what ureq gives into the API's JSON or an [`Error`] naming the URL.
    fn answer(
        &self,
        url: &str,
        sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Value, Error> {
        let transport = |err: ureq::Error| match err {
            ureq::Error::Timeout(_) => Error::RequestTimeout {
                url: url.to_owned(),
                after: self.timeout,
            },
            other => Error::Network {
                url: url.to_owned(),
                detail: other.to_string(),
            },
        };
        let mut response = sent.map_err(transport)?;
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().map_err(transport)?;
        if !(200..300).contains(&status) {
            return Err(Error::from(ApiFailure::from_answer(status, &body)));
        }
        match serde_json::from_str::<Value>(&body) {
            Ok(value) if value.is_object() => Ok(value),
            Ok(_) => Err(Error::InvalidAnswer {
                url: url.to_owned(),
                status,
                detail: "not a JSON object".to_owned(),
            }),
            Err(err) => Err(Error::InvalidAnswer {
                url: url.to_owned(),
                status,
                detail: err.to_string(),
            }),
        }
    }

    fn get(&self, path: &str) -> Result<Value, Error> {
        let url = self.url(path);
        let sent = self
            .agent
            .get(&url)
            .header("authorization", &self.authorization)
            .header("accept", "application/json")
            .call();
        self.answer(&url, sent)
    }

    fn post(&self, path: &str, body: &Value, headers: &[(&str, &str)]) -> Result<Value, Error> {
        let url = self.url(path);
        let mut request = self
            .agent
            .post(&url)
            .header("authorization", &self.authorization)
            .header("accept", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let sent = request.send_json(body);
        self.answer(&url, sent)
    }

    fn delete(&self, path: &str) -> Result<Value, Error> {
        let url = self.url(path);
        let sent = self
            .agent
            .delete(&url)
            .header("authorization", &self.authorization)
            .header("accept", "application/json")
            .call();
        self.answer(&url, sent)
    }
}

impl SessionsApi for HttpApi {
    fn start(&self, version: Option<&str>, idempotency_key: Option<&str>) -> Result<Value, Error> {
        let body = match version {
            Some(version) => json!({ "version": version }),
            None => json!({}),
        };
        let headers: Vec<(&str, &str)> = idempotency_key
            .map(|key| ("idempotency-key", key))
            .into_iter()
            .collect();
        self.post("/sessions", &body, &headers)
    }

    fn session(&self, id: &str) -> Result<Value, Error> {
        self.get(&format!("/sessions/{}", encode(id)))
    }

    fn stop(&self, id: &str) -> Result<Value, Error> {
        self.delete(&format!("/sessions/{}", encode(id)))
    }

    fn heartbeat(&self, id: &str) -> Result<Value, Error> {
        self.post(
            &format!("/sessions/{}/heartbeat", encode(id)),
            &json!({}),
            &[],
        )
    }

    fn list_page(&self, limit: Option<u32>, next_token: Option<&str>) -> Result<Value, Error> {
        let mut query = Vec::new();
        if let Some(limit) = limit {
            query.push(format!("limit={limit}"));
        }
        if let Some(token) = next_token {
            query.push(format!("next_token={}", encode(token)));
        }
        let path = match query.is_empty() {
            true => "/sessions".to_owned(),
            false => format!("/sessions?{}", query.join("&")),
        };
        self.get(&path)
    }

    fn versions(&self) -> Result<Value, Error> {
        self.get("/versions")
    }
}

/// Percent-encodes all but RFC 3986's unreserved characters, so that whatever a user
/// types as a session id stays one path segment (and the API judges it).
pub fn encode(raw: &str) -> String {
    raw.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_id_stays_one_path_segment() {
        assert_eq!(encode("sess-0123abc"), "sess-0123abc");
        assert_eq!(encode("../admin?x=1"), "..%2Fadmin%3Fx%3D1");
        assert_eq!(encode("a b/é"), "a%20b%2F%C3%A9");
    }

    /// A server on 127.0.0.1 that answers one request with `answer` (or, with `None`,
    /// never answers) and hands back what it received.
    fn serve_once(answer: Option<&'static str>) -> (String, std::thread::JoinHandle<String>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut received = Vec::new();
            let mut buffer = [0u8; 4096];
            while !received.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buffer).unwrap();
                if n == 0 {
                    break;
                }
                received.extend_from_slice(&buffer[..n]);
            }
            match answer {
                Some(answer) => stream.write_all(answer.as_bytes()).unwrap(),
                // Hold the connection open, silent, until the client gives up.
                None => while stream.read(&mut buffer).is_ok_and(|n| n > 0) {},
            }
            String::from_utf8_lossy(&received).into_owned()
        });
        (base, handle)
    }

    fn api(base: &str, timeout: Duration) -> HttpApi {
        HttpApi::new(base, &Token::from("dev:alice".to_owned()), timeout)
    }

    #[test]
    fn the_token_is_sent_as_a_bearer_token() {
        let (base, server) = serve_once(Some(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 42\r\n\r\n{\"session_id\":\"sess-1\",\"status\":\"running\"}",
        ));
        let session = api(&base, Duration::from_secs(5))
            .session("sess-1")
            .unwrap();
        assert_eq!(session["status"], "running");
        let request = server.join().unwrap().to_ascii_lowercase();
        assert!(
            request.starts_with("get /sessions/sess-1 http/1.1\r\n"),
            "{request}"
        );
        assert!(
            request.contains("authorization: bearer dev:alice\r\n"),
            "{request}"
        );
    }

    #[test]
    fn versions_are_asked_of_their_route() {
        let (base, server) = serve_once(Some(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 30\r\n\r\n{\"listed\":false,\"versions\":[]}",
        ));
        let versions = api(&base, Duration::from_secs(5)).versions().unwrap();
        assert_eq!(versions["listed"], false);
        let request = server.join().unwrap().to_ascii_lowercase();
        assert!(
            request.starts_with("get /versions http/1.1\r\n"),
            "{request}"
        );
    }

    #[test]
    fn a_gateway_refusal_is_read_from_its_own_body() {
        let (base, _server) = serve_once(Some(
            "HTTP/1.1 401 Unauthorized\r\ncontent-length: 26\r\n\r\n{\"message\":\"Unauthorized\"}",
        ));
        let err = api(&base, Duration::from_secs(5))
            .stop("sess-1")
            .unwrap_err();
        assert_eq!(err.exit_code(), 3);
        assert!(err.to_string().starts_with("Unauthorized (401"), "{err}");
    }

    #[test]
    fn a_success_that_is_not_json_is_an_invalid_answer() {
        let (base, _server) = serve_once(Some(
            "HTTP/1.1 200 OK\r\ncontent-length: 15\r\n\r\n<html>hi</html>",
        ));
        let err = api(&base, Duration::from_secs(5))
            .list_page(None, None)
            .unwrap_err();
        assert!(
            matches!(err, Error::InvalidAnswer { status: 200, .. }),
            "{err:?}"
        );
        assert_eq!(err.exit_code(), 8);
    }

    #[test]
    fn an_api_that_does_not_answer_in_time_is_a_request_timeout() {
        let (base, _server) = serve_once(None);
        let err = api(&base, Duration::from_millis(300))
            .heartbeat("sess-1")
            .unwrap_err();
        assert!(matches!(err, Error::RequestTimeout { .. }), "{err:?}");
        assert_eq!(err.exit_code(), 8);
        assert_eq!(
            err.to_string(),
            format!("the API at {base}/sessions/sess-1/heartbeat did not answer within 300ms (--timeout)")
        );
    }

    #[test]
    fn nothing_listening_is_a_network_error_naming_the_url() {
        // Bound and never listening, for the rest of the test: connections are refused.
        let closed =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        closed
            .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        let port = closed.local_addr().unwrap().as_socket().unwrap().port();
        let base = format!("http://127.0.0.1:{port}");
        let err = api(&base, Duration::from_secs(5))
            .session("sess-1")
            .unwrap_err();
        assert_eq!(err.exit_code(), 8, "{err}");
        assert!(
            err.to_string().contains(&format!("{base}/sessions/sess-1")),
            "{err}"
        );
    }
}
