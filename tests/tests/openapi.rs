//! `docs/openapi.json` against the api: its operations are exactly the route keys, and
//! the (operation, status) pairs it lists, with the error codes it lists for each, are
//! exactly those the scenarios below make the real handler answer on a stack. Every
//! answer is JSON that validates against the schema the document gives for it (the
//! whole document is the schema resource, so `#/components/...` resolves as a client's
//! tools resolve it), and no answer validates once a member the document does not know
//! is added to it.

use std::collections::{BTreeMap, BTreeSet};

use aws_config::retry::RetryConfig;
use jsonschema::{Draft, Registry, Validator};
use serde_json::{json, Value};
use session_aws::{dynamodb::DynamoStore, ecr::EcrRegistry, sfn::SfnWorkflow};
use session_core::config::Tables;
use session_core::session::{SessionId, Status};
use session_tests::http_api::{call, live_api, Call, LiveApi};
use session_tests::{repo_root, ClosedPort, Stack, StackOptions, Tools};

/// Where the document is registered for `$ref` resolution; nothing is ever fetched.
const DOCUMENT_URI: &str = "https://session-provisioner.invalid/openapi.json";
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn document() -> Value {
    let path = repo_root().join("docs/openapi.json");
    let text = std::fs::read_to_string(&path).expect("docs/openapi.json");
    serde_json::from_str(&text).expect("docs/openapi.json is JSON")
}

/// An OpenAPI `$ref` followed to what it names, with that node's location.
fn resolve<'a>(
    doc: &'a Value,
    mut at: Vec<String>,
    mut node: &'a Value,
) -> (Vec<String>, &'a Value) {
    while let Some(reference) = node.get("$ref").and_then(Value::as_str) {
        let pointer = reference
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("only local references are expected: {reference}"));
        node = doc
            .pointer(pointer)
            .unwrap_or_else(|| panic!("{reference} points nowhere"));
        at = pointer
            .split('/')
            .skip(1)
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
            .collect();
    }
    (at, node)
}

/// A location in the document as a reference into the registered document.
fn reference(at: &[String]) -> String {
    let pointer: String = at
        .iter()
        .map(|token| format!("/{}", token.replace('~', "~0").replace('/', "~1")))
        .collect();
    let fragment: String = pointer
        .chars()
        .map(|c| match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '-' | '.' | '_' | '~' | '/' | ':' | '@' => {
                c.to_string()
            }
            other => format!("%{:02X}", other as u32),
        })
        .collect();
    format!("{DOCUMENT_URI}#{fragment}")
}

/// The route key of an operation: `METHOD /path/{template}`, as API Gateway names it.
fn route_key(path: &str, method: &str) -> String {
    format!("{} {path}", method.to_ascii_uppercase())
}

/// Every operation of the document: (route key, location of the operation object).
fn operations(doc: &Value) -> BTreeMap<String, Vec<String>> {
    let mut operations = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS.iter().filter(|m| item.get(**m).is_some()) {
            let at = vec!["paths".to_owned(), path.clone(), (*method).to_owned()];
            operations.insert(route_key(path, method), at);
        }
    }
    operations
}

/// The error codes a response schema allows (`enum` or `const` of `error.code`).
fn error_codes<'a>(doc: &'a Value, schema: &'a Value, codes: &mut BTreeSet<String>) {
    let (_, schema) = resolve(doc, vec![], schema);
    if let Some(code) = schema.pointer("/properties/error/properties/code") {
        let listed = code.get("enum").and_then(Value::as_array).cloned();
        let single = code.get("const").cloned().map(|c| vec![c]);
        for value in listed.or(single).unwrap_or_default() {
            codes.insert(value.as_str().expect("a code is a string").to_owned());
        }
    }
    for combinator in ["allOf", "oneOf", "anyOf"] {
        for part in schema[combinator].as_array().into_iter().flatten() {
            error_codes(doc, part, codes);
        }
    }
}

/// An answer of the api, whichever way it was reached.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: BTreeMap<String, String>,
    body: Value,
}

impl Answer {
    fn code(&self) -> Option<&str> {
        self.body.pointer("/error/code").and_then(Value::as_str)
    }
}

/// A request and what the api must answer to it: a status and, for an error, its code.
struct Scenario {
    call: Call,
    status: u16,
    code: Option<&'static str>,
}

