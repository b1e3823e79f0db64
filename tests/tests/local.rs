//! The local stack as a person uses it (`make local-up`): the HTTP API with the
//! development identity, the pump playing Fargate and EventBridge, and AWS's own view
//! (boto3 through `tools/local-inspect.py`) agreeing with what the API reports.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{json, Value};
use session_tests::pump::{self, PumpSettings};
use session_tests::{repo_root, Stack, StackOptions, Tools};

/// `tools/local-inspect.py`, as the README runs it, against this stack's emulator.
fn inspect(stack: &Stack, session_id: &str) -> Value {
    let out = Command::new(Tools::from_env().python)
        .arg(repo_root().join("tools/local-inspect.py"))
        .arg(session_id)
        .args([
            "--endpoint",
            &stack.info.endpoint,
            "--region",
            &stack.info.region,
        ])
        .output()
        .expect("run local-inspect.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from local-inspect.py")
}

async fn status_via_api(stack: &Stack, id: &str, wanted: &str) -> Value {
    stack
        .eventually(
            &format!("the API to report {wanted}"),
            Duration::from_secs(60),
            || async {
                let (status, body, _) = stack
                    .http(
                        "GET",
                        &format!("/sessions/{id}"),
                        Some("dev:ivy"),
                        None,
                        &[],
                    )
                    .await;
                assert_eq!(status, 200, "{body}");
                (body["status"] == wanted).then_some(body)
            },
        )
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_and_aws_agree_on_a_session_from_start_to_stop() {
    let stack = Arc::new(Stack::start().await);
    let pump = pump::spawn(stack.clone(), PumpSettings::default());
    stack.put_user("ivy", true, None).await;

    let (status, started, _) = stack
        .http(
            "POST",
            "/sessions",
            Some("dev:ivy"),
            Some(json!({"version": "1.0.0"})),
            &[],
        )
        .await;
    assert_eq!(status, 202, "{started}");
    let id = started["session_id"].as_str().unwrap().to_owned();

    // Nobody brings the task up by hand: the pump does, as Fargate would.
    let running = status_via_api(&stack, &id, "running").await;
    assert!(running["urls"]["api"].as_str().unwrap().ends_with(":8000"));
    let aws = inspect(&stack, &id);
    assert_eq!(aws["tasks"].as_array().unwrap().len(), 1, "{aws}");
    assert_eq!(aws["tasks"][0]["taskArn"], running["task_arn"]);
    assert_eq!(aws["tasks"][0]["lastStatus"], "RUNNING");
    assert_eq!(aws["execution"]["status"], "RUNNING");

    let (status, _, _) = stack
        .http(
            "DELETE",
            &format!("/sessions/{id}"),
            Some("dev:ivy"),
            None,
            &[],
        )
        .await;
    assert_eq!(status, 202);
    let stopped = status_via_api(&stack, &id, "stopped").await;
    assert_eq!(stopped["stop_reason"], "user");
    let aws = stack
        .eventually("the execution to end", Duration::from_secs(30), || async {
            let aws = inspect(&stack, &id);
            (aws["execution"]["status"] != "RUNNING").then_some(aws)
        })
        .await;
    assert_eq!(aws["tasks"][0]["lastStatus"], "STOPPED", "{aws}");
    assert_eq!(aws["execution"]["status"], "SUCCEEDED");
    drop(stack);
    pump.await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pump_fires_the_reaper_schedule_which_stops_an_idle_session() {
    let stack = Arc::new(
        Stack::start_with(StackOptions {
            // Every heartbeat written, so that a 1 s idle timeout is a valid one.
            env: vec![("HEARTBEAT_INTERVAL_S", "0".into())],
            ..Default::default()
        })
        .await,
    );
    stack.put_user("ivy", true, None).await;
    stack
        .set_user("ivy", "idle_timeout_s", AttributeValue::N("1".into()))
        .await;
    let pump = pump::spawn(
        stack.clone(),
        PumpSettings {
            reap_every: Duration::from_secs(1),
            ..PumpSettings::default()
        },
    );
    let (_, started, _) = stack
        .http("POST", "/sessions", Some("dev:ivy"), None, &[])
        .await;
    let id = started["session_id"].as_str().unwrap().to_owned();
    let stopped = status_via_api(&stack, &id, "stopped").await;
    assert_eq!(stopped["stop_reason"], "idle", "{stopped}");
    assert!(stopped["started_at"].is_string(), "it ran first: {stopped}");
    drop(stack);
    pump.await.unwrap();
}
