//! The reaper on moto: idle and max-lifetime stops, orphans and lost sessions, and a
//! cost that grows with the active sessions only.

use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use aws_sdk_sfn::types::ExecutionStatus;
use chrono::{DateTime, Utc};
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
async fn the_reaper_stops_a_session_as_idle_from_the_idle_stop_at_the_api_shows_and_not_before() {
    let stack = Stack::start_with(StackOptions {
        // Every heartbeat written, so that a short idle timeout is a valid one.
        env: vec![("HEARTBEAT_INTERVAL_S", "0".into())],
        ..Default::default()
    })
    .await;
    stack.put_user("shown", true, None).await;
    // Long enough for a reaper run to end well before it.
    stack
        .set_user("shown", "idle_timeout_s", AttributeValue::N("10".into()))
        .await;
    let (id, execution, task) = stack.running_session(json!({"user_id": "shown"})).await;
    let (status, beat, _) = stack
        .http(
            "POST",
            &format!("/sessions/{id}/heartbeat"),
            Some("dev:shown"),
            None,
            &[],
        )
        .await;
    assert_eq!((status, &beat["recorded"]), (200, &json!(true)), "{beat}");
    let (status, shown, _) = stack
        .http(
            "GET",
            &format!("/sessions/{id}"),
            Some("dev:shown"),
            None,
            &[],
        )
        .await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["idle_stop_at"], beat["idle_stop_at"]);
    let idle_stop_at: DateTime<Utc> = shown["idle_stop_at"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("an idle_stop_at: {shown}"));

    let report = stack.reap().await;
    assert!(
        Utc::now() < idle_stop_at,
        "the run ended after {idle_stop_at}: nothing is proven"
    );
    assert_eq!(report["idle"], json!([]), "{report}");
    assert_eq!(stack.session(&id).await.unwrap().status, Status::Running);

    let wait = (idle_stop_at - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait).await;
    let report = stack.reap().await;
    assert_eq!(report["idle"], json!([id.to_string()]), "{report}");
    assert_stopped(&stack, &id, &execution, &task, Reason::Idle).await;
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

/// Active sessions of the scale test, each with its own running task.
const AT_SCALE: usize = 2_000;
/// Their users: ten sessions each, read in batches of 100.
const AT_SCALE_USERS: usize = 200;

fn scale_user(i: usize) -> String {
    format!("scale-user-{:03}", i % AT_SCALE_USERS)
}