fn answers(call: Call, status: u16) -> Scenario {
    Scenario {
        call,
        status,
        code: None,
    }
}

fn refuses(call: Call, status: u16, code: &'static str) -> Scenario {
    Scenario {
        call,
        status,
        code: Some(code),
    }
}

/// One response the document lists.
struct Documented {
    validator: Validator,
    response: Value,
    codes: BTreeSet<String>,
}

/// The document, compiled, and what the scenarios have shown of it so far.
struct Spec {
    responses: BTreeMap<(String, u16), Documented>,
    requests: BTreeMap<String, Validator>,
    /// (route key, status) → the error codes answered with it.
    seen: BTreeMap<(String, u16), BTreeSet<String>>,
}

impl Spec {
    fn new(doc: &Value) -> Self {
        let registry = Registry::new()
            .draft(Draft::Draft202012)
            .add(DOCUMENT_URI, doc.clone())
            .expect("the document registers")
            .prepare()
            .expect("the document's references resolve");
        let validator = |at: &[String]| {
            jsonschema::options()
                .with_draft(Draft::Draft202012)
                .with_registry(&registry)
                .should_validate_formats(true)
                .build(&json!({ "$ref": reference(at) }))
                .unwrap_or_else(|e| panic!("the schema at {at:?} compiles: {e}"))
        };
        let mut responses = BTreeMap::new();
        let mut requests = BTreeMap::new();
        for (key, at) in operations(doc) {
            let operation = &doc["paths"][&at[1]][&at[2]];
            if operation.get("requestBody").is_some() {
                let mut body_at = at.clone();
                body_at.extend(
                    ["requestBody", "content", "application/json", "schema"].map(String::from),
                );
                requests.insert(key.clone(), validator(&body_at));
            }
            let listed = operation["responses"].as_object().expect("responses");
            for (status, response) in listed {
                let mut response_at = at.clone();
                response_at.extend(["responses".to_owned(), status.clone()]);
                let (mut schema_at, response) = resolve(doc, response_at, response);
                let schema = &response["content"]["application/json"]["schema"];
                assert!(
                    schema.is_object(),
                    "{key} {status} has no application/json schema"
                );
                let mut codes = BTreeSet::new();
                error_codes(doc, schema, &mut codes);
                let status: u16 = status.parse().expect("statuses are numbers");
                if status >= 400 {
                    assert!(!codes.is_empty(), "{key} {status} lists no error code");
                }
                schema_at.extend(["content", "application/json", "schema"].map(String::from));
                responses.insert(
                    (key.clone(), status),
                    Documented {
                        validator: validator(&schema_at),
                        response: response.clone(),
                        codes,
                    },
                );
            }
        }
        Self {
            responses,
            requests,
            seen: BTreeMap::new(),
        }
    }

