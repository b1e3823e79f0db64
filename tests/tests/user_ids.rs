//! A user id is whatever the identity provider says (`sub`): `auth0|…`, e-mail-like
//! ids, spaces, letters of any script. None of it may reach a place AWS restricts
//! (tags, names, paths) or keep a session from starting and stopping. The requests go
//! over raw HTTP, as a client sends them, with the id as UTF-8 in the header.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use session_tests::pump::{self, PumpSettings};
use session_tests::Stack;

const USER: &str = "auth0|Zoë Ångström 山田 @example.com";

fn request(stack: &Stack, method: &str, path: &str) -> (u16, Value) {
    let body = if method == "POST" { "{}" } else { "" };
    let raw = format!(
        "{method} {path} HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer dev:{USER}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let (status, body) = stack.raw_http(raw.as_bytes());
    let body = serde_json::from_str(&body).unwrap_or_else(|_| panic!("JSON: {body}"));
    (status, body)
}

async fn until_status(stack: &Stack, id: &str, wanted: &str) -> Value {
    stack
        .eventually(
            &format!("{id} to be {wanted}"),
            Duration::from_secs(60),
            || async {
                let (status, body) = request(stack, "GET", &format!("/sessions/{id}"));
                assert_eq!(status, 200, "{body}");
                (body["status"] == wanted).then_some(body)
            },
        )
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_id_with_a_bar_an_at_spaces_and_non_latin_letters_starts_and_stops_a_session() {
    let stack = Arc::new(Stack::start().await);
    let pump = pump::spawn(stack.clone(), PumpSettings::default());
    stack.put_user(USER, true, None).await;

    let (status, started) = request(&stack, "POST", "/sessions");
    assert_eq!(status, 202, "{started}");
    let id = started["session_id"].as_str().unwrap().to_owned();
    let running = until_status(&stack, &id, "running").await;
    assert!(
        running["urls"]["api"].as_str().unwrap().ends_with(":8000"),
        "{running}"
    );
    assert_eq!(running["user_id"], USER, "{running}");

    // What AWS keeps about the task names the user by a key, never by the id.
    let task_arn = running["task_arn"].as_str().unwrap();
    let tags = stack
        .ecs
        .list_tags_for_resource()
        .resource_arn(task_arn)
        .send()
        .await
        .expect("task tags");
    assert!(!tags.tags().is_empty());
    for tag in tags.tags() {
        let value = tag.value().unwrap_or_default();
        assert!(
            value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.:/=+-@".contains(c)),
            "tag {:?}={value:?} is not one ECS accepts",
            tag.key()
        );
        assert!(
            !value.contains("auth0") && !value.contains("Zoë"),
            "{value}"
        );
    }
    let task = stack.task(task_arn).await;
    let definition = stack
        .ecs
        .describe_task_definition()
        .task_definition(task.task_definition_arn().unwrap())
        .send()
        .await
        .expect("task definition")
        .task_definition
        .unwrap();
    assert!(definition
        .family()
        .unwrap()
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));

    let (status, body) = request(&stack, "GET", "/sessions");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sessions"][0]["session_id"], id.as_str(), "{body}");

    let (status, body) = request(&stack, "DELETE", &format!("/sessions/{id}"));
    assert_eq!(status, 202, "{body}");
    let stopped = until_status(&stack, &id, "stopped").await;
    assert_eq!(stopped["stop_reason"], "user", "{stopped}");
    assert!(stack.active_slots(USER).await.is_empty());
    assert!(stack
        .all_tasks()
        .await
        .iter()
        .all(|t| t.last_status() == Some("STOPPED")));
    drop(stack);
    pump.await.unwrap();
}
