//! The public API on moto: every route, status and error through the handler with API
//! Gateway's event shape, the real function behind the local HTTP API, isolation
//! between users, concurrent and idempotent starts, a stop at any moment, heartbeats,
//! and arbitrary input that never earns a 5xx.

use std::collections::BTreeSet;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sfn::types::ExecutionStatus;
use serde_json::{json, Value};
use session_core::session::{Reason, SessionId, Status};
use session_tests::http_api::{call, live_api, Call};
use session_tests::{Stack, StackOptions};

fn session_id(body: &Value) -> SessionId {
    SessionId::parse(body["session_id"].as_str().expect("a session id")).expect("a valid id")
}

/// Makes `user` an admin: the admin scope acts for others only for a user whose item
/// says `admin = true`.
async fn put_admin(stack: &Stack, user: &str) {
    stack.put_user(user, true, None).await;
    stack
        .set_user(user, "admin", AttributeValue::Bool(true))
        .await;
}

/// Waits until the session ended, then checks it ended `stopped` for `reason` with no
/// task left running and its slot free.
async fn assert_ended_stopped(stack: &Stack, id: &SessionId, reason: Reason) {
    let session = stack
        .session_where(id, "the session to end", |s| s.status.is_terminal())
        .await;
    assert_eq!(session.status, Status::Stopped, "{session:?}");
    assert_eq!(session.stop_reason, Some(reason));
    let execution = session.execution_arn.clone().expect("an execution");
    assert_eq!(
        stack.execution_ended(&execution).await,
        ExecutionStatus::Succeeded
    );
    for task in stack.running_tasks().await {
        assert_ne!(
            task.started_by(),
            Some(id.as_str()),
            "a task of {id} still runs"
        );
    }
    let slots = stack.active_slots(&session.user_id).await;
    assert!(
        !slots.contains(&id.to_string()),
        "{id} holds a slot: {slots:?}"
    );
}