    /// Checks one answer against the scenario and the document, and notes it as seen.
    fn check(&mut self, scenario: &Scenario, answer: &Answer) {
        let key = scenario.call.event()["routeKey"]
            .as_str()
            .expect("a route key")
            .to_owned();
        let what = format!(
            "{key} ({} {} as {:?}) answered {}: {}",
            scenario.call.method,
            scenario.call.path,
            scenario.call.user,
            answer.status,
            answer.body
        );
        assert_eq!(
            (answer.status, answer.code()),
            (scenario.status, scenario.code),
            "{what}"
        );
        let documented = self
            .responses
            .get(&(key.clone(), answer.status))
            .unwrap_or_else(|| panic!("the document lists no {} for {key}: {what}", answer.status));
        let content_type = answer.headers.get("content-type").map(String::as_str);
        assert_eq!(content_type, Some("application/json"), "{what}");
        let headers = documented.response["headers"]
            .as_object()
            .into_iter()
            .flatten();
        for (name, _) in headers.filter(|(_, h)| h["required"] == true) {
            assert!(
                answer.headers.contains_key(&name.to_ascii_lowercase()),
                "{what}: header {name} is missing"
            );
        }
        let errors: Vec<String> = documented
            .validator
            .iter_errors(&answer.body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{what}\ndoes not match the document: {errors:#?}"
        );
        let mut drifted = answer.body.clone();
        drifted["undocumented"] = json!(true);
        assert!(
            !documented.validator.is_valid(&drifted),
            "{what}\nstill validates with a member the document does not know"
        );
        if (200..300).contains(&answer.status) {
            if let (Some(body), Some(request)) = (&scenario.call.body, self.requests.get(&key)) {
                let body: Value = serde_json::from_str(body).expect("a JSON request");
                assert!(
                    request.is_valid(&body),
                    "{what}: the document refuses the request {body}"
                );
            }
        }
        self.seen
            .entry((key, answer.status))
            .or_default()
            .extend(answer.code().map(str::to_owned));
    }

    /// Runs a scenario through the handler.
    async fn run(&mut self, api: &LiveApi, scenario: Scenario) -> Answer {
        let answered = call(api, &scenario.call).await;
        let answer = Answer {
            status: answered.status,
            headers: answered
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        v.to_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect(),
            body: answered.body,
        };
        self.check(&scenario, &answer);
        answer
    }

    /// Runs a scenario through the stack's stand-in for API Gateway, with no token.
    async fn run_without_token(&mut self, stack: &Stack, scenario: Scenario) {
        let body = scenario
            .call
            .body
            .as_deref()
            .map(|b| serde_json::from_str(b).unwrap());
        let (status, body, headers) = stack
            .http(&scenario.call.method, &scenario.call.path, None, body, &[])
            .await;
        let answer = Answer {
            status,
            headers: headers
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect(),
            body,
        };
        self.check(&scenario, &answer);
    }

    /// Everything listed was seen, with every code listed, and nothing else.
    fn assert_all_seen(&self) {
        let listed: BTreeMap<_, _> = self
            .responses
            .iter()
            .map(|(k, d)| (k.clone(), d.codes.clone()))
            .collect();
        let unseen: Vec<_> = listed
            .keys()
            .filter(|k| !self.seen.contains_key(*k))
            .collect();
        assert!(
            unseen.is_empty(),
            "listed but never answered by a scenario: {unseen:?}"
        );
        assert_eq!(
            self.seen, listed,
            "codes seen (left) and listed (right) differ"
        );
    }
}

fn session_id(answer: &Answer) -> SessionId {
    SessionId::parse(answer.body["session_id"].as_str().expect("a session id")).expect("an id")
}

/// The api with every AWS endpoint on a port where nothing listens.
fn api_without_aws(stack: &Stack) -> LiveApi {
    // Held until the test's process ends: the api keeps calling it.
    let closed = Box::leak(Box::new(ClosedPort::new()));
    let sdk = stack
        .sdk
        .to_builder()
        .endpoint_url(format!("http://127.0.0.1:{}", closed.port))
        // Retries would only delay the same answer.
        .retry_config(RetryConfig::disabled())
        .build();
    let mut api = live_api(stack);
    let tables = Tables::from_source(&stack.info.function_env).expect("tables");
    api.store = DynamoStore::connect(&sdk, tables);
    api.workflow = SfnWorkflow::connect(&sdk);
    api.registry = EcrRegistry::connect(&sdk);
    api
}

/// The api deployed against tables that do not exist: AWS refuses, not for load.
fn api_with_missing_tables(stack: &Stack) -> LiveApi {
    let mut api = live_api(stack);
    api.store = DynamoStore::connect(
        &stack.sdk,
        Tables {
            sessions: "no-such-sessions-table".into(),
            users: "no-such-users-table".into(),
            retention_days: 30,
        },
    );
    api
}

#[test]
fn the_document_has_exactly_the_route_keys_as_operations() {
    let doc = document();
    let documented: BTreeSet<String> = operations(&doc).into_keys().collect();
    let keys: BTreeSet<String> = api::Route::KEYS.iter().map(|k| k.to_string()).collect();
    assert_eq!(documented, keys);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."));
    for (key, at) in operations(&doc) {
        let operation = &doc["paths"][&at[1]][&at[2]];
        for field in ["operationId", "summary", "description"] {
            assert!(operation[field].is_string(), "{key} has no {field}");
        }
    }
}

#[test]
fn the_document_is_valid_openapi_3_1() {
    // openapi-spec-validator is pinned in tools/requirements.lock (a dependency of moto).
    let checked = std::process::Command::new(Tools::from_env().python)
        .args(["-m", "openapi_spec_validator"])
        .arg(repo_root().join("docs/openapi.json"))
        .output()
        .expect("run openapi-spec-validator");
    assert!(
        checked.status.success(),
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}

#[test]
fn the_schemas_refuse_what_the_api_never_answers() {
    let spec = Spec::new(&document());
    let schema = |key: &str, status: u16| &spec.responses[&(key.to_owned(), status)].validator;
    let session = json!({
        "session_id": "sess-0192f0c2a1b27c3d8e9f0a1b2c3d4e5f",
        "user_id": "alice",
        "status": "running",
        "version": "1.0.0",
        "task_arn": "arn:aws:ecs:eu-west-1:123456789012:task/sessions/0a1b",
        "urls": {"api": "http://203.0.113.7:8000", "frontend": "http://203.0.113.7:3000"},
        "created_at": "2026-11-26T10:00:00.000Z",
        "started_at": "2026-11-26T10:00:41.000Z",
        "stopped_at": null,
        "last_activity_at": null,
        "stop_reason": null,
        "stop_code": null,
        "stopped_reason": null,
        "idle_stop_at": "2026-11-26T10:30:41.000Z",
        "ends_at": "2026-11-26T18:00:00.000Z",
    });
    let get = schema("GET /sessions/{id}", 200);
    assert!(get.is_valid(&session), "the example itself is valid");
    let drifts = [
        ("status", json!("paused")),
        ("created_at", json!("yesterday")),
        ("urls", json!({"api": 8000})),
        ("stop_reason", json!("bored")),
        ("session_id", json!("a b")),
        ("task_arn", json!(7)),
        ("idle_stop_at", json!("in half an hour")),
    ];
    for (member, value) in drifts {
        let mut drifted = session.clone();
        drifted[member] = value;
        assert!(!get.is_valid(&drifted), "{member} = {}", drifted[member]);
    }
    for member in ["urls", "idle_stop_at", "ends_at"] {
        let mut missing = session.clone();
        missing.as_object_mut().unwrap().remove(member);
        assert!(!get.is_valid(&missing), "without {member}");
    }
    let mut start = session.clone();
    start["status_url"] = json!("/sessions/sess-0192f0c2a1b27c3d8e9f0a1b2c3d4e5f");
    assert!(!get.is_valid(&start), "a session has no status_url");
    assert!(schema("POST /sessions", 202).is_valid(&start));
    assert!(!schema("DELETE /sessions/{id}", 202).is_valid(&start));

    let error = |code: &str| json!({"error": {"code": code, "message": "m"}});
    let start_409 = schema("POST /sessions", 409);
    assert!(start_409.is_valid(&error("idempotency_key_reused")));
    assert!(
        !start_409.is_valid(&error("session_limit_reached")),
        "without active_sessions"
    );
    assert!(!start_409.is_valid(&error("conflict")));
    let mut limit = error("session_limit_reached");
    limit["error"]["active_sessions"] = json!(["sess-1"]);
    assert!(start_409.is_valid(&limit));
    let heartbeat_409 = schema("POST /sessions/{id}/heartbeat", 409);
    let mut not_running = error("session_not_running");
    not_running["error"]["status"] = json!("running");
    assert!(!heartbeat_409.is_valid(&not_running));
    not_running["error"]["status"] = json!("stopping");
    assert!(heartbeat_409.is_valid(&not_running));
    assert!(!schema("GET /sessions/{id}", 404)
        .is_valid(&json!({"error": {"code": "session_not_found"}})));
    assert!(!schema("GET /sessions", 200).is_valid(&json!({"sessions": [], "next_token": 3})));

    let versions = schema("GET /versions", 200);
    let version =
        json!({"version": "1.0.0", "pushed_at": "2026-11-26T10:00:00.000Z", "latest": true});
    assert!(versions.is_valid(&json!({"listed": true, "versions": [version.clone()]})));
    assert!(versions.is_valid(&json!({"listed": false, "versions": []})));
    assert!(!versions.is_valid(&json!({"versions": [version.clone()]})));
    for (member, value) in [
        ("version", json!("-x")),
        ("pushed_at", json!("yesterday")),
        ("latest", json!("yes")),
    ] {
        let mut drifted = version.clone();
        drifted[member] = value;
        assert!(
            !versions.is_valid(&json!({"listed": true, "versions": [drifted]})),
            "{member}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_documented_answer_is_answered_and_every_answer_is_documented() {
    // Several sessions of one user at once, which the documented answers include, need
    // a template that keeps nothing on the user's storage: with user data a user has
    // one session at a time (see `SessionTemplate::session_limit`).
    let mut template = session_core::template::SessionTemplate::default();
    for container in &mut template.containers {
        container.user_data_path = None;
    }
    let stack = Stack::start_with(StackOptions {
        env: vec![(
            "SESSION_TEMPLATE",
            serde_json::to_string(&template).expect("template JSON"),
        )],
        ..Default::default()
    })
    .await;
    stack.put_user("alice", true, Some(3)).await;
    stack.put_user("bob", true, Some(1)).await;
    stack.put_user("mallory", false, None).await;
    // An admin: the admin scope acts for others only for a user whose item says so.
    stack.put_user("root", true, None).await;
    stack
        .set_user(
            "root",
            "admin",
            aws_sdk_dynamodb::types::AttributeValue::Bool(true),
        )
        .await;
    let api = live_api(&stack);
    let mut spec = Spec::new(&document());
    let root = |method: &str, path: &str| Call::new(method, path, "root").admin();

    // Starts, through both contracts, idempotent and at the limit.
    let first = Call::new("POST", "/sessions", "alice")
        .json(json!({"version": "1.0.0"}))
        .header("Idempotency-Key", "openapi-first");
    let started = spec.run(&api, answers(first.clone(), 202)).await;
    let alice_session = session_id(&started);
    let again = spec.run(&api, answers(first.clone(), 202)).await;
    assert_eq!(session_id(&again), alice_session);
    let other_version = Call {
        body: Some(json!({"version": "latest"}).to_string()),
        ..first.clone()
    };
    spec.run(&api, refuses(other_version, 409, "idempotency_key_reused"))
        .await;
    let seed_start =
        |user: &str| Call::new("POST", "/session", user).json(json!({"action": "start"}));
    spec.run(
        &api,
        refuses(
            seed_start("alice").header("Idempotency-Key", "openapi-first"),
            409,
            "idempotency_key_reused",
        ),
    )
    .await;
    let bob_session = session_id(&spec.run(&api, answers(seed_start("bob"), 202)).await);
    spec.run(
        &api,
        refuses(
            Call::new("POST", "/sessions", "bob"),
            409,
            "session_limit_reached",
        ),
    )
    .await;
    spec.run(
        &api,
        refuses(seed_start("bob"), 409, "session_limit_reached"),
    )
    .await;

    stack.bring_task_up(&alice_session).await;
    stack
        .session_where(&alice_session, "running", |s| s.status == Status::Running)
        .await;
    let alice_path = format!("/sessions/{alice_session}");
    let bob_path = format!("/sessions/{bob_session}");
    let heartbeat = |path: &str| format!("{path}/heartbeat");

    // A second session, so that a page of one has a next page.
    spec.run(&api, answers(Call::new("POST", "/sessions", "alice"), 202))
        .await;
    let first_page = spec
        .run(
            &api,
            answers(
                Call::new("GET", "/sessions", "alice").query("limit", "1"),
                200,
            ),
        )
        .await;
    let next_token = first_page.body["next_token"]
        .as_str()
        .expect("a second page")
        .to_owned();

    let oversized = "x".repeat(api::MAX_BODY_BYTES);
    let table = vec![
        // Reading a session.
        answers(Call::new("GET", &alice_path, "alice"), 200),
        answers(root("GET", &alice_path), 200),
        refuses(
            Call::new("GET", &bob_path, "alice"),
            404,
            "session_not_found",
        ),
        refuses(
            Call::new("GET", "/sessions/sess-never", "alice"),
            404,
            "session_not_found",
        ),
        refuses(
            Call::new("GET", "/sessions/not%20an%20id", "alice"),
            400,
            "invalid_session_id",
        ),
        refuses(
            Call::new("GET", &alice_path, "alice").anonymous(),
            401,
            "unauthenticated",
        ),
        // Listing.
        answers(Call::new("GET", "/sessions", "alice"), 200),
        answers(
            Call::new("GET", "/sessions", "alice").query("next_token", &next_token),
            200,
        ),
        answers(
            Call::new("GET", "/sessions", "alice").query("user_id", "alice"),
            200,
        ),
        answers(root("GET", "/sessions").query("user_id", "bob"), 200),
        refuses(
            Call::new("GET", "/sessions", "alice").query("user_id", "bob"),
            403,
            "forbidden",
        ),
        refuses(
            Call::new("GET", "/sessions", "alice").query("limit", "0"),
            400,
            "invalid_parameter",
        ),
        refuses(
            Call::new("GET", "/sessions", "alice").query("limit", "101"),
            400,
            "invalid_parameter",
        ),
        refuses(
            Call::new("GET", "/sessions", "alice").query("next_token", "forged"),
            400,
            "invalid_parameter",
        ),
        refuses(
            Call::new("GET", "/sessions", "alice").query("sort", "asc"),
            400,
            "invalid_parameter",
        ),
        refuses(
            Call::new("GET", "/sessions", "alice").anonymous(),
            401,
            "unauthenticated",
        ),
        // Versions.
        answers(Call::new("GET", "/versions", "alice"), 200),
        refuses(
            Call::new("GET", "/versions", "alice").query("limit", "1"),
            400,
            "invalid_parameter",
        ),
        refuses(
            Call::new("GET", "/versions", "alice").anonymous(),
            401,
            "unauthenticated",
        ),
        // Heartbeats: taken only while running.
        answers(Call::new("POST", &heartbeat(&alice_path), "alice"), 200),
        answers(Call::new("POST", &heartbeat(&alice_path), "alice"), 200),
        answers(root("POST", &heartbeat(&alice_path)), 200),
        refuses(
            Call::new("POST", &heartbeat(&bob_path), "bob"),
            409,
            "session_not_running",
        ),
        refuses(
            Call::new("POST", &heartbeat(&bob_path), "alice"),
            404,
            "session_not_found",
        ),
        refuses(
            Call::new("POST", "/sessions/a.b/heartbeat", "alice"),
            400,
            "invalid_session_id",
        ),
        refuses(
            Call::new("POST", &heartbeat(&alice_path), "alice").anonymous(),
            401,
            "unauthenticated",
        ),
        // Starts refused.
        refuses(
            Call::new("POST", "/sessions", "alice").body("{not json"),
            400,
            "invalid_json",
        ),
        refuses(
            Call::new("POST", "/sessions", "alice").body("[1,2]"),
            400,
            "invalid_request",
        ),
        refuses(
            Call::new("POST", "/sessions", "alice").json(json!({"verison": "1.0.0"})),
            400,
            "invalid_request",
        ),
        refuses(
            Call::new("POST", "/sessions", "alice").json(json!({"version": oversized})),
            400,
            "body_too_large",
        ),
        refuses(
            Call::new("POST", "/sessions", "alice").json(json!({"version": "1.0.0;rm -rf"})),
            400,
            "invalid_version",
        ),
        refuses(
            Call::new("POST", "/sessions", "alice").header("Idempotency-Key", "has space"),
            400,
            "invalid_idempotency_key",
        ),
        refuses(
            Call::new("POST", "/sessions", "alice").json(json!({"version": "9.9.9"})),
            400,
            "image_not_found",
        ),
        refuses(
            Call::new("POST", "/sessions", "alice").json(json!({"user_id": "bob"})),
            403,
            "forbidden",
        ),
        refuses(
            Call::new("POST", "/sessions", "mallory"),
            403,
            "not_authorized",
        ),
        refuses(
            Call::new("POST", "/sessions", "alice").anonymous(),
            401,
            "unauthenticated",
        ),
        // The seed contract refused.
        refuses(Call::new("POST", "/session", "alice"), 400, "invalid_json"),
        refuses(
            Call::new("POST", "/session", "alice").json(json!({"action": "restart"})),
            400,
            "invalid_request",
        ),
        refuses(
            Call::new("POST", "/session", "alice")
                .json(json!({"action": "start", "version": oversized})),
            400,
            "body_too_large",
        ),
        refuses(
            Call::new("POST", "/session", "alice")
                .json(json!({"action": "start", "version": "-1"})),
            400,
            "invalid_version",
        ),
        refuses(
            seed_start("alice").header("Idempotency-Key", ""),
            400,
            "invalid_idempotency_key",
        ),
        refuses(
            Call::new("POST", "/session", "alice")
                .json(json!({"action": "stop", "session_id": "a b"})),
            400,
            "invalid_session_id",
        ),
        refuses(
            Call::new("POST", "/session", "alice")
                .json(json!({"action": "start", "version": "9.9.9"})),
            400,
            "image_not_found",
        ),
        refuses(
            Call::new("POST", "/session", "alice")
                .json(json!({"action": "start", "user_id": "bob"})),
            403,
            "forbidden",
        ),
        refuses(
            Call::new("POST", "/session", "alice")
                .json(json!({"action": "stop", "session_id": alice_session, "user_id": "bob"})),
            403,
            "forbidden",
        ),
        refuses(seed_start("mallory"), 403, "not_authorized"),
        refuses(
            Call::new("POST", "/session", "alice")
                .json(json!({"action": "stop", "session_id": bob_session})),
            404,
            "session_not_found",
        ),
        refuses(seed_start("alice").anonymous(), 401, "unauthenticated"),
        // Stops refused.
        refuses(
            Call::new("DELETE", &bob_path, "alice"),
            404,
            "session_not_found",
        ),
        refuses(
            Call::new("DELETE", "/sessions/sess-never", "alice"),
            404,
            "session_not_found",
        ),
        refuses(
            Call::new("DELETE", "/sessions/%2e%2e", "alice"),
            400,
            "invalid_session_id",
        ),
        refuses(
            Call::new("DELETE", &alice_path, "alice").anonymous(),
            401,
            "unauthenticated",
        ),
    ];
    for scenario in table {
        spec.run(&api, scenario).await;
    }

    // Stops, through both contracts: stopping at once, then ended.
    let stopping = spec
        .run(
            &api,
            answers(Call::new("DELETE", &alice_path, "alice"), 202),
        )
        .await;
    assert_eq!(stopping.body["status"], "stopping");
    let seed_stop = Call::new("POST", "/session", "bob")
        .json(json!({"action": "stop", "session_id": bob_session}));
    spec.run(&api, answers(seed_stop.clone(), 202)).await;
    for id in [&alice_session, &bob_session] {
        stack
            .session_where(id, "the session to end", |s| s.status.is_terminal())
            .await;
    }
    let ended = spec
        .run(
            &api,
            answers(Call::new("DELETE", &alice_path, "alice"), 200),
        )
        .await;
    assert_eq!(ended.body["status"], "stopped");
    spec.run(&api, answers(seed_stop, 200)).await;
    spec.run(&api, answers(Call::new("GET", &alice_path, "alice"), 200))
        .await;
    spec.run(
        &api,
        refuses(
            Call::new("POST", &heartbeat(&alice_path), "alice"),
            409,
            "session_not_running",
        ),
    )
    .await;

    // AWS out of reach (503) or refusing for another reason than load (500).
    let every_route = || {
        [
            seed_start("alice"),
            Call::new("POST", "/sessions", "alice"),
            Call::new("GET", "/sessions", "alice"),
            Call::new("GET", &alice_path, "alice"),
            Call::new("DELETE", &alice_path, "alice"),
            Call::new("POST", &heartbeat(&alice_path), "alice"),
        ]
    };
    let unreachable = api_without_aws(&stack);
    for request in every_route() {
        spec.run(&unreachable, refuses(request, 503, "unavailable"))
            .await;
    }
    let misconfigured = api_with_missing_tables(&stack);
    for request in every_route() {
        spec.run(&misconfigured, refuses(request, 500, "internal"))
            .await;
    }

    // The versions read the registry, not the tables: out of reach, then refusing the
    // api's role (a permission missing from the deployment).
    let versions = || Call::new("GET", "/versions", "alice");
    spec.run(&unreachable, refuses(versions(), 503, "unavailable"))
        .await;
    stack.inject_fault(json!({
        "service": "ecr", "action": "DescribeImages", "times": 1, "status": 400,
        "code": "AccessDeniedException",
        "message": "User is not authorized to perform: ecr:DescribeImages",
    }));
    spec.run(&api, refuses(versions(), 500, "internal")).await;

    // No token: API Gateway answers before the function (the stack's stand-in for it
    // answers as AWS documents).
    for request in every_route().into_iter().chain([versions()]) {
        spec.run_without_token(&stack, answers(request, 401)).await;
    }

    spec.assert_all_seen();
}
