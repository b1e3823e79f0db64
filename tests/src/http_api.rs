//! The `api` function's handler called in process with API Gateway HTTP API (payload
//! 2.0) events built from a fixture copied from AWS's documented example, its ports
//! the real AWS adapters pointed at the stack's emulator.

use lambda_http::Body;
use serde_json::{json, Value};
use session_aws::{dynamodb::DynamoStore, ecr::EcrRegistry, sfn::SfnWorkflow};
use session_core::config::{AdmissionSettings, ApiSettings, Tables};
use session_core::ports::SystemClock;

use crate::{repo_root, Stack};

pub type LiveApi = api::Api<DynamoStore, SfnWorkflow, EcrRegistry, SystemClock>;

/// The api with the configuration the stack's functions run with.
pub fn live_api(stack: &Stack) -> LiveApi {
    let env = &stack.function_env();
    api::Api {
        settings: ApiSettings::from_source(env).expect("api settings"),
        admission: AdmissionSettings::from_source(env).expect("admission settings"),
        store: DynamoStore::connect(&stack.sdk, Tables::from_source(env).expect("tables")),
        workflow: SfnWorkflow::connect(&stack.sdk),
        registry: EcrRegistry::connect(&stack.sdk),
        clock: SystemClock,
    }
}

/// AWS's example HTTP API event (payload 2.0, JWT authorizer).
pub fn fixture() -> Value {
    let path = repo_root().join("tests/fixtures/apigw-http-v2-request.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("the fixture")).expect("JSON")
}

/// One request to the API, as API Gateway would deliver it.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    /// The caller's `sub`; `None` sends no authorizer claims at all.
    pub user: Option<String>,
    pub admin: bool,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
}

impl Call {
    pub fn new(method: &str, path: &str, user: &str) -> Self {
        Self {
            method: method.into(),
            path: path.into(),
            query: Vec::new(),
            user: Some(user.into()),
            admin: false,
            headers: Vec::new(),
            body: None,
        }
    }

    pub fn body(mut self, body: impl Into<String>) -> Self {
        self.body = Some(body.into());
        self
    }

    pub fn json(self, body: Value) -> Self {
        self.body(body.to_string())
    }

    pub fn query(mut self, name: &str, value: &str) -> Self {
        self.query.push((name.into(), value.into()));
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    pub fn admin(mut self) -> Self {
        self.admin = true;
        self
    }

    pub fn anonymous(mut self) -> Self {
        self.user = None;
        self
    }

    /// The payload 2.0 event of this call, from the fixture.
    pub fn event(&self) -> Value {
        let mut event = fixture();
        let template = route_template(&self.method, &self.path);
        event["routeKey"] = json!(template.clone().unwrap_or_else(|| "$default".into()));
        event["requestContext"]["routeKey"] = event["routeKey"].clone();
        event["rawPath"] = json!(self.path);
        event["requestContext"]["http"]["method"] = json!(self.method);
        event["requestContext"]["http"]["path"] = json!(self.path);
        let raw_query: Vec<String> = self
            .query
            .iter()
            .map(|(k, v)| {
                form_urlencoded::Serializer::new(String::new())
                    .append_pair(k, v)
                    .finish()
            })
            .collect();
        event["rawQueryString"] = json!(raw_query.join("&"));
        if !self.query.is_empty() {
            let mut parameters = serde_json::Map::new();
            for (k, v) in &self.query {
                let joined = match parameters.get(k).and_then(Value::as_str) {
                    Some(before) => format!("{before},{v}"),
                    None => v.clone(),
                };
                parameters.insert(k.clone(), json!(joined));
            }
            event["queryStringParameters"] = Value::Object(parameters);
        }
        let segments: Vec<&str> = self.path.trim_matches('/').split('/').collect();
        if let ["sessions", id, ..] = segments.as_slice() {
            event["pathParameters"] = json!({ "id": id });
        }
        match &self.user {
            Some(user) => {
                let claims = &mut event["requestContext"]["authorizer"]["jwt"]["claims"];
                claims["sub"] = json!(user);
                claims["username"] = json!(user);
                if self.admin {
                    claims["scope"] = json!("sessions/admin");
                }
            }
            None => {
                event["requestContext"]
                    .as_object_mut()
                    .expect("a request context")
                    .remove("authorizer");
            }
        }
        let headers = event["headers"].as_object_mut().expect("headers");
        for (k, v) in &self.headers {
            headers.insert(k.clone(), json!(v));
        }
        match &self.body {
            Some(body) => {
                headers.insert("content-length".into(), json!(body.len().to_string()));
                event["body"] = json!(body);
            }
            None => {
                headers.remove("content-length");
                event.as_object_mut().expect("an event").remove("body");
            }
        }
        event
    }

    pub fn request(&self) -> lambda_http::Request {
        lambda_http::request::from_str(&self.event().to_string()).expect("a valid event")
    }
}

fn route_template(method: &str, path: &str) -> Option<String> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let template = match segments.as_slice() {
        ["session"] => "/session",
        ["sessions"] => "/sessions",
        ["sessions", _] => "/sessions/{id}",
        ["sessions", _, "heartbeat"] => "/sessions/{id}/heartbeat",
        ["versions"] => "/versions",
        _ => return None,
    };
    Some(format!("{method} {template}"))
}

/// An answer of the handler: status, headers and the JSON body.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: lambda_http::http::HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }
}

pub async fn call(api: &LiveApi, call: &Call) -> Answer {
    let response = api.handle(call.request()).await;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = match response.body() {
        Body::Text(text) => serde_json::from_str(text).unwrap_or(Value::Null),
        Body::Binary(bytes) => serde_json::from_slice(bytes).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    Answer {
        status,
        headers,
        body,
    }
}
