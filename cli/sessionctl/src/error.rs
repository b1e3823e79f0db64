//! Everything that can go wrong, each with the exit status a script can rely on and a
//! message that says what to do. The table of exit statuses lives here and only here;
//! `--help` and the README repeat it.

use std::fmt;
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::duration::fmt_duration;
use crate::goal::Goal;
use crate::render;

/// Exit statuses.
pub mod exit {
    pub const OK: u8 = 0;
    /// The output could not be written (e.g. a closed pipe).
    pub const OUTPUT: u8 = 1;
    /// Bad arguments (clap's own status).
    pub const USAGE: u8 = 2;
    /// 400, 401, 403 and any other 4xx not listed below.
    pub const REFUSED: u8 = 3;
    pub const NOT_FOUND: u8 = 4;
    pub const CONFLICT: u8 = 5;
    /// `--wait`: the session ended instead of running.
    pub const ENDED: u8 = 6;
    /// `--wait`: `--wait-timeout` passed first.
    pub const WAIT_TIMEOUT: u8 = 7;
    /// The API could not be reached, did not answer in time, answered 5xx or 429, or
    /// answered something that is not its JSON.
    pub const UNAVAILABLE: u8 = 8;
}

/// The table `--help` and the README show.
pub const EXIT_STATUS_HELP: &str = "\
Exit status:
  0  success
  1  the output could not be written
  2  usage error: bad arguments, no --api-url or --token
  3  the API refused the request: 400 (invalid input), 401 (missing or bad token),
     403 (not allowed)
  4  not found (404): no such session, or not yours
  5  conflict (409): the session limit is reached (the active sessions are listed),
     a heartbeat for a session that is not running, an idempotency key reused
  6  --wait: the session ended (failed or stopped) instead of running; the message
     names its stop_reason
  7  --wait: --wait-timeout passed first (the session keeps going)
  8  the API is unreachable, did not answer within --timeout, or answered 5xx/429
     or something that is not its JSON";

/// An answer of the API that is not a success: `{"error": {"code", "message", ...}}`
/// from the api function, or `{"message": ...}` from API Gateway itself (a 401).
#[derive(Clone, Debug, PartialEq)]
pub struct ApiFailure {
    pub status: u16,
    pub code: String,
    pub message: String,
    /// The API's error object (with extra members such as `active_sessions`).
    pub error: Map<String, Value>,
    /// At the session limit: the active sessions, as far as they could be read.
    pub active_sessions: Vec<Value>,
}

impl ApiFailure {
    /// Reads a non-2xx answer; `body` is its text, whatever it is.
    pub fn from_answer(status: u16, body: &str) -> Self {
        let json: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        let error = json["error"].as_object().cloned().unwrap_or_default();
        let code = error
            .get("code")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| format!("http_{status}"));
        let message = error
            .get("message")
            .or_else(|| json.get("message"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| excerpt(body));
        Self {
            status,
            code,
            message,
            error,
            active_sessions: Vec::new(),
        }
    }

    /// The ids in a 409 `session_limit_reached` error.
    pub fn active_session_ids(&self) -> Vec<String> {
        self.error
            .get("active_sessions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    }
}

/// The first line of a body that is not the API's JSON, short enough for a message.
fn excerpt(body: &str) -> String {
    let line = body.lines().map(str::trim).find(|l| !l.is_empty());
    match line {
        None => "(no body)".to_owned(),
        Some(line) if line.chars().count() > 200 => {
            format!("{}…", line.chars().take(200).collect::<String>())
        }
        Some(line) => line.to_owned(),
    }
}

#[derive(Debug)]
pub enum Error {
    /// The API answered, but not with a success.
    Api(Box<ApiFailure>),
    /// No answer: connection refused, DNS, TLS, reset.
    Network { url: String, detail: String },
    /// No answer within `--timeout`.
    RequestTimeout { url: String, after: Duration },
    /// A 2xx answer that is not the API's JSON.
    InvalidAnswer {
        url: String,
        status: u16,
        detail: String,
    },
    /// `--wait` for running: the session ended instead.
    Ended { session: Value },
    /// `--wait`: the goal was not reached within `--wait-timeout`.
    WaitTimeout {
        session_id: String,
        status: String,
        goal: Goal,
        after: Duration,
    },
    /// Writing to stdout failed.
    Output(std::io::Error),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Api(failure) => match failure.status {
                404 => exit::NOT_FOUND,
                409 => exit::CONFLICT,
                429 => exit::UNAVAILABLE,
                400..=499 => exit::REFUSED,
                _ => exit::UNAVAILABLE,
            },
            Error::Network { .. } | Error::RequestTimeout { .. } | Error::InvalidAnswer { .. } => {
                exit::UNAVAILABLE
            }
            Error::Ended { .. } => exit::ENDED,
            Error::WaitTimeout { .. } => exit::WAIT_TIMEOUT,
            Error::Output(_) => exit::OUTPUT,
        }
    }

