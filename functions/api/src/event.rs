//! API Gateway's payload 2.0 event in, its response out. lambda_http's own conversion
//! panics on events it cannot turn into an `http::Request` (a 100 KB path is a URI too
//! long for `http`), which kills the process; here each such event is a 400 instead.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use lambda_http::aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use lambda_http::aws_lambda_events::query_map::QueryMap;
use lambda_http::http::header::COOKIE;
use lambda_http::http::uri::PathAndQuery;
use lambda_http::http::HeaderValue;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};

use crate::error::ApiError;

fn unreadable(what: &str) -> ApiError {
    ApiError::bad_request(
        "invalid_request",
        format!("the request cannot be read: {what}"),
    )
}

/// The request an event carries, or the 400 to answer when it carries none we can read.
pub fn request_from_event(event: serde_json::Value) -> Result<Request, ApiError> {
    // Header names and values `http` refuses fail here, as any malformed event does.
    let event: ApiGatewayV2httpRequest = serde_json::from_value(event)
        .map_err(|_| unreadable("not an HTTP API (payload 2.0) request"))?;
    let raw_path = event.raw_path.unwrap_or_default();
    let raw_query = event.raw_query_string.unwrap_or_default();
    let target = if raw_query.is_empty() {
        raw_path.clone()
    } else {
        format!("{raw_path}?{raw_query}")
    };
    let uri = PathAndQuery::try_from(target.as_str())
        .ok()
        .filter(|_| raw_path.starts_with('/'))
        .ok_or_else(|| unreadable("the path or query string is too long or invalid"))?;
    let body = match event.body {
        None => Body::Empty,
        Some(body) if event.is_base64_encoded => Body::Binary(
            STANDARD
                .decode(body)
                .map_err(|_| unreadable("the body is not valid base64"))?,
        ),
        Some(body) => Body::Text(body),
    };
    let mut request = Request::new(body);
    *request.method_mut() = event.request_context.http.method.clone();
    *request.uri_mut() = uri.into();
    *request.headers_mut() = event.headers;
    if let Some(cookies) = event.cookies.filter(|c| !c.is_empty()) {
        let cookie = HeaderValue::from_str(&cookies.join("; "))
            .map_err(|_| unreadable("a cookie is not a valid header value"))?;
        request.headers_mut().insert(COOKIE, cookie);
    }
    Ok(request
        .with_raw_http_path(raw_path)
        .with_query_string_parameters(raw_query.parse::<QueryMap>().unwrap_or_default())
        .with_path_parameters(QueryMap::from(event.path_parameters))
        .with_request_context(RequestContext::ApiGatewayV2(event.request_context)))
}

/// The payload 2.0 response API Gateway expects.
pub fn event_from_response(response: Response<Body>) -> ApiGatewayV2httpResponse {
    let (parts, body) = response.into_parts();
    let mut event = ApiGatewayV2httpResponse::default();
    event.status_code = i64::from(parts.status.as_u16());
    event.headers = parts.headers;
    event.is_base64_encoded = matches!(body, Body::Binary(_));
    event.body = match body {
        Body::Empty => None,
        body => Some(body),
    };
    event
}

#[cfg(test)]
mod tests {
    use lambda_http::http::{Method, StatusCode};
    use serde_json::{json, Value};

    use super::*;
    use crate::{error_response, Route, Token};

    /// AWS's documented example of a payload 2.0 event.
    fn example() -> Value {
        serde_json::from_str(include_str!(
            "../../../tests/fixtures/apigw-http-v2-request.json"
        ))
        .unwrap()
    }

    /// What API Gateway gets back for an event the API cannot read.
    fn refused(event: Value) -> ApiGatewayV2httpResponse {
        let err = request_from_event(event).expect_err("the event is refused");
        event_from_response(error_response(&err))
    }

    fn assert_json_400(response: &ApiGatewayV2httpResponse) {
        assert_eq!(response.status_code, 400);
        assert_eq!(response.headers["content-type"], "application/json");
        let Some(Body::Text(body)) = &response.body else {
            panic!("a text body: {:?}", response.body);
        };
        let body: Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["error"]["code"], "invalid_request", "{body}");
        assert!(body["error"]["message"].is_string(), "{body}");
    }

    #[test]
    fn a_100_kb_raw_path_is_a_400_not_a_panic() {
        let mut event = example();
        event["rawPath"] = json!(format!("/sessions/{}", "a".repeat(100 * 1024)));
        assert_json_400(&refused(event));
    }

    #[test]
    fn a_100_kb_raw_query_string_is_a_400_not_a_panic() {
        let mut event = example();
        event["rawQueryString"] = json!(format!("limit={}", "9".repeat(100 * 1024)));
        assert_json_400(&refused(event));
    }

    #[test]
    fn a_header_value_with_raw_utf8_reaches_the_handler_unchanged() {
        // HTTP allows bytes past ASCII in a value; the identity comes from the
        // authorizer's claims, never from this header.
        let mut event = example();
        event["headers"]["authorization"] = json!("Bearer dev:élève");
        let request = request_from_event(event).expect("a request");
        assert_eq!(
            request.headers()["authorization"].as_bytes(),
            "Bearer dev:élève".as_bytes()
        );
    }

    #[test]
    fn a_header_name_http_refuses_is_a_400() {
        let mut event = example();
        event["headers"]["bad header(name)"] = json!("x");
        assert_json_400(&refused(event));
    }

    #[test]
    fn a_path_that_is_not_a_uri_path_is_a_400() {
        for path in ["sessions", "/sessions/a b", "/sessions/\u{7f}"] {
            let mut event = example();
            event["rawPath"] = json!(path);
            assert_json_400(&refused(event));
        }
    }

    #[test]
    fn an_event_that_is_not_an_http_api_request_is_a_400() {
        assert_json_400(&refused(json!({"detail-type": "Scheduled Event"})));
        let mut event = example();
        event["isBase64Encoded"] = json!(true);
        event["body"] = json!("not base64!");
        assert_json_400(&refused(event));
    }

    #[test]
    fn the_documented_example_event_is_read_as_its_request() {
        let mut event = example();
        event["rawQueryString"] = json!("limit=5&next_token=abc");
        let req = request_from_event(event).unwrap();
        assert_eq!(req.method(), Method::POST);
        assert_eq!(req.raw_http_path(), "/sessions");
        assert_eq!(req.uri(), "/sessions?limit=5&next_token=abc");
        assert_eq!(req.query_string_parameters().first("limit"), Some("5"));
        assert_eq!(req.headers()["content-type"], "application/json");
        assert_eq!(
            Route::of(req.method(), req.raw_http_path()).unwrap(),
            Route::Start
        );
        let token = Token::from_request(&req, "sub", "sessions/admin").unwrap();
        assert_eq!(token.user_id, "alice");
        assert_eq!(req.body(), &Body::Text(r#"{"version":"1.0.0"}"#.into()));
    }

    #[test]
    fn a_response_becomes_the_payload_2_0_response() {
        let response = event_from_response(error_response(&ApiError::new(
            StatusCode::CONFLICT,
            "session_limit_reached",
            "stop one first",
        )));
        assert_eq!(response.status_code, 409);
        assert!(!response.is_base64_encoded);
        assert_eq!(response.headers["content-type"], "application/json");
    }
}
