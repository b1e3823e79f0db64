use lambda_http::http::{HeaderValue, StatusCode};
use lambda_http::{Body, Request, Response};
use serde_json::Value;

use session_core::session::SessionId;

use crate::error::ApiError;

/// Bodies are a few fields; anything larger is refused before it is parsed.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let mut response = Response::new(Body::Text(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert("cache-control", HeaderValue::from_static("no-store"));
    response
}

pub(crate) fn error_response(err: &ApiError) -> Response<Body> {
    let mut response = json_response(err.status, &err.body());
    if err.status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
    }
    response
}

/// Parses a JSON body of at most [`MAX_BODY_BYTES`]; an empty body is `default`.
pub(crate) fn parse_body<T: serde::de::DeserializeOwned>(
    req: &Request,
    default: Option<T>,
) -> Result<T, ApiError> {
    let raw: &[u8] = req.body().as_ref();
    if raw.len() > MAX_BODY_BYTES {
        return Err(ApiError::bad_request(
            "body_too_large",
            format!(
                "the body has {} bytes; at most {MAX_BODY_BYTES} are accepted",
                raw.len()
            ),
        ));
    }
    if raw.iter().all(u8::is_ascii_whitespace) {
        return default
            .ok_or_else(|| ApiError::bad_request("invalid_json", "a JSON body is required"));
    }
    let text = std::str::from_utf8(raw)
        .map_err(|_| ApiError::bad_request("invalid_json", "the body is not UTF-8"))?;
    let value: Value = serde_json::from_str(text)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("the body is not JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "invalid_request",
            "the body must be a JSON object",
        ));
    }
    serde_json::from_value(value)
        .map_err(|e| ApiError::bad_request("invalid_request", e.to_string()))
}

pub(crate) fn parse_session_id(raw: &str) -> Result<SessionId, ApiError> {
    SessionId::parse(raw).map_err(|e| ApiError::bad_request("invalid_session_id", e.to_string()))
}