    /// Worth polling again while waiting: the next request may well succeed.
    pub fn is_transient(&self) -> bool {
        self.exit_code() == exit::UNAVAILABLE && !matches!(self, Error::InvalidAnswer { .. })
    }

    /// The error as JSON for `--output json`: the API's own error object when it sent
    /// one, else one of ours in the same shape.
    pub fn json(&self) -> Value {
        let mut error = match self {
            Error::Api(failure) => {
                let mut error = failure.error.clone();
                error.insert("code".into(), json!(failure.code));
                error.insert("message".into(), json!(failure.message));
                error.insert("status".into(), json!(failure.status));
                error
            }
            Error::Ended { session } => {
                let mut error = Map::new();
                error.insert("session".into(), session.clone());
                error
            }
            Error::WaitTimeout {
                session_id, status, ..
            } => {
                let mut error = Map::new();
                error.insert("session_id".into(), json!(session_id));
                error.insert("session_status".into(), json!(status));
                error
            }
            _ => Map::new(),
        };
        let code = match self {
            Error::Api(_) => None,
            Error::Network { .. } => Some("network_error"),
            Error::RequestTimeout { .. } => Some("request_timeout"),
            Error::InvalidAnswer { .. } => Some("invalid_answer"),
            Error::Ended { .. } => Some("session_ended"),
            Error::WaitTimeout { .. } => Some("wait_timeout"),
            Error::Output(_) => Some("output_error"),
        };
        if let Some(code) = code {
            error.insert("code".into(), json!(code));
            error.insert("message".into(), json!(self.to_string()));
        }
        error.insert("exit_code".into(), json!(self.exit_code()));
        json!({ "error": error })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Api(failure) => {
                write!(
                    f,
                    "{} ({} {})",
                    failure.message, failure.status, failure.code
                )?;
                match failure.status {
                    401 => write!(
                        f,
                        "\nthe API did not accept the token: check --token or SESSIONCTL_TOKEN"
                    ),
                    403 => write!(f, "\nthe token is valid but not allowed to do this"),
                    409 if !failure.active_sessions.is_empty() => write!(
                        f,
                        "\nactive sessions:\n{}\nstop one with: sessionctl stop <SESSION_ID>",
                        render::indent(&render::session_table(&failure.active_sessions))
                    ),
                    500..=599 | 429 => write!(f, "\nthe service is unwell or busy; retry later"),
                    _ => Ok(()),
                }
            }
            Error::Network { url, detail } => write!(
                f,
                "could not reach the API at {url}: {detail}\nis --api-url (SESSIONCTL_API_URL) right, and is the network up?"
            ),
            Error::RequestTimeout { url, after } => write!(
                f,
                "the API at {url} did not answer within {} (--timeout)",
                fmt_duration(*after)
            ),
            Error::InvalidAnswer {
                url,
                status,
                detail,
            } => write!(
                f,
                "the answer of {url} ({status}) is not the API's JSON: {detail}\nis --api-url (SESSIONCTL_API_URL) the session API?"
            ),
            Error::Ended { session } => {
                let id = render::text(&session["session_id"]);
                let status = render::text(&session["status"]);
                let reason = render::text(&session["stop_reason"]);
                write!(
                    f,
                    "session {id} ended {status} instead of running: stop_reason {reason}"
                )?;
                for detail in ["stopped_reason", "stop_code"] {
                    if let Some(text) = session[detail].as_str() {
                        write!(f, "\n{detail}: {text}")?;
                    }
                }
                Ok(())
            }
            Error::WaitTimeout {
                session_id,
                status,
                goal,
                after,
            } => {
                write!(
                    f,
                    "session {session_id} is still {status}, not {goal}, after {} (--wait-timeout)",
                    fmt_duration(*after)
                )?;
                match goal {
                    Goal::Running => write!(
                        f,
                        "\nit keeps going: `sessionctl status {session_id}` shows it, `sessionctl stop {session_id}` stops it"
                    ),
                    Goal::Ended => write!(
                        f,
                        "\nthe stop keeps going: `sessionctl status {session_id}` shows it"
                    ),
                }
            }
            Error::Output(err) => write!(f, "could not write the output: {err}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<ApiFailure> for Error {
    fn from(failure: ApiFailure) -> Self {
        Error::Api(Box::new(failure))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, body: &str) -> Error {
        Error::from(ApiFailure::from_answer(status, body))
    }

    #[test]
    fn each_kind_of_failure_has_its_documented_exit_status() {
        let error = |code: &str| format!(r#"{{"error":{{"code":"{code}","message":"m"}}}}"#);
        let cases = [
            (api(400, &error("invalid_version")), 3),
            (api(401, r#"{"message":"Unauthorized"}"#), 3),
            (api(403, &error("not_authorized")), 3),
            (api(405, &error("method_not_allowed")), 3),
            (api(404, &error("session_not_found")), 4),
            (api(409, &error("session_limit_reached")), 5),
            (api(409, &error("session_not_running")), 5),
            (
                Error::Ended {
                    session: json!({"status": "failed"}),
                },
                6,
            ),
            (
                Error::WaitTimeout {
                    session_id: "sess-1".into(),
                    status: "provisioning".into(),
                    goal: Goal::Running,
                    after: Duration::from_secs(60),
                },
                7,
            ),
            (api(500, &error("internal")), 8),
            (api(502, "<html>Bad Gateway</html>"), 8),
            (api(503, &error("unavailable")), 8),
            (api(429, r#"{"message":"Too Many Requests"}"#), 8),
            (
                Error::Network {
                    url: "http://127.0.0.1:9".into(),
                    detail: "connection refused".into(),
                },
                8,
            ),
            (
                Error::RequestTimeout {
                    url: "http://x".into(),
                    after: Duration::from_secs(30),
                },
                8,
            ),
            (
                Error::InvalidAnswer {
                    url: "http://x".into(),
                    status: 200,
                    detail: "expected value".into(),
                },
                8,
            ),
            (Error::Output(std::io::ErrorKind::BrokenPipe.into()), 1),
        ];
        for (error, code) in cases {
            assert_eq!(error.exit_code(), code, "{error}");
        }
    }

    #[test]
    fn the_apis_error_code_and_message_are_shown() {
        let error = api(
            404,
            r#"{"error":{"code":"session_not_found","message":"session sess-x does not exist"}}"#,
        );
        assert_eq!(
            error.to_string(),
            "session sess-x does not exist (404 session_not_found)"
        );
        assert_eq!(error.json()["error"]["code"], "session_not_found");
        assert_eq!(error.json()["error"]["exit_code"], 4);
    }

    #[test]
    fn a_gateway_401_points_at_the_token() {
        let text = api(401, r#"{"message":"Unauthorized"}"#).to_string();
        assert!(text.starts_with("Unauthorized (401 http_401)"), "{text}");
        assert!(text.contains("--token or SESSIONCTL_TOKEN"), "{text}");
    }

    #[test]
    fn a_body_that_is_not_json_is_quoted_briefly() {
        let long = format!("\n  <html>{}</html>\n", "x".repeat(500));
        let failure = ApiFailure::from_answer(502, &long);
        assert_eq!(failure.code, "http_502");
        assert!(failure.message.starts_with("<html>xxx"));
        assert!(failure.message.chars().count() <= 201);
        assert_eq!(ApiFailure::from_answer(500, "").message, "(no body)");
    }

    #[test]
    fn the_session_limit_lists_the_active_sessions() {
        let mut failure = ApiFailure::from_answer(
            409,
            r#"{"error":{"code":"session_limit_reached","message":"the limit of 1 active session(s) is reached; stop one first: sess-a","active_sessions":["sess-a"]}}"#,
        );
        assert_eq!(failure.active_session_ids(), ["sess-a"]);
        failure.active_sessions = vec![json!({
            "session_id": "sess-a", "status": "running", "version": "1.0.0",
            "created_at": "2026-11-26T10:00:00.000Z", "stop_reason": null,
        })];
        let error = Error::from(failure);
        let text = error.to_string();
        assert!(text.contains("active sessions:"), "{text}");
        assert!(text.contains("  sess-a      running"), "{text}");
        assert!(text.contains("sessionctl stop <SESSION_ID>"), "{text}");
        assert_eq!(error.json()["error"]["active_sessions"], json!(["sess-a"]));
    }

    #[test]
    fn a_session_that_ended_names_its_stop_reason() {
        let error = Error::Ended {
            session: json!({
                "session_id": "sess-1", "status": "failed", "stop_reason": "image_not_found",
                "stopped_reason": null,
            }),
        };
        assert_eq!(
            error.to_string(),
            "session sess-1 ended failed instead of running: stop_reason image_not_found"
        );
        assert_eq!(error.json()["error"]["code"], "session_ended");
        assert_eq!(
            error.json()["error"]["session"]["stop_reason"],
            "image_not_found"
        );
    }

    #[test]
    fn network_errors_name_the_url() {
        let error = Error::Network {
            url: "http://127.0.0.1:9/sessions".into(),
            detail: "io: Connection refused".into(),
        };
        assert!(error.to_string().starts_with(
            "could not reach the API at http://127.0.0.1:9/sessions: io: Connection refused"
        ));
        assert!(error.is_transient());
        assert!(!api(404, "").is_transient());
    }
}