/// Starts `n` sessions of `user` one after another, each stopped and its slot free
/// before the next starts (a user has one session at a time while the template mounts
/// their data). Returns their ids, oldest first.
async fn sessions_one_after_another(stack: &Stack, user: &str, n: usize) -> Vec<String> {
    let token = format!("dev:{user}");
    let mut ids = Vec::new();
    for _ in 0..n {
        let (status, started, _) = stack
            .http("POST", "/sessions", Some(&token), Some(json!({})), &[])
            .await;
        assert_eq!(status, 202, "{started}");
        let id = session_id(&started);
        let (status, body, _) = stack
            .http(
                "DELETE",
                &format!("/sessions/{id}"),
                Some(&token),
                None,
                &[],
            )
            .await;
        assert_eq!(status, 202, "{body}");
        stack
            .session_where(&id, "the session to end", |s| s.status.is_terminal())
            .await;
        stack
            .eventually("the slot to be free", Duration::from_secs(30), || async {
                stack.active_slots(user).await.is_empty().then_some(())
            })
            .await;
        ids.push(id.to_string());
    }
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn a_start_answers_202_and_the_session_shows_its_urls_once_running() {
    let stack = Stack::start().await;
    stack.put_user("alice", true, None).await;

    let (status, started, headers) = stack
        .http(
            "POST",
            "/sessions",
            Some("dev:alice"),
            Some(json!({"version": "1.0.0"})),
            &[],
        )
        .await;
    assert_eq!(status, 202, "{started}");
    let id = session_id(&started);
    assert_eq!(started["status"], "starting");
    assert_eq!(started["version"], "1.0.0");
    assert_eq!(started["user_id"], "alice");
    assert_eq!(started["status_url"], format!("/sessions/{id}"));
    assert_eq!(headers["location"], format!("/sessions/{id}"));
    assert!(started.get("stop_token").is_none() && started.get("ip_token").is_none());

    let (_, public_ip) = stack.bring_task_up(&id).await;
    let running = stack
        .eventually(
            "the API to show it running",
            Duration::from_secs(60),
            || async {
                let (status, body, _) = stack
                    .http(
                        "GET",
                        &format!("/sessions/{id}"),
                        Some("dev:alice"),
                        None,
                        &[],
                    )
                    .await;
                assert_eq!(status, 200, "{body}");
                (body["status"] == "running").then_some(body)
            },
        )
        .await;
    assert_eq!(running["urls"]["api"], format!("http://{public_ip}:8000"));
    assert_eq!(
        running["urls"]["frontend"],
        format!("http://{public_ip}:3000")
    );
    assert_eq!(
        running["urls"]["suv_ui"],
        format!("http://{public_ip}:3030")
    );
    assert!(running["task_arn"].as_str().unwrap().contains(":task/"));
    assert!(running["started_at"].is_string());

    let (status, stopping, _) = stack
        .http(
            "DELETE",
            &format!("/sessions/{id}"),
            Some("dev:alice"),
            None,
            &[],
        )
        .await;
    assert_eq!(status, 202, "{stopping}");
    assert_eq!(stopping["status"], "stopping");
    assert_ended_stopped(&stack, &id, Reason::User).await;
    let (status, ended, _) = stack
        .http(
            "DELETE",
            &format!("/sessions/{id}"),
            Some("dev:alice"),
            None,
            &[],
        )
        .await;
    assert_eq!(
        (status, &ended["status"]),
        (200, &json!("stopped")),
        "{ended}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_seed_contract_starts_and_stops_through_post_session() {
    let stack = Stack::start().await;
    stack.put_user("user123", true, None).await;
    let (status, started, _) = stack
        .http(
            "POST",
            "/session",
            Some("dev:user123"),
            Some(json!({"user_id": "user123", "action": "start", "version": "latest"})),
            &[],
        )
        .await;
    assert_eq!(status, 202, "{started}");
    for field in ["session_id", "task_arn", "status", "urls", "version"] {
        assert!(started.get(field).is_some(), "{field} missing: {started}");
    }
    let id = session_id(&started);
    stack.bring_task_up(&id).await;
    stack
        .session_where(&id, "running", |s| s.status == Status::Running)
        .await;

    let (status, stopped, _) = stack
        .http(
            "POST",
            "/session",
            Some("dev:user123"),
            Some(json!({"user_id": "user123", "action": "stop", "session_id": id})),
            &[],
        )
        .await;
    assert_eq!(status, 202, "{stopped}");
    assert_eq!(stopped["session_id"], id.as_str());
    assert!(stopped["message"].is_string());
    assert_ended_stopped(&stack, &id, Reason::User).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_a_4xx_with_a_json_error_code() {
    let stack = Stack::start().await;
    stack.put_user("alice", true, None).await;
    stack.put_user("mallory", false, None).await;
    put_admin(&stack, "root").await;
    let api = live_api(&stack);
    let oversized = json!({"version": "x".repeat(api::MAX_BODY_BYTES)}).to_string();
    let cases: Vec<(Call, u16, &str)> = vec![
        (
            Call::new("POST", "/sessions", "alice").body("{not json"),
            400,
            "invalid_json",
        ),
        (
            Call::new("POST", "/sessions", "alice").body("[1,2]"),
            400,
            "invalid_request",
        ),
        (
            Call::new("POST", "/sessions", "alice").json(json!({"verison": "1.0.0"})),
            400,
            "invalid_request",
        ),
        (
            Call::new("POST", "/sessions", "alice").json(json!({"version": "1.0.0;rm -rf"})),
            400,
            "invalid_version",
        ),
        (
            Call::new("POST", "/sessions", "alice").json(json!({"version": 7})),
            400,
            "invalid_request",
        ),
        (
            Call::new("POST", "/sessions", "alice").json(json!({"version": "9.9.9"})),
            400,
            "image_not_found",
        ),
        (
            Call::new("POST", "/sessions", "alice").body(oversized),
            400,
            "body_too_large",
        ),
        (
            Call::new("POST", "/session", "alice").json(json!({"action": "restart"})),
            400,
            "invalid_request",
        ),
        (
            Call::new("POST", "/session", "alice").json(json!({"version": "1.0.0"})),
            400,
            "invalid_request",
        ),
        (Call::new("POST", "/session", "alice"), 400, "invalid_json"),
        (
            Call::new("POST", "/session", "alice")
                .json(json!({"action": "stop", "session_id": "a b"})),
            400,
            "invalid_session_id",
        ),
        (
            Call::new("GET", "/sessions/not%20an%20id", "alice"),
            400,
            "invalid_session_id",
        ),
        (
            Call::new("GET", "/sessions/sess-nope", "alice"),
            404,
            "session_not_found",
        ),
        (
            Call::new("DELETE", "/sessions/sess-nope", "alice"),
            404,
            "session_not_found",
        ),
        (
            Call::new("POST", "/sessions/sess-nope/heartbeat", "alice"),
            404,
            "session_not_found",
        ),
        (
            Call::new("GET", "/sessions", "alice").query("limit", "0"),
            400,
            "invalid_parameter",
        ),
        (
            Call::new("GET", "/sessions", "alice").query("limit", "ten"),
            400,
            "invalid_parameter",
        ),
        (
            Call::new("GET", "/sessions", "alice").query("next_token", "forged"),
            400,
            "invalid_parameter",
        ),
        (
            Call::new("GET", "/sessions", "alice").query("sort", "asc"),
            400,
            "invalid_parameter",
        ),
        (
            Call::new("POST", "/sessions", "alice").header("Idempotency-Key", "has space"),
            400,
            "invalid_idempotency_key",
        ),
        (
            Call::new("GET", "/sessions", "root")
                .admin()
                .query("user_id", ""),
            400,
            "invalid_parameter",
        ),
        (
            Call::new("GET", "/sessions", "alice").anonymous(),
            401,
            "unauthenticated",
        ),
        (
            Call::new("POST", "/sessions", "alice").json(json!({"user_id": "bob"})),
            403,
            "forbidden",
        ),
        (
            Call::new("POST", "/sessions", "mallory"),
            403,
            "not_authorized",
        ),
        (
            Call::new("POST", "/sessions", "stranger"),
            403,
            "not_authorized",
        ),
        (
            Call::new("PUT", "/sessions/sess-1", "alice"),
            405,
            "method_not_allowed",
        ),
        (
            Call::new("GET", "/versions", "alice").query("newest", "1"),
            400,
            "invalid_parameter",
        ),
        (
            Call::new("POST", "/versions", "alice"),
            405,
            "method_not_allowed",
        ),
        (Call::new("GET", "/admin", "alice"), 404, "route_not_found"),
    ];
    for (request, status, code) in &cases {
        let answer = call(&api, request).await;
        assert_eq!(
            (answer.status, answer.code()),
            (*status, *code),
            "{} {} {:?}: {}",
            request.method,
            request.path,
            request.body.as_deref().map(|b| &b[..b.len().min(80)]),
            answer.body
        );
        assert!(
            answer.body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{}",
            answer.body
        );
        assert_eq!(answer.headers["content-type"], "application/json");
    }
    // Nothing was started by any of it.
    assert!(stack.running_tasks().await.is_empty());
    assert!(stack.active_slots("alice").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn users_cannot_see_stop_or_heartbeat_each_others_sessions_but_an_admin_can() {
    let stack = Stack::start().await;
    for user in ["alice", "bob"] {
        stack.put_user(user, true, None).await;
    }
    put_admin(&stack, "root").await;
    let api = live_api(&stack);
    let started = call(&api, &Call::new("POST", "/sessions", "bob")).await;
    assert_eq!(started.status, 202, "{}", started.body);
    let id = session_id(&started.body);
    stack.bring_task_up(&id).await;
    stack
        .session_where(&id, "running", |s| s.status == Status::Running)
        .await;

    let get = format!("/sessions/{id}");
    let heartbeat = format!("/sessions/{id}/heartbeat");
    for request in [
        Call::new("GET", &get, "alice"),
        Call::new("DELETE", &get, "alice"),
        Call::new("POST", &heartbeat, "alice"),
        Call::new("POST", "/session", "alice").json(json!({"action": "stop", "session_id": id})),
    ] {
        let answer = call(&api, &request).await;
        assert_eq!(
            (answer.status, answer.code()),
            (404, "session_not_found"),
            "{} {}: {}",
            request.method,
            request.path,
            answer.body
        );
        // Exactly what a session that does not exist answers.
        let missing = call(
            &api,
            &Call {
                path: request.path.replace(id.as_str(), "sess-does-not-exist"),
                body: request
                    .body
                    .as_ref()
                    .map(|b| b.replace(id.as_str(), "sess-does-not-exist")),
                ..request.clone()
            },
        )
        .await;
        assert_eq!(
            answer.body["error"]["message"]
                .as_str()
                .unwrap()
                .replace(id.as_str(), "X"),
            missing.body["error"]["message"]
                .as_str()
                .unwrap()
                .replace("sess-does-not-exist", "X")
        );
    }
    let listed = call(&api, &Call::new("GET", "/sessions", "alice")).await;
    assert_eq!(listed.body["sessions"], json!([]), "{}", listed.body);
    let for_bob = call(
        &api,
        &Call::new("GET", "/sessions", "alice").query("user_id", "bob"),
    )
    .await;
    assert_eq!((for_bob.status, for_bob.code()), (403, "forbidden"));
    let start_for_bob = call(
        &api,
        &Call::new("POST", "/sessions", "alice").json(json!({"user_id": "bob"})),
    )
    .await;
    assert_eq!(
        (start_for_bob.status, start_for_bob.code()),
        (403, "forbidden")
    );
    let seed_for_bob = call(
        &api,
        &Call::new("POST", "/session", "alice").json(json!({"action": "start", "user_id": "bob"})),
    )
    .await;
    assert_eq!(seed_for_bob.status, 403);
    // Bob's session ran on, untouched.
    assert_eq!(stack.session(&id).await.unwrap().status, Status::Running);

    // An admin (the admin scope and `admin` on their user item) sees, lists and stops it.
    let root = |method: &str, path: &str| Call::new(method, path, "root").admin();
    let seen = call(&api, &root("GET", &get)).await;
    assert_eq!((seen.status, &seen.body["user_id"]), (200, &json!("bob")));
    let listed = call(&api, &root("GET", "/sessions").query("user_id", "bob")).await;
    assert_eq!(listed.body["sessions"][0]["session_id"], id.as_str());
    let beat = call(&api, &root("POST", &heartbeat)).await;
    assert_eq!(beat.status, 200, "{}", beat.body);
    let stopped = call(&api, &root("DELETE", &get)).await;
    assert_eq!(stopped.status, 202, "{}", stopped.body);
    assert_ended_stopped(&stack, &id, Reason::User).await;

    // An admin also starts a session for another user.
    let for_alice = call(
        &api,
        &root("POST", "/sessions").json(json!({"user_id": "alice"})),
    )
    .await;
    assert_eq!(
        (for_alice.status, &for_alice.body["user_id"]),
        (202, &json!("alice"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_scope_without_the_admin_flag_is_an_ordinary_user_and_with_it_an_admin() {
    let stack = Stack::start().await;
    for user in ["bob", "carol"] {
        stack.put_user(user, true, None).await;
    }
    let api = live_api(&stack);
    let started = call(&api, &Call::new("POST", "/sessions", "bob")).await;
    assert_eq!(started.status, 202, "{}", started.body);
    let id = session_id(&started.body);
    stack.bring_task_up(&id).await;
    stack
        .session_where(&id, "running", |s| s.status == Status::Running)
        .await;
    let get = format!("/sessions/{id}");
    let carol = |method: &str, path: &str| Call::new(method, path, "carol").admin();

    // The scope alone: carol's app client may ask for it, but her item does not say admin.
    let seen = call(&api, &carol("GET", &get)).await;
    assert_eq!(
        (seen.status, seen.code()),
        (404, "session_not_found"),
        "{}",
        seen.body
    );
    let missing = call(&api, &carol("GET", "/sessions/sess-does-not-exist")).await;
    assert_eq!(
        seen.body["error"]["message"]
            .as_str()
            .unwrap()
            .replace(id.as_str(), "X"),
        missing.body["error"]["message"]
            .as_str()
            .unwrap()
            .replace("sess-does-not-exist", "X")
    );
    let stop = call(&api, &carol("DELETE", &get)).await;
    assert_eq!((stop.status, stop.code()), (404, "session_not_found"));
    let start_for_bob = call(
        &api,
        &carol("POST", "/sessions").json(json!({"user_id": "bob"})),
    )
    .await;
    assert_eq!(
        (start_for_bob.status, start_for_bob.code()),
        (403, "forbidden"),
        "{}",
        start_for_bob.body
    );
    // The same through the real function behind the local HTTP API.
    let (status, body, _) = stack
        .http("GET", &get, Some("dev-admin:carol"), None, &[])
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("session_not_found"))
    );
    assert_eq!(stack.session(&id).await.unwrap().status, Status::Running);

    // The flag alone does not make an admin either: the token must hold the scope.
    stack
        .set_user("carol", "admin", AttributeValue::Bool(true))
        .await;
    let unscoped = call(&api, &Call::new("GET", &get, "carol")).await;
    assert_eq!(unscoped.status, 404, "{}", unscoped.body);

    // Both: carol is an admin, sees bob's session and stops it.
    let (status, body, _) = stack
        .http("GET", &get, Some("dev-admin:carol"), None, &[])
        .await;
    assert_eq!((status, &body["user_id"]), (200, &json!("bob")), "{body}");
    let stopped = call(&api, &carol("DELETE", &get)).await;
    assert_eq!(stopped.status, 202, "{}", stopped.body);
    assert_ended_stopped(&stack, &id, Reason::User).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tampered_next_token_is_a_400_not_a_500_through_the_real_function() {
    let stack = Stack::start().await;
    stack.put_user("erin", true, None).await;
    stack.put_user("frank", true, None).await;
    sessions_one_after_another(&stack, "erin", 2).await;
    let list = |user: &str, token: &str| {
        let path = format!("/sessions?limit=1&next_token={token}");
        let token = format!("dev:{user}");
        let stack = &stack;
        async move { stack.http("GET", &path, Some(&token), None, &[]).await }
    };
    let (status, first, _) = stack
        .http("GET", "/sessions?limit=1", Some("dev:erin"), None, &[])
        .await;
    assert_eq!(status, 200, "{first}");
    let token = first["next_token"]
        .as_str()
        .expect("a next_token")
        .to_owned();
    let (status, second, _) = list("erin", &token).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["sessions"].as_array().map(Vec::len), Some(1));

    // A token is base64url of a 32-byte HMAC-SHA256 and the JSON cursor.
    let b64 = |bytes: &[u8]| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    };
    let unsigned = |json: &str| b64(&[&[0u8; 32][..], json.as_bytes()].concat());
    let mut flipped = token.clone().into_bytes();
    flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
    let long_id = format!(
        r#"{{"created_at":"2026-11-26T00:00:00.000Z","session_id":"{}"}}"#,
        "a".repeat(4096)
    );
    let empty_id = r#"{"created_at":"2026-11-26T00:00:00.000Z","session_id":""}"#;
    let tampered = [
        (
            "a flipped byte",
            String::from_utf8(flipped).unwrap(),
            "erin",
        ),
        ("another user's", token.clone(), "frank"),
        ("an empty session id", unsigned(empty_id), "erin"),
        ("a 4 KB session id", unsigned(&long_id), "erin"),
        ("no MAC", b64(empty_id.as_bytes()), "erin"),
        ("not base64", "%25%25%25".to_owned(), "erin"),
    ];
    for (what, bad, user) in &tampered {
        let (status, body, _) = list(user, bad).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (400, &json!("invalid_parameter")),
            "{what}: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_concurrent_starts_at_a_limit_of_one_make_one_session_and_one_task() {
    let stack = Stack::start().await;
    stack.put_user("racer", true, Some(1)).await;
    let requests = (0..50).map(|i| {
        let stack = &stack;
        async move {
            // Half retry one request under one key; half are separate requests.
            let key = format!("key-{}", if i % 2 == 0 { 0 } else { i });
            stack
                .http(
                    "POST",
                    "/sessions",
                    Some("dev:racer"),
                    Some(json!({"version": "1.0.0"})),
                    &[("Idempotency-Key", key.as_str())],
                )
                .await
        }
    });
    let answers = futures::future::join_all(requests).await;
    let mut accepted = BTreeSet::new();
    for (status, body, _) in &answers {
        match status {
            202 => {
                accepted.insert(body["session_id"].as_str().unwrap().to_owned());
            }
            409 => {
                assert_eq!(body["error"]["code"], "session_limit_reached", "{body}");
                assert_eq!(
                    body["error"]["active_sessions"].as_array().unwrap().len(),
                    1
                );
            }
            other => panic!("answered {other}: {body}"),
        }
    }
    assert_eq!(accepted.len(), 1, "sessions accepted: {accepted:?}");
    let id = SessionId::parse(accepted.iter().next().unwrap()).unwrap();
    assert_eq!(stack.active_slots("racer").await, vec![id.to_string()]);

    let listed = stack
        .http("GET", "/sessions?limit=100", Some("dev:racer"), None, &[])
        .await
        .1;
    assert_eq!(listed["sessions"].as_array().unwrap().len(), 1, "{listed}");
    stack
        .session_where(&id, "its task", |s| s.task_arn.is_some())
        .await;
    let tasks = stack.running_tasks().await;
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(tasks[0].started_by(), Some(id.as_str()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_start_repeated_with_its_idempotency_key_returns_the_first_answer() {
    let stack = Stack::start().await;
    stack.put_user("carol", true, Some(3)).await;
    let api = live_api(&stack);
    let start = Call::new("POST", "/sessions", "carol")
        .json(json!({"version": "1.0.0"}))
        .header("Idempotency-Key", "9f1c7e3a-retry");
    let first = call(&api, &start).await;
    let again = call(&api, &start).await;
    assert_eq!(first.status, 202, "{}", first.body);
    assert_eq!(again.status, 202, "{}", again.body);
    assert_eq!(first.body["session_id"], again.body["session_id"]);
    assert_eq!(stack.active_slots("carol").await.len(), 1);

    let other_version = call(
        &api,
        &Call {
            body: Some(json!({"version": "latest"}).to_string()),
            ..start.clone()
        },
    )
    .await;
    assert_eq!(
        (other_version.status, other_version.code()),
        (409, "idempotency_key_reused")
    );
    // The same key from another user is another request.
    stack.put_user("dave", true, None).await;
    let dave = call(
        &api,
        &Call {
            user: Some("dave".into()),
            ..start.clone()
        },
    )
    .await;
    assert_eq!(dave.status, 202);
    assert_ne!(dave.body["session_id"], first.body["session_id"]);

    let executions = stack
        .sfn
        .list_executions()
        .state_machine_arn(&stack.info.state_machine_arn)
        .send()
        .await
        .unwrap();
    let names: Vec<&str> = executions.executions().iter().map(|e| e.name()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_start_whose_execution_cannot_start_leaves_nothing_and_its_retry_starts_afresh() {
    let stack = Stack::start().await;
    stack.put_user("kim", true, Some(1)).await;
    let mut broken = live_api(&stack);
    broken.settings.state_machine_arn = stack
        .info
        .state_machine_arn
        .replace("session-lifecycle", "no-such-machine");
    let start = Call::new("POST", "/sessions", "kim")
        .json(json!({"version": "1.0.0"}))
        .header("Idempotency-Key", "retry-me");

    let failed = call(&broken, &start).await;
    assert_eq!(
        (failed.status, failed.code()),
        (500, "internal"),
        "{}",
        failed.body
    );
    let id = api::idempotent_session_id("kim", "retry-me").unwrap();
    assert_eq!(
        stack.session(&id).await,
        None,
        "the unstarted session is gone"
    );
    assert!(
        stack.active_slots("kim").await.is_empty(),
        "its slot is free"
    );

    let retried = call(&live_api(&stack), &start).await;
    assert_eq!(retried.status, 202, "{}", retried.body);
    assert_eq!(retried.body["session_id"], id.as_str());
    stack.bring_task_up(&id).await;
    stack
        .session_where(&id, "running", |s| s.status == Status::Running)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_are_listed_newest_first_a_page_at_a_time() {
    let stack = Stack::start().await;
    stack.put_user("erin", true, None).await;
    let api = live_api(&stack);
    let mut ids = sessions_one_after_another(&stack, "erin", 5).await;
    ids.reverse();
    let mut listed = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut request = Call::new("GET", "/sessions", "erin").query("limit", "2");
        if let Some(token) = &token {
            request = request.query("next_token", token);
        }
        let page = call(&api, &request).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let sessions = page.body["sessions"].as_array().unwrap();
        assert!(sessions.len() <= 2);
        listed.extend(
            sessions
                .iter()
                .map(|s| s["session_id"].as_str().unwrap().to_owned()),
        );
        pages += 1;
        match page.body["next_token"].as_str() {
            Some(next) => token = Some(next.to_owned()),
            None => break,
        }
        assert!(pages < 10, "the listing never ends");
    }
    assert_eq!(listed, ids);
    assert!(pages >= 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stop_during_authorize_or_launch_ends_stopped_for_the_user_with_no_task() {
    for phase in ["authorize", "launch"] {
        let stack = Stack::start_with(StackOptions {
            held_back: vec![phase],
            ..Default::default()
        })
        .await;
        stack.put_user("frank", true, None).await;
        let (status, started, _) = stack
            .http("POST", "/sessions", Some("dev:frank"), None, &[])
            .await;
        assert_eq!(status, 202, "{started}");
        let id = session_id(&started);
        let execution = stack.session(&id).await.unwrap().execution_arn.unwrap();
        let state = if phase == "authorize" {
            "Authorize"
        } else {
            "Launch"
        };
        stack.wait_for_state(&execution, state).await;

        let (status, stopping, _) = stack
            .http(
                "DELETE",
                &format!("/sessions/{id}"),
                Some("dev:frank"),
                None,
                &[],
            )
            .await;
        assert_eq!(
            (status, &stopping["status"]),
            (202, &json!("stopping")),
            "{phase}"
        );
        stack.start_function(phase);
        assert_ended_stopped(&stack, &id, Reason::User).await;
        let entered = stack.states_entered(&execution).await;
        assert!(
            !entered.contains(&"WaitForIp".to_owned()),
            "{phase}: {entered:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stop_while_waiting_for_the_ip_or_running_ends_stopped_for_the_user() {
    let stack = Stack::start().await;
    // Two users: a user has one session at a time while the template mounts their data.
    stack.put_user("gina", true, None).await;
    stack.put_user("gino", true, None).await;
    let start = |user: &str| {
        let token = format!("dev:{user}");
        let stack = &stack;
        async move {
            stack
                .http("POST", "/sessions", Some(&token), None, &[])
                .await
        }
    };
    let waiting = session_id(&start("gina").await.1);
    let running = session_id(&start("gino").await.1);
    let waiting_session = stack
        .session_where(&waiting, "its task", |s| s.ip_token.is_some())
        .await;
    let task_of_waiting = waiting_session.task_arn.expect("a task");
    stack.bring_task_up(&running).await;
    stack
        .session_where(&running, "its stop token", |s| s.stop_token.is_some())
        .await;

    for (id, user) in [(&waiting, "gina"), (&running, "gino")] {
        let (status, body, _) = stack
            .http(
                "DELETE",
                &format!("/sessions/{id}"),
                Some(&format!("dev:{user}")),
                None,
                &[],
            )
            .await;
        assert_eq!(status, 202, "{body}");
    }
    assert_ended_stopped(&stack, &waiting, Reason::User).await;
    assert_ended_stopped(&stack, &running, Reason::User).await;
    assert_eq!(
        stack.task(&task_of_waiting).await.last_status(),
        Some("STOPPED")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_heartbeat_is_written_at_most_once_per_interval_and_only_while_running() {
    let stack = Stack::start().await;
    stack.put_user("hank", true, None).await;
    let api = live_api(&stack);
    let started = call(&api, &Call::new("POST", "/sessions", "hank")).await;
    let id = session_id(&started.body);
    let beat = Call::new("POST", &format!("/sessions/{id}/heartbeat"), "hank");

    let early = call(&api, &beat).await;
    assert_eq!((early.status, early.code()), (409, "session_not_running"));
    assert!(["starting", "provisioning"].contains(&early.body["error"]["status"].as_str().unwrap()));

    stack.bring_task_up(&id).await;
    stack
        .session_where(&id, "running", |s| s.status == Status::Running)
        .await;
    let first = call(&api, &beat).await;
    assert_eq!(
        (first.status, &first.body["recorded"]),
        (200, &json!(true)),
        "{}",
        first.body
    );
    let written = stack
        .session(&id)
        .await
        .unwrap()
        .last_activity_at
        .map(|t| t.to_string());
    assert_eq!(written.as_deref(), first.body["last_activity_at"].as_str());
    // A chatty client: the next beats inside the interval write nothing.
    for _ in 0..5 {
        let again = call(&api, &beat).await;
        assert_eq!(
            (again.status, &again.body["recorded"]),
            (200, &json!(false))
        );
        assert_eq!(again.body["last_activity_at"].as_str(), written.as_deref());
        assert_eq!(again.body["idle_stop_at"], first.body["idle_stop_at"]);
    }
    assert_eq!(
        stack
            .session(&id)
            .await
            .unwrap()
            .last_activity_at
            .map(|t| t.to_string()),
        written
    );
}

/// `at` plus `s` seconds, as the API writes timestamps.
fn later(at: &Value, s: i64) -> Value {
    let at = chrono::DateTime::parse_from_rfc3339(at.as_str().expect("a timestamp"))
        .expect("RFC 3339")
        .with_timezone(&chrono::Utc);
    json!(session_core::session::timestamp(
        at + chrono::Duration::seconds(s)
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_session_shows_when_its_users_own_limits_stop_it_and_a_heartbeat_moves_the_idle_stop(
) {
    let stack = Stack::start().await;
    stack.put_user("ines", true, None).await;
    for (limit, s) in [("idle_timeout_s", "900"), ("max_lifetime_s", "7200")] {
        stack
            .set_user("ines", limit, AttributeValue::N(s.into()))
            .await;
    }
    let api = live_api(&stack);
    let started = call(&api, &Call::new("POST", "/sessions", "ines")).await;
    assert_eq!(
        (&started.body["idle_stop_at"], &started.body["ends_at"]),
        (&Value::Null, &Value::Null),
        "not running yet: {}",
        started.body
    );
    let id = session_id(&started.body);
    stack.bring_task_up(&id).await;
    stack
        .session_where(&id, "running", |s| s.status == Status::Running)
        .await;
    let get = Call::new("GET", &format!("/sessions/{id}"), "ines");

    let before = call(&api, &get).await;
    assert_eq!(before.body["last_activity_at"], Value::Null);
    assert_eq!(
        before.body["idle_stop_at"],
        later(&before.body["started_at"], 900),
        "{}",
        before.body
    );
    assert_eq!(
        before.body["ends_at"],
        later(&before.body["created_at"], 7200)
    );

    let beat = call(
        &api,
        &Call::new("POST", &format!("/sessions/{id}/heartbeat"), "ines"),
    )
    .await;
    assert_eq!((beat.status, &beat.body["recorded"]), (200, &json!(true)));
    assert_eq!(
        beat.body["idle_stop_at"],
        later(&beat.body["last_activity_at"], 900),
        "{}",
        beat.body
    );
    assert_eq!(beat.body["ends_at"], before.body["ends_at"]);
    let after = call(&api, &get).await;
    assert_eq!(after.body["idle_stop_at"], beat.body["idle_stop_at"]);
    let listed = call(&api, &Call::new("GET", "/sessions", "ines")).await;
    assert_eq!(
        listed.body["sessions"][0]["idle_stop_at"],
        beat.body["idle_stop_at"]
    );
}

/// The default template's versioned repositories.
const REPOSITORIES: [&str; 3] = ["api_service", "frontend", "suv_ui"];

/// Pushes the image `build` of `repository` under `tag`: the same build of a repository
/// is the same image (moto derives the digest from the layers).
async fn push(ecr: &aws_sdk_ecr::Client, repository: &str, build: &str, tag: &str) {
    let name: String = format!("{repository}:{build}")
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect();
    let layer = format!("sha256:{name}");
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"digest": layer, "size": 1},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": layer, "size": 1}],
    });
    ecr.put_image()
        .repository_name(repository)
        .image_manifest(manifest.to_string())
        .image_tag(tag)
        .send()
        .await
        .unwrap_or_else(|e| panic!("push {repository}:{tag}: {e:?}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn versions_are_the_tags_of_every_image_newest_first_with_latest_marked() {
    // The stack's repositories hold 1.0.0, tagged `latest` too.
    let stack = Stack::start().await;
    let ecr = aws_sdk_ecr::Client::new(&stack.sdk);
    for repository in REPOSITORIES {
        push(&ecr, repository, "2.0.0", "2.0.0").await;
    }
    // moto records push times in whole seconds: what follows is a second newer.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // A hotfix of an older line, pushed after 2.0.0: newer, though a lower version.
    for repository in REPOSITORIES {
        push(&ecr, repository, "1.9.1", "1.9.1").await;
    }
    // 3.0.0 has no suv_ui image: it cannot be started.
    for repository in ["api_service", "frontend"] {
        push(&ecr, repository, "3.0.0", "3.0.0").await;
    }
    // The release moves `latest` to 2.0.0.
    for repository in REPOSITORIES {
        push(&ecr, repository, "2.0.0", "latest").await;
    }

    let (status, body, headers) = stack
        .http("GET", "/versions", Some("dev:alice"), None, &[])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(body["listed"], true, "{body}");
    let versions = body["versions"].as_array().expect("a versions array");
    let listed: Vec<(&str, bool)> = versions
        .iter()
        .map(|v| {
            (
                v["version"].as_str().unwrap(),
                v["latest"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [("1.9.1", false), ("2.0.0", true), ("1.0.0", false)],
        "{body}"
    );
    let pushed: Vec<chrono::DateTime<chrono::Utc>> = versions
        .iter()
        .map(|v| v["pushed_at"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(pushed[0] > pushed[1] && pushed[1] >= pushed[2], "{body}");

    // A start agrees: the version missing an image is refused.
    stack.put_user("alice", true, None).await;
    let (status, refused, _) = stack
        .http(
            "POST",
            "/sessions",
            Some("dev:alice"),
            Some(json!({"version": "3.0.0"})),
            &[],
        )
        .await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (400, Some("image_not_found")),
        "{refused}"
    );
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngSeed, TestRunner};

    /// The fuzzer's seed: fixed, so that a run can never fail by chance and a failure
    /// is reproduced by running again; `PROPTEST_RNG_SEED` explores other sequences.
    const SEED: u64 = 0x5e55_10f5;

    fn seeded(cases: u32) -> Config {
        let mut config = Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        };
        if config.rng_seed == RngSeed::Random {
            config.rng_seed = RngSeed::Fixed(SEED);
        }
        config
    }

    fn any_path() -> impl Strategy<Value = String> {
        let segment = prop_oneof![
            Just("session".to_owned()),
            Just("sessions".to_owned()),
            Just("heartbeat".to_owned()),
            Just("sess-0192f0c2a1b27c3d8e9f0a1b2c3d4e5f".to_owned()),
            "[a-zA-Z0-9._~-]{0,80}",
            "(%[0-9A-F]{2}){1,6}",
        ];
        prop::collection::vec(segment, 0..5).prop_map(|s| format!("/{}", s.join("/")))
    }

    fn any_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| json!(f)),
            ".{0,40}".prop_map(Value::from),
            prop_oneof![Just("start"), Just("stop"), Just("latest"), Just("1.0.0")]
                .prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("action".to_owned()),
                        Just("version".to_owned()),
                        Just("session_id".to_owned()),
                        Just("user_id".to_owned()),
                        ".{0,12}",
                    ],
                    inner,
                    0..5
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn any_body() -> impl Strategy<Value = Option<String>> {
        prop_oneof![
            Just(None),
            any_value().prop_map(|v| Some(v.to_string())),
            ".{0,200}".prop_map(Some),
            Just(Some("x".repeat(api::MAX_BODY_BYTES + 1))),
        ]
    }

    fn any_call() -> impl Strategy<Value = Call> {
        (
            prop::sample::select(vec!["GET", "POST", "DELETE", "PUT", "PATCH", "OPTIONS"]),
            any_path(),
            prop::option::of(prop_oneof![
                Just("fuzzer".to_owned()),
                Just("".to_owned()),
                ".{1,300}",
            ]),
            any::<bool>(),
            prop::collection::vec(("[a-z_]{1,12}", ".{0,40}"), 0..3),
            prop::option::of("[ -~]{0,140}"),
            any_body(),
        )
            .prop_map(|(method, path, user, admin, query, key, body)| {
                let mut call = Call::new(method, &path, "fuzzer");
                call.user = user;
                call.admin = admin;
                call.query = query;
                call.body = body;
                if let Some(key) = key {
                    call = call.header("idempotency-key", &key);
                }
                call
            })
    }

    #[test]
    fn arbitrary_requests_never_panic_and_never_earn_a_5xx() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let stack = runtime.block_on(Stack::start());
        runtime.block_on(stack.put_user("fuzzer", true, Some(1)));
        let api = live_api(&stack);
        let config = seeded(400);
        let seed = config.rng_seed;
        let mut runner = TestRunner::new(config);
        let statuses = std::sync::Mutex::new(BTreeSet::new());
        runner
            .run(&any_call(), |request| {
                let answer = runtime.block_on(call(&api, &request));
                statuses.lock().unwrap().insert(answer.status);
                prop_assert!(
                    answer.status < 500,
                    "(seed {seed}) {} {} answered {}: {}",
                    request.method,
                    request.path,
                    answer.status,
                    answer.body
                );
                if answer.status >= 400 {
                    prop_assert!(!answer.code().is_empty(), "(seed {seed}) {}", answer.body);
                }
                Ok(())
            })
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        // The generator reached the handler's answers, not only its front door: with
        // the fixed seed this is a fact of the sequence, not a matter of luck.
        let statuses = statuses.into_inner().unwrap();
        for expected in [400, 401, 404] {
            assert!(statuses.contains(&expected), "seed {seed}: {statuses:?}");
        }
    }
}
