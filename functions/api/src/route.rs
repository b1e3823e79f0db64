use lambda_http::http::{Method, StatusCode};

use crate::error::ApiError;

/// The routes, as API Gateway's route keys name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route<'a> {
    /// `POST /session`: the seed's `{"action": "start" | "stop", ...}`.
    Seed,
    Start,
    List,
    Get(&'a str),
    Stop(&'a str),
    Heartbeat(&'a str),
    /// `GET /versions`: the image versions a session may run.
    Versions,
}

impl<'a> Route<'a> {
    /// Every route key the API serves (Terraform declares exactly these).
    pub const KEYS: [&'static str; 7] = [
        "POST /session",
        "POST /sessions",
        "GET /sessions",
        "GET /sessions/{id}",
        "DELETE /sessions/{id}",
        "POST /sessions/{id}/heartbeat",
        "GET /versions",
    ];

    /// Matches a request; `Err` is the 404 or 405 to answer.
    pub fn of(method: &Method, path: &'a str) -> Result<Self, ApiError> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let route = match (method, segments.as_slice()) {
            (&Method::POST, ["session"]) => Route::Seed,
            (&Method::POST, ["sessions"]) => Route::Start,
            (&Method::GET, ["sessions"]) => Route::List,
            (&Method::GET, ["sessions", id]) => Route::Get(id),
            (&Method::DELETE, ["sessions", id]) => Route::Stop(id),
            (&Method::POST, ["sessions", id, "heartbeat"]) => Route::Heartbeat(id),
            (&Method::GET, ["versions"]) => Route::Versions,
            (
                _,
                ["session"]
                | ["sessions"]
                | ["sessions", _]
                | ["sessions", _, "heartbeat"]
                | ["versions"],
            ) => {
                return Err(ApiError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    format!("{method} is not allowed on {path}"),
                ))
            }
            _ => {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "route_not_found",
                    "no such route",
                ))
            }
        };
        Ok(route)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_exactly_the_route_keys() {
        let cases = [
            (Method::POST, "/session", Route::Seed),
            (Method::POST, "/sessions", Route::Start),
            (Method::GET, "/sessions/", Route::List),
            (Method::GET, "/sessions/sess-1", Route::Get("sess-1")),
            (Method::DELETE, "/sessions/sess-1", Route::Stop("sess-1")),
            (
                Method::POST,
                "/sessions/sess-1/heartbeat",
                Route::Heartbeat("sess-1"),
            ),
            (Method::GET, "/versions", Route::Versions),
        ];
        for (method, path, route) in cases {
            assert_eq!(Route::of(&method, path).unwrap(), route, "{method} {path}");
        }
        for (method, path) in [(Method::PUT, "/sessions/x"), (Method::POST, "/versions")] {
            assert_eq!(
                Route::of(&method, path).unwrap_err().status,
                StatusCode::METHOD_NOT_ALLOWED
            );
        }
        assert_eq!(
            Route::of(&Method::GET, "/admin").unwrap_err().status,
            StatusCode::NOT_FOUND
        );
    }
}
