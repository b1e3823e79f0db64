//! What a session's life shows to the outside: lifecycle events on the bus and
//! CloudWatch metrics in the logs, and task events replayed in any order.

use aws_sdk_sfn::types::ExecutionStatus;
use serde_json::{json, Value};
use session_core::session::{Reason, Status};
use session_tests::Stack;

fn emf_documents(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|doc| doc.get("_aws").is_some())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_lifecycle_event_reaches_the_bus_with_the_documented_fields() {
    let stack = Stack::start().await;
    stack.put_user("nora", true, Some(2)).await;
    let (id, execution, _) = stack
        .running_session(json!({"user_id": "nora", "version": "1.0.0"}))
        .await;
    stack.complete_await_stop(&id, "user").await;
    assert_eq!(
        stack.execution_ended(&execution).await,
        ExecutionStatus::Succeeded
    );
    let (refused, refused_execution) = stack
        .start_session(json!({"user_id": "nora", "version": "0.0.404"}))
        .await;
    assert_eq!(
        stack.execution_ended(&refused_execution).await,
        ExecutionStatus::Failed
    );

    let events = stack.bus_events().await;
    let of = |detail_type: &str| -> Vec<&Value> {
        events
            .iter()
            .filter(|e| e["detail-type"] == json!(detail_type))
            .collect()
    };
    let documented = [
        "session_id",
        "user_id",
        "version",
        "status",
        "created_at",
        "started_at",
        "stopped_at",
        "stop_reason",
        "failure_cause",
        "task_arn",
        "public_ip",
        "urls",
    ];
    for event in &events {
        assert_eq!(event["source"], json!("session-provisioner"));
        let detail = event["detail"].as_object().expect("a detail object");
        let mut fields: Vec<&str> = detail.keys().map(String::as_str).collect();
        fields.sort_unstable();
        let mut expected = documented.to_vec();
        expected.sort_unstable();
        assert_eq!(fields, expected, "{event}");
        assert!(
            !event.to_string().contains("token"),
            "no task token leaks: {event}"
        );
    }
    let running = of("Session Running");
    assert_eq!(running.len(), 1);
    assert_eq!(running[0]["detail"]["session_id"], json!(id.to_string()));
    assert_eq!(
        running[0]["detail"]["urls"]["api"],
        json!(format!(
            "http://{}:8000",
            running[0]["detail"]["public_ip"].as_str().unwrap()
        ))
    );
    let stopped = of("Session Stopped");
    assert_eq!(stopped.len(), 1);
    assert_eq!(stopped[0]["detail"]["stop_reason"], json!("user"));
    let failed = of("Session Failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(
        failed[0]["detail"]["session_id"],
        json!(refused.to_string())
    );
    assert_eq!(failed[0]["detail"]["stop_reason"], json!("image_not_found"));
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_are_written_in_cloudwatch_embedded_metric_format() {
    let stack = Stack::start().await;
    stack.put_user("olga", true, None).await;
    let (id, execution) = stack.start_session(json!({"user_id": "olga"})).await;
    let (task_arn, _) = stack.bring_task_up(&id).await;
    stack.wait_for_state(&execution, "AwaitStop").await;
    stack
        .session_where(&id, "the stop token", |s| s.stop_token.is_some())
        .await;
    let exited = stack.task_event(&task_arn, "STOPPED", 6).await;
    stack.invoke("task-events", &exited).await;
    assert_eq!(
        stack.execution_ended(&execution).await,
        ExecutionStatus::Succeeded
    );
    let report = stack.reap().await;
    assert!(report.get("active_sessions").is_some(), "{report}");

    let metric = |function: &str, name: &str| -> Vec<Value> {
        emf_documents(&stack.function_stdout(function))
            .into_iter()
            .filter(|doc| {
                doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                    .as_array()
                    .is_some_and(|m| m.iter().any(|m| m["Name"] == json!(name)))
            })
            .collect()
    };
    let start = metric("record", "SessionStartSeconds");
    assert_eq!(start.len(), 1);
    assert_eq!(
        start[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        json!("SessionProvisioner")
    );
    assert!(start[0]["SessionStartSeconds"].as_f64().unwrap() >= 0.0);
    let pull = metric("task-events", "ImagePullSeconds");
    assert_eq!(
        pull[0]["ImagePullSeconds"],
        json!(16.0),
        "pullStartedAt to pullStoppedAt of the event"
    );
    let ended = metric("record", "SessionsEnded");
    assert_eq!(ended.len(), 1);
    assert_eq!(
        (ended[0]["Status"].clone(), ended[0]["Reason"].clone()),
        (json!("stopped"), json!("task_stopped"))
    );
    let reaper = metric("reaper", "ActiveSessions");
    assert_eq!(reaper[0]["ActiveSessions"], json!(0.0));
    assert_eq!(reaper[0]["OrphansFound"], json!(0.0));
    assert_eq!(stack.session(&id).await.unwrap().image_pull_s, Some(16.0));
}

/// The session a stream of task events leaves, in the fields the events decide.
async fn replayed(
    stack: &Stack,
    user: &str,
    order: &[usize],
) -> (Status, Option<Reason>, Option<String>, Option<i64>) {
    let (id, execution) = stack.start_session(json!({"user_id": user})).await;
    let session = stack
        .session_where(&id, "the WaitForIp token", |s| s.ip_token.is_some())
        .await;
    let task_arn = session.task_arn.unwrap();
    stack.give_public_ip(&task_arn).await;
    let mut stopped = stack.task_event(&task_arn, "STOPPED", 6).await;
    stopped["detail"]["startedAt"] = json!("2026-11-25T10:00:25.000Z");
    let stream = [
        stack.task_event(&task_arn, "PENDING", 2).await,
        stack.healthy_running_event(&task_arn, 3).await,
        stopped,
    ];
    for i in order {
        stack.invoke("task-events", &stream[*i]).await;
    }
    stack.execution_ended(&execution).await;
    let s = stack.session(&id).await.unwrap();
    (s.status, s.stop_reason, s.stop_code, s.task_version)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shuffled_replay_with_duplicates_ends_like_the_ordered_stream() {
    let stack = Stack::start().await;
    stack.put_user("pat", true, Some(10)).await;
    let ordered = replayed(&stack, "pat", &[0, 1, 2]).await;
    assert_eq!(
        ordered,
        (
            Status::Stopped,
            Some(Reason::TaskStopped),
            Some("EssentialContainerExited".into()),
            Some(6)
        )
    );
    for order in [
        [2, 1, 0, 1, 2].as_slice(),
        &[1, 2, 0, 2, 1, 0],
        &[0, 2, 2, 1],
        &[1, 1, 0, 2],
    ] {
        assert_eq!(
            replayed(&stack, "pat", order).await,
            ordered,
            "order {order:?}"
        );
    }
}