/// Starts a task of the stack's cluster for `started_by`, as Launch does.
async fn run_task(stack: &Stack, definition: &str, started_by: &str) -> String {
    let out = stack
        .ecs
        .run_task()
        .cluster(&stack.info.cluster)
        .task_definition(definition)
        .started_by(started_by)
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
        .unwrap_or_else(|e| panic!("RunTask for {started_by}: {e:?}"));
    out.tasks()[0].task_arn().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_reaper_run_judges_two_thousand_active_sessions_through_throttled_calls() {
    use futures::stream::{self, StreamExt};
    use session_tests::faults;

    let stack = Stack::start_with(StackOptions {
        env: vec![
            ("ORPHAN_GRACE_S", "0".into()),
            ("IDLE_TIMEOUT_S", (4 * 3600).to_string()),
        ],
        // More tasks than a loopback /24 holds; none of them serves anything.
        task_network: Some("10.64.0.0/20".into()),
        ..Default::default()
    })
    .await;
    let definition = stack
        .ecs
        .register_task_definition()
        .family("scale-sessions")
        .requires_compatibilities(aws_sdk_ecs::types::Compatibility::Fargate)
        .network_mode(aws_sdk_ecs::types::NetworkMode::Awsvpc)
        .cpu("256")
        .memory("512")
        .container_definitions(
            aws_sdk_ecs::types::ContainerDefinition::builder()
                .name("api")
                .image("api:latest")
                .build(),
        )
        .send()
        .await
        .unwrap()
        .task_definition()
        .unwrap()
        .task_definition_arn()
        .unwrap()
        .to_owned();

    // The users: two of them stop idle sessions after an hour (the rest after the
    // stack's four), which only a run that read them can know.
    for i in 0..AT_SCALE_USERS {
        stack.put_user(&scale_user(i), true, None).await;
    }
    for i in 0..2 {
        stack
            .set_user(
                &scale_user(i),
                "idle_timeout_s",
                AttributeValue::N("3600".into()),
            )
            .await;
    }
    // Every session with its task, as Launch and task-events leave a running one.
    let ids: Vec<String> = (0..AT_SCALE)
        .map(|i| format!("sess-scale-{i:04}"))
        .collect();
    let tasks: Vec<String> = stream::iter(ids.iter())
        .map(|id| run_task(&stack, &definition, id))
        .buffered(16)
        .collect()
        .await;
    let at = |ago: chrono::Duration| session_core::session::timestamp(chrono::Utc::now() - ago);
    let (created, active) = (
        at(chrono::Duration::minutes(150)),
        at(chrono::Duration::minutes(120)),
    );
    let items: Vec<WriteRequest> = ids
        .iter()
        .zip(&tasks)
        .enumerate()
        .map(|(i, (id, task))| {
            let item = [
                ("session_id", AttributeValue::S(id.clone())),
                ("user_id", AttributeValue::S(scale_user(i))),
                ("active_user_id", AttributeValue::S(scale_user(i))),
                ("version", AttributeValue::S("latest".into())),
                ("status", AttributeValue::S("running".into())),
                ("created_at", AttributeValue::S(created.clone())),
                ("status_changed_at", AttributeValue::S(active.clone())),
                ("started_at", AttributeValue::S(active.clone())),
                ("last_activity_at", AttributeValue::S(active.clone())),
                ("task_arn", AttributeValue::S(task.clone())),
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
    for batch in items.chunks(25) {
        stack
            .ddb
            .batch_write_item()
            .request_items(&stack.info.sessions_table, batch.to_vec())
            .send()
            .await
            .unwrap();
    }
    // Ten sessions lose their task without an event reaching us; five tasks belong to
    // no session at all.
    let lost: Vec<String> = ids[1010..1020].to_vec();
    for task in &tasks[1010..1020] {
        stack
            .ecs
            .stop_task()
            .cluster(&stack.info.cluster)
            .task(task)
            .send()
            .await
            .unwrap();
    }
    let mut orphans = Vec::new();
    for k in 0..5 {
        orphans.push(run_task(&stack, &definition, &format!("sess-orphan-{k}")).await);
    }
    let idle: Vec<String> = (0..AT_SCALE)
        .filter(|i| i % AT_SCALE_USERS < 2)
        .map(|i| ids[i].clone())
        .collect();

    // In the middle of the run, AWS throttles: the 11th DescribeTasks (of 20) and the
    // second BatchGetItem (of 2), each twice, and the SDK's third attempt passes.
    for (service, action, after) in [
        ("ecs", "DescribeTasks", 10),
        ("dynamodb", "BatchGetItem", 1),
    ] {
        let mut throttle = faults::throttled(service, action, 2);
        throttle["after"] = json!(after);
        stack.inject_fault(throttle);
    }
    let calls = [
        ("ecs", "ListTasks"),
        ("ecs", "DescribeTasks"),
        ("ecs", "StopTask"),
        ("dynamodb", "Scan"),
        ("dynamodb", "BatchGetItem"),
        ("dynamodb", "GetItem"),
        ("dynamodb", "UpdateItem"),
        ("dynamodb", "TransactWriteItems"),
        ("stepfunctions", "SendTaskSuccess"),
        ("stepfunctions", "SendTaskFailure"),
        ("stepfunctions", "DescribeExecution"),
    ];
    for (service, action) in calls {
        stack.inject_fault(faults::count(service, action));
    }
    let started = std::time::Instant::now();
    let report = stack.reap().await;
    let took = started.elapsed();

    assert_eq!(report["active_sessions"], json!(AT_SCALE), "{report}");
    assert_eq!(
        report["judged"],
        json!(AT_SCALE),
        "every session decided: {report}"
    );
    assert_eq!(report["errors"], json!(0), "{report}");
    // The index is read in its own order: compare as sets.
    let sorted = |key: &str| {
        let mut ids: Vec<String> = serde_json::from_value(report[key].clone()).unwrap();
        ids.sort();
        ids
    };
    orphans.sort();
    assert_eq!(sorted("idle"), idle, "{report}");
    assert_eq!(sorted("lost"), lost, "{report}");
    assert_eq!(sorted("orphans"), orphans, "{report}");
    let faults = stack.injected_faults();
    for action in ["DescribeTasks", "BatchGetItem"] {
        let throttle =
            faults::find(&faults, action, Some("ThrottlingException")).expect("the throttle");
        assert_eq!(
            throttle["fired"],
            json!(2),
            "{action} was throttled: {throttle}"
        );
    }
    for id in idle.iter().chain(&lost) {
        let session = stack.session(&SessionId::parse(id).unwrap()).await.unwrap();
        assert_eq!(session.status, Status::Stopping, "{id}");
    }

    println!(
        "one reaper run over {AT_SCALE} active sessions ({AT_SCALE_USERS} users, {} tasks): {:.2} s; \
         idle {}, lost {}, orphans {}, errors {}",
        AT_SCALE + orphans.len() - lost.len(),
        took.as_secs_f64(),
        idle.len(),
        lost.len(),
        orphans.len(),
        report["errors"]
    );
    println!("AWS calls of the run (the emulator's count, retries included):");
    for (service, action) in calls {
        let seen = faults
            .iter()
            .filter(|f| f["service"] == service && f["action"] == action && f["code"].is_null())
            .map(|f| f["seen"].as_u64().unwrap_or(0))
            .sum::<u64>();
        println!("  {service:<14} {action:<20} {seen}");
    }
    println!("  (DescribeTasks and BatchGetItem each throttled twice, and retried by the SDK)");
}
