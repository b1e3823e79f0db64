//! The reaper on moto: idle and max-lifetime stops, orphans and lost sessions, and a
//! cost that grows with the active sessions only.

use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use aws_sdk_sfn::types::ExecutionStatus;
use serde_json::json;
use session_core::session::{Reason, SessionId, Status};
use session_tests::{Stack, StackOptions};

async fn assert_stopped(
    stack: &Stack,
    id: &SessionId,
    execution: &str,
    task_arn: &str,
    reason: Reason,
) {
    assert_eq!(
        stack.execution_ended(execution).await,
        ExecutionStatus::Succeeded
    );
    let session = stack.session(id).await.unwrap();
    assert_eq!(session.status, Status::Stopped);
    assert_eq!(session.stop_reason, Some(reason));
    assert_eq!(stack.task(task_arn).await.last_status(), Some("STOPPED"));
    assert!(stack.active_slots(&session.user_id).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_session_is_stopped_and_a_recently_active_one_is_untouched() {
    let stack = Stack::start_with(StackOptions {
        // Every heartbeat written, so that a 2 s idle timeout is a valid one.
        env: vec![("HEARTBEAT_INTERVAL_S", "0".into())],
        ..Default::default()
    })
    .await;
    for user in ["idle", "busy"] {
        stack.put_user(user, true, None).await;
        stack
            .set_user(user, "idle_timeout_s", AttributeValue::N("2".into()))
            .await;
    }
    let (idle, idle_exec, idle_task) = stack.running_session(json!({"user_id": "idle"})).await;
    let (busy, _, busy_task) = stack.running_session(json!({"user_id": "busy"})).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The busy user's client sends its heartbeat through the API.
    let (status, beat, _) = stack
        .http(
            "POST",
            &format!("/sessions/{busy}/heartbeat"),
            Some("dev:busy"),
            None,
            &[],
        )
        .await;
    assert_eq!((status, &beat["recorded"]), (200, &json!(true)), "{beat}");

    let report = stack.reap().await;
    assert_eq!(report["idle"], json!([idle.to_string()]), "{report}");
    assert_stopped(&stack, &idle, &idle_exec, &idle_task, Reason::Idle).await;
    let busy_session = stack.session(&busy).await.unwrap();
    assert_eq!(busy_session.status, Status::Running);
    assert_eq!(stack.task(&busy_task).await.last_status(), Some("RUNNING"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_timeout_below_twice_the_heartbeat_interval_cannot_stop_a_user_who_heartbeats() {
    let stack = Stack::start_with(StackOptions {
        env: vec![("HEARTBEAT_INTERVAL_S", "3".into())],
        ..Default::default()
    })
    .await;
    for user in ["beats", "quiet"] {
        stack.put_user(user, true, None).await;
        // Below the 3 s write interval: heartbeats alone could never keep it alive.
        stack
            .set_user(user, "idle_timeout_s", AttributeValue::N("1".into()))
            .await;
    }
    let (beats, _, _) = stack.running_session(json!({"user_id": "beats"})).await;
    let (quiet, quiet_exec, quiet_task) = stack.running_session(json!({"user_id": "quiet"})).await;
    // One heartbeat a second for 5 s, a reaper run after each.
    let mut stopped_idle = Vec::new();
    for _ in 0..5 {
        let (status, _, _) = stack
            .http(
                "POST",
                &format!("/sessions/{beats}/heartbeat"),
                Some("dev:beats"),
                None,
                &[],
            )
            .await;
        assert_eq!(status, 200);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let report = stack.reap().await;
        stopped_idle.extend(report["idle"].as_array().cloned().unwrap_or_default());
    }
    assert!(
        !stopped_idle.contains(&json!(beats.to_string())),
        "{stopped_idle:?}"
    );
    assert_eq!(stack.session(&beats).await.unwrap().status, Status::Running);
    // The user who sent nothing is stopped once the raised timeout (6 s) has passed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = stack.reap().await;
    stopped_idle.extend(report["idle"].as_array().cloned().unwrap_or_default());
    assert_eq!(stopped_idle, vec![json!(quiet.to_string())]);
    assert_stopped(&stack, &quiet, &quiet_exec, &quiet_task, Reason::Idle).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_past_its_max_lifetime_is_stopped() {
    let stack = Stack::start().await;
    stack.put_user("old", true, None).await;
    stack
        .set_user("old", "max_lifetime_s", AttributeValue::N("2".into()))
        .await;
    stack.put_user("young", true, None).await;
    let (old, old_exec, old_task) = stack.running_session(json!({"user_id": "old"})).await;
    let (young, _, _) = stack.running_session(json!({"user_id": "young"})).await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let report = stack.reap().await;
    assert_eq!(report["max_lifetime"], json!([old.to_string()]), "{report}");
    assert_stopped(&stack, &old, &old_exec, &old_task, Reason::MaxLifetime).await;
    assert_eq!(stack.session(&young).await.unwrap().status, Status::Running);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stop_during_launch_leaves_no_task_and_ends_stopped() {
    let stack = Stack::start_with(StackOptions {
        held_back: vec!["launch"],
        ..Default::default()
    })
    .await;
    stack.put_user("early", true, None).await;
    stack
        .set_user("early", "max_lifetime_s", AttributeValue::N("1".into()))
        .await;
    let (id, execution) = stack.start_session(json!({"user_id": "early"})).await;
    stack
        .session_where(&id, "admitted", |s| s.status == Status::Starting)
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let report = stack.reap().await;
    assert_eq!(report["max_lifetime"], json!([id.to_string()]), "{report}");
    stack.start_function("launch");
    assert_eq!(
        stack.execution_ended(&execution).await,
        ExecutionStatus::Succeeded
    );
    let session = stack.session(&id).await.unwrap();
    assert_eq!(session.status, Status::Stopped);
    assert_eq!(session.stop_reason, Some(Reason::MaxLifetime));
    assert!(
        stack.running_tasks().await.is_empty(),
        "no task was left running"
    );
    assert!(stack.active_slots("early").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stop_while_waiting_for_the_ip_leaves_no_task_and_ends_stopped() {
    let stack = Stack::start().await;
    stack.put_user("waiting", true, None).await;
    stack
        .set_user("waiting", "max_lifetime_s", AttributeValue::N("1".into()))
        .await;
    let (id, execution) = stack.start_session(json!({"user_id": "waiting"})).await;
    let session = stack
        .session_where(&id, "the WaitForIp token", |s| s.ip_token.is_some())
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let report = stack.reap().await;
    assert_eq!(report["max_lifetime"], json!([id.to_string()]), "{report}");
    assert_eq!(
        stack.execution_ended(&execution).await,
        ExecutionStatus::Succeeded
    );
    let after = stack.session(&id).await.unwrap();
    assert_eq!(after.status, Status::Stopped);
    assert_eq!(after.stop_reason, Some(Reason::MaxLifetime));
    assert_eq!(
        stack.task(&session.task_arn.unwrap()).await.last_status(),
        Some("STOPPED")
    );
    assert!(stack.running_tasks().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_whose_execution_cannot_progress_is_resolved_by_the_reaper_within_its_deadline() {
    let stack = Stack::start_with(StackOptions {
        // Launch never answers: the execution runs, but the session can never leave
        // `starting`.
        held_back: vec!["launch"],
        env: vec![("TRANSITION_DEADLINE_S", "2".into())],
        ..Default::default()
    })
    .await;
    stack.put_user("stuck", true, None).await;
    let (id, execution) = stack.start_session(json!({"user_id": "stuck"})).await;
    stack
        .session_where(&id, "admitted", |s| s.status == Status::Starting)
        .await;

    let report = stack.reap().await;
    assert_eq!(report["lost"], json!([]), "inside its deadline: {report}");
    assert_eq!(stack.session(&id).await.unwrap().status, Status::Starting);

    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        stack.execution_status(&execution).await,
        ExecutionStatus::Running,
        "the execution still runs: only the reaper can end this session"
    );
    let report = stack.reap().await;
    assert_eq!(report["lost"], json!([id.to_string()]), "{report}");
    let session = stack.session(&id).await.unwrap();
    assert_eq!(session.status, Status::Failed);
    assert_eq!(session.stop_reason, Some(Reason::Lost));
    assert!(stack.running_tasks().await.is_empty());
    assert!(stack.active_slots("stuck").await.is_empty());

    // Launch answers at last (moto, unlike AWS, ends a stopped execution only once the
    // invocation it waits on returns): the execution was aborted, not carried on, the
    // late Launch starts nothing, and the freed slot takes the user's next session.
    stack.start_function("launch");
    assert_eq!(
        stack.execution_ended(&execution).await,
        ExecutionStatus::Aborted
    );
    let (next, _, next_task) = stack.running_session(json!({"user_id": "stuck"})).await;
    assert_eq!(stack.active_slots("stuck").await, vec![next.to_string()]);
    let running: Vec<String> = stack
        .running_tasks()
        .await
        .iter()
        .filter_map(|t| t.task_arn().map(str::to_owned))
        .collect();
    assert_eq!(running, vec![next_task]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_orphan_task_is_stopped_and_a_running_session_whose_task_vanished_is_lost() {
    let stack = Stack::start_with(StackOptions {
        env: vec![("ORPHAN_GRACE_S", "0".into())],
        ..Default::default()
    })
    .await;
    stack.put_user("owner", true, None).await;
    let (id, execution, task_arn) = stack.running_session(json!({"user_id": "owner"})).await;

    // A task started by us whose session never existed (or ended long ago).
    let definition = stack
        .task(&task_arn)
        .await
        .task_definition_arn()
        .unwrap()
        .to_owned();
    let orphan = stack
        .ecs
        .run_task()
        .cluster(&stack.info.cluster)
        .task_definition(definition)
        .started_by("sess-0000orphan")
        .launch_type(aws_sdk_ecs::types::LaunchType::Fargate)
        .network_configuration(
            aws_sdk_ecs::types::NetworkConfiguration::builder()
                .awsvpc_configuration(
                    aws_sdk_ecs::types::AwsVpcConfiguration::builder()
                        .subnets(&stack.info.subnets[0])
                        .security_groups(&stack.info.security_group)
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap()
        .tasks()[0]
        .task_arn()
        .unwrap()
        .to_owned();
    // The session's task vanishes without an event reaching us.
    stack
        .ecs
        .stop_task()
        .cluster(&stack.info.cluster)
        .task(&task_arn)
        .send()
        .await
        .unwrap();

    let report = stack.reap().await;
    assert_eq!(report["orphans"], json!([orphan]), "{report}");
    assert_eq!(report["lost"], json!([id.to_string()]), "{report}");
    assert_eq!(stack.task(&orphan).await.last_status(), Some("STOPPED"));
    assert_stopped(&stack, &id, &execution, &task_arn, Reason::Lost).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_whose_execution_ended_is_closed_lost_and_its_task_stopped() {
    let stack = Stack::start_with(StackOptions {
        env: vec![("ORPHAN_GRACE_S", "0".into())],
        ..Default::default()
    })
    .await;
    stack.put_user("abandoned", true, None).await;
    let (id, execution, task_arn) = stack.running_session(json!({"user_id": "abandoned"})).await;
    stack
        .sfn
        .stop_execution()
        .execution_arn(&execution)
        .send()
        .await
        .unwrap();
    // Running, active: nothing about the session calls for a look at its execution.
    let report = stack.reap().await;
    assert_eq!(report["lost"], json!([]), "{report}");

    // The user's stop finds AwaitStop's token closed: the session stays `stopping`, and
    // once that has lasted a few minutes the reaper looks at its execution.
    let (status, body, _) = stack
        .http(
            "DELETE",
            &format!("/sessions/{id}"),
            Some("dev:abandoned"),
            None,
            &[],
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let minutes_ago = chrono::Utc::now() - chrono::Duration::minutes(10);
    stack
        .ddb
        .update_item()
        .table_name(&stack.info.sessions_table)
        .key("session_id", AttributeValue::S(id.to_string()))
        .update_expression("SET status_changed_at = :t")
        .expression_attribute_values(
            ":t",
            AttributeValue::S(session_core::session::timestamp(minutes_ago)),
        )
        .send()
        .await
        .unwrap();

    let report = stack.reap().await;
    assert_eq!(report["lost"], json!([id.to_string()]), "{report}");
    let session = stack.session(&id).await.unwrap();
    assert_eq!(session.status, Status::Stopped);
    assert_eq!(session.stop_reason, Some(Reason::User));
    assert_eq!(stack.task(&task_arn).await.last_status(), Some("STOPPED"));
    assert!(stack.active_slots("abandoned").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_reaper_reads_only_active_sessions_among_ten_thousand_finished_ones() {
    let stack = Stack::start().await;
    let finished: Vec<WriteRequest> = (0..10_000)
        .map(|i| {
            let item = [
                (
                    "session_id",
                    AttributeValue::S(format!("sess-finished-{i:05}")),
                ),
                ("user_id", AttributeValue::S(format!("user-{}", i % 100))),
                ("version", AttributeValue::S("latest".into())),
                ("status", AttributeValue::S("stopped".into())),
                (
                    "created_at",
                    AttributeValue::S("2026-01-01T00:00:00.000Z".into()),
                ),
                ("stop_reason", AttributeValue::S("user".into())),
            ];
            let put = PutRequest::builder()
                .set_item(Some(
                    item.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
                ))
                .build()
                .unwrap();
            WriteRequest::builder().put_request(put).build()
        })
        .collect();
    for batch in finished.chunks(25) {
        stack
            .ddb
            .batch_write_item()
            .request_items(&stack.info.sessions_table, batch.to_vec())
            .send()
            .await
            .unwrap();
    }
    let now = session_core::session::timestamp(chrono::Utc::now());
    for i in 0..20 {
        let id = format!("sess-active-{i:02}");
        stack
            .ddb
            .put_item()
            .table_name(&stack.info.sessions_table)
            .item("session_id", AttributeValue::S(id))
            .item("user_id", AttributeValue::S(format!("active-{i}")))
            .item("active_user_id", AttributeValue::S(format!("active-{i}")))
            .item("version", AttributeValue::S("latest".into()))
            .item("status", AttributeValue::S("provisioning".into()))
            .item("created_at", AttributeValue::S(now.clone()))
            .send()
            .await
            .unwrap();
    }

    let report = stack.reap().await;
    assert_eq!(report["active_sessions"], json!(20), "{report}");
    assert_eq!(
        report["sessions_read"],
        json!(20),
        "only the active index was read: {report}"
    );
}
