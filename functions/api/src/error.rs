//! The API's errors: each has an HTTP status and a stable `code`, and is answered as
//! `{"error":{"code":"...","message":"..."}}`. Bad input is always a 4xx; AWS trouble is
//! a 503 (retry) or a 500 whose message names the request, never internals.

use lambda_http::http::StatusCode;
use serde_json::{json, Map, Value};
use session_core::Error;

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Extra members of the error object (e.g. the active sessions of a 409).
    pub details: Map<String, Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: Map::new(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "the request carries no verified identity",
        )
    }

    pub fn session_not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "session_not_found",
            format!("session {id} does not exist"),
        )
    }

    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.details.insert(key.to_owned(), value);
        self
    }

    pub fn body(&self) -> Value {
        let mut error = Map::new();
        error.insert("code".into(), json!(self.code));
        error.insert("message".into(), json!(self.message));
        error.extend(self.details.clone());
        json!({ "error": error })
    }
}

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        match err {
            Error::InvalidInput(e) => ApiError::bad_request("invalid_request", e.to_string()),
            Error::InvalidVersion(e) => {
                ApiError::bad_request("invalid_version", format!("version {}", e.message))
            }
            Error::NotAuthorized => ApiError::new(
                StatusCode::FORBIDDEN,
                "not_authorized",
                "this user is not authorized to start sessions",
            ),
            Error::SessionLimitReached { max, active } => ApiError::new(
                StatusCode::CONFLICT,
                "session_limit_reached",
                format!(
                    "the limit of {max} active session(s) is reached; stop one first: {}",
                    active.join(", ")
                ),
            )
            .with("active_sessions", json!(active)),
            Error::ImageNotFound { image } => ApiError::bad_request(
                "image_not_found",
                format!("no image {image} exists for this version"),
            ),
            Error::SessionNotFound(id) => ApiError::session_not_found(&id),
            err @ (Error::Throttled { .. } | Error::Transient { .. }) => {
                tracing::warn!(error = %err, "AWS is busy or unreachable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the service is busy; retry in a moment",
                )
            }
            err => {
                tracing::error!(error = %err, error_type = err.error_type(), "request failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the request failed on our side; it is logged",
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_limit_names_the_active_sessions() {
        let err = ApiError::from(Error::SessionLimitReached {
            max: 1,
            active: vec!["sess-a".into()],
        });
        assert_eq!(err.status, StatusCode::CONFLICT);
        assert_eq!(err.body()["error"]["active_sessions"], json!(["sess-a"]));
        assert_eq!(err.body()["error"]["code"], "session_limit_reached");
    }

    #[test]
    fn aws_failures_never_show_their_internals() {
        let err = ApiError::from(Error::Aws {
            operation: "UpdateItem",
            message: "ValidationException: table arn:aws:dynamodb:... secret".into(),
        });
        assert_eq!(err.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!err.message.contains("arn:"), "{}", err.message);
        let busy = ApiError::from(Error::Throttled {
            operation: "Query",
            message: "slow down".into(),
        });
        assert_eq!(busy.status, StatusCode::SERVICE_UNAVAILABLE);
    }
}
