//! AWS's real answers, injected into the emulator (which never gives them on its own):
//! each session still ends where it should, with nothing stuck, no task left running
//! and no slot held. The pump plays Fargate and EventBridge, including Lambda's retries
//! of an asynchronous invocation that failed; the reaper runs only when a test says so.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sfn::types::ExecutionStatus;
use serde_json::{json, Value};
use session_core::session::{timestamp, Reason, Session, SessionId, Status};
use session_core::template::user_key;
use session_tests::faults::{self, SDK_ATTEMPTS};
use session_tests::pump::{self, PumpSettings};
use session_tests::{Stack, StackOptions};

/// A stack with its pump running; scheduled reaper runs are left out.
async fn stack_with_pump(options: StackOptions) -> (Arc<Stack>, tokio::task::JoinHandle<()>) {
    let stack = Arc::new(Stack::start_with(options).await);
    let pump = pump::spawn(
        stack.clone(),
        PumpSettings {
            reap_every: Duration::from_secs(24 * 60 * 60),
            ..Default::default()
        },
    );
    (stack, pump)
}

async fn running(stack: &Stack, id: &SessionId) -> Session {
    stack
        .session_where(id, "the session to run, its stop token stored", |s| {
            s.status == Status::Running && s.stop_token.is_some()
        })
        .await
}

/// Every one of `sessions` ended as `status`, no task of the cluster still running, and
/// none of `users` holding a slot.
async fn nothing_left(stack: &Stack, sessions: &[SessionId], status: Status, users: &[&str]) {
    for id in sessions {
        let session = stack
            .session_where(id, "the session to end", |s| s.status.is_terminal())
            .await;
        assert_eq!(session.status, status, "{id}: {session:?}");
    }
    stack
        .eventually("every task stopped", Duration::from_secs(60), || async {
            let tasks = stack.all_tasks().await;
            tasks
                .iter()
                .all(|t| t.last_status() == Some("STOPPED"))
                .then_some(())
        })
        .await;
    for user in users {
        stack
            .eventually(
                &format!("{user}'s slots free"),
                Duration::from_secs(60),
                || async { stack.active_slots(user).await.is_empty().then_some(()) },
            )
            .await;
    }
}

fn fault<'a>(faults: &'a [Value], action: &str, code: &str) -> &'a Value {
    faults::find(faults, action, Some(code))
        .unwrap_or_else(|| panic!("no {action} fault in {faults:?}"))
}

async fn stop_by_user(stack: &Stack, user: &str, id: &SessionId) {
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

async fn set_time(stack: &Stack, id: &SessionId, attributes: &[&str], ago: chrono::Duration) {
    let at = AttributeValue::S(timestamp(chrono::Utc::now() - ago));
    let set: Vec<String> = (0..attributes.len())
        .map(|i| format!("#a{i} = :t"))
        .collect();
    let mut update = stack
        .ddb
        .update_item()
        .table_name(&stack.info.sessions_table)
        .key("session_id", AttributeValue::S(id.to_string()))
        .update_expression(format!("SET {}", set.join(", ")))
        .expression_attribute_values(":t", at);
    for (i, attribute) in attributes.iter().enumerate() {
        update = update.expression_attribute_names(format!("#a{i}"), *attribute);
    }
    update.send().await.expect("set the session's times");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_access_point_that_already_exists_is_taken_from_efs_answer_and_the_session_runs() {
    let (stack, pump) = stack_with_pump(StackOptions::default()).await;
    stack.put_user("ada", true, None).await;
    // A launch that died after CreateAccessPoint succeeded: the access point exists
    // under the user's client token, but its id never reached the users item.
    let existing = stack
        .efs
        .create_access_point()
        .file_system_id(&stack.info.file_system_id)
        .client_token(format!("user-{}", user_key("ada")))
        .send()
        .await
        .expect("the earlier launch's access point")
        .access_point_id
        .expect("an id");
    stack.inject_fault(faults::access_point_already_exists(&existing, 1));

    let (id, execution) = stack.start_session(json!({"user_id": "ada"})).await;
    running(&stack, &id).await;
    let user = stack.user_item("ada").await;
    assert_eq!(
        user.get("efs_access_point_id"),
        Some(&AttributeValue::S(existing.clone()))
    );
    let faults = stack.injected_faults();
    assert_eq!(
        fault(&faults, "CreateAccessPoint", "AccessPointAlreadyExists")["fired"],
        1
    );
    let access_points = stack
        .efs
        .describe_access_points()
        .file_system_id(&stack.info.file_system_id)
        .send()
        .await
        .unwrap();
    assert_eq!(access_points.access_points().len(), 1, "no second one");

    stack.complete_await_stop(&id, "user").await;
    assert_eq!(
        stack.execution_ended(&execution).await,
        ExecutionStatus::Succeeded
    );
    nothing_left(&stack, &[id], Status::Stopped, &["ada"]).await;
    pump.abort();
}

/// The RUNNING event's first delivery writes the task state, then fails on `action`
/// (every attempt of the SDK throttled); Lambda's retry of the event finds the state
/// already written and completes WaitForIp.
async fn a_throttle_after_the_running_write_is_recovered(user: &str, service: &str, action: &str) {
    let (stack, pump) = stack_with_pump(StackOptions::default()).await;
    stack.put_user(user, true, None).await;
    stack.inject_fault(faults::throttled(service, action, SDK_ATTEMPTS));

    let (id, execution) = stack.start_session(json!({ "user_id": user })).await;
    let session = running(&stack, &id).await;
    assert!(session.public_ip.is_some(), "{session:?}");
    let faults = stack.injected_faults();
    let throttle = &faults[0];
    assert_eq!(throttle["fired"], SDK_ATTEMPTS, "{throttle}");
    assert!(
        throttle["seen"].as_u64() > throttle["fired"].as_u64(),
        "the retried delivery called {action} again: {throttle}"
    );

    stack.complete_await_stop(&id, "user").await;
    assert_eq!(
        stack.execution_ended(&execution).await,
        ExecutionStatus::Succeeded
    );
    nothing_left(&stack, &[id], Status::Stopped, &[user]).await;
    pump.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn describe_network_interfaces_throttled_after_the_running_write_still_brings_the_session_to_running(
) {
    a_throttle_after_the_running_write_is_recovered("nina", "ec2", "DescribeNetworkInterfaces")
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn send_task_success_throttled_after_the_running_write_still_brings_the_session_to_running() {
    a_throttle_after_the_running_write_is_recovered("sven", "stepfunctions", "SendTaskSuccess")
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_throttled_describe_execution_in_a_reaper_run_over_fifty_sessions_leaves_the_others_reaped(
) {
    const SESSIONS: usize = 50;
    const ABANDONED: usize = 10;
    let (stack, pump) = stack_with_pump(StackOptions::default()).await;
    let users: Vec<String> = (0..SESSIONS).map(|i| format!("crowd-{i:02}")).collect();
    let mut sessions = Vec::new();
    for user in &users {
        stack.put_user(user, true, None).await;
        let (id, execution) = stack.start_session(json!({ "user_id": user })).await;
        sessions.push((user.clone(), id, execution));
    }
    for (_, id, _) in &sessions {
        stack
            .eventually(
                "every session running",
                Duration::from_secs(180),
                || async {
                    stack
                        .session(id)
                        .await
                        .filter(|s| s.status == Status::Running && s.stop_token.is_some())
                },
            )
            .await;
    }

    // Ten sessions whose execution an operator stopped: their users' stops find the
    // token closed, and they have been `stopping` for ten minutes since (so they were
    // created at least that long ago).
    let (abandoned, idle) = sessions.split_at(ABANDONED);
    for (user, id, execution) in abandoned {
        stack
            .sfn
            .stop_execution()
            .execution_arn(execution)
            .send()
            .await
            .unwrap();
        stop_by_user(&stack, user, id).await;
        set_time(
            &stack,
            id,
            &["created_at", "status_changed_at"],
            chrono::Duration::minutes(10),
        )
        .await;
    }
    // Forty healthy sessions, idle for an hour.
    for (_, id, _) in idle {
        set_time(
            &stack,
            id,
            &["started_at", "last_activity_at"],
            chrono::Duration::hours(1),
        )
        .await;
    }
    // One lookup throttled through all the SDK's attempts.
    stack.inject_fault(faults::throttled(
        "stepfunctions",
        "DescribeExecution",
        SDK_ATTEMPTS,
    ));

    let ids = |list: &[(String, SessionId, String)]| -> BTreeSet<String> {
        list.iter().map(|(_, id, _)| id.to_string()).collect()
    };
    let listed = |report: &Value, key: &str| -> BTreeSet<String> {
        report[key]
            .as_array()
            .unwrap_or_else(|| panic!("no {key} in {report}"))
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    let first = stack.reap().await;
    assert_eq!(first["active_sessions"], SESSIONS, "{first}");
    assert_eq!(first["errors"], 1, "one session's lookup failed: {first}");
    assert_eq!(listed(&first, "idle"), ids(idle), "{first}");
    let lost = listed(&first, "lost");
    assert_eq!(lost.len(), ABANDONED - 1, "{first}");
    assert!(lost.is_subset(&ids(abandoned)), "{first}");

    // The next run takes the one it could not judge.
    let second = stack.reap().await;
    assert_eq!(second["errors"], 0, "{second}");
    let retried = listed(&second, "lost");
    assert_eq!(
        lost.union(&retried).cloned().collect::<BTreeSet<_>>(),
        ids(abandoned),
        "{second}"
    );
    let faults = stack.injected_faults();
    let throttle = fault(&faults, "DescribeExecution", "ThrottlingException");
    assert_eq!(throttle["fired"], SDK_ATTEMPTS, "{throttle}");
    assert_eq!(
        throttle["seen"].as_u64(),
        Some(SDK_ATTEMPTS + ABANDONED as u64),
        "executions were looked up for the ten sessions in doubt only: {throttle}"
    );

    for (_, id, execution) in idle {
        assert_eq!(
            stack.execution_ended(execution).await,
            ExecutionStatus::Succeeded,
            "{id}"
        );
        assert_eq!(
            stack.session(id).await.unwrap().stop_reason,
            Some(Reason::Idle)
        );
    }
    let all: Vec<SessionId> = sessions.iter().map(|(_, id, _)| id.clone()).collect();
    let users: Vec<&str> = users.iter().map(String::as_str).collect();
    nothing_left(&stack, &all, Status::Stopped, &users).await;
    pump.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transaction_conflict_at_the_api_is_retried_in_the_request_and_one_that_lasts_answers_busy(
) {
    let (stack, pump) = stack_with_pump(StackOptions::default()).await;
    let start = |user: &'static str| {
        let stack = stack.clone();
        async move {
            let token = format!("dev:{user}");
            stack
                .http(
                    "POST",
                    "/sessions",
                    Some(&token),
                    Some(json!({})),
                    &[("idempotency-key", "start-1")],
                )
                .await
        }
    };
    let fired = |stack: &Stack| {
        fault(
            &stack.injected_faults(),
            "TransactWriteItems",
            "TransactionCanceledException",
        )["fired"]
            .as_u64()
            .unwrap()
    };

    // Another transaction held the user once: the request tries again and starts.
    stack.put_user("tom", true, None).await;
    stack.inject_fault(faults::transaction_conflict(2, 1, 1));
    let (status, body, _) = start("tom").await;
    assert_eq!(status, 202, "{body}");
    let tom = SessionId::parse(body["session_id"].as_str().unwrap()).unwrap();
    running(&stack, &tom).await;
    assert_eq!(stack.active_slots("tom").await, vec![tom.to_string()]);
    assert_eq!(fired(&stack), 1);

    // Held through every attempt of the request: busy, nothing taken.
    stack.clear_faults();
    stack.put_user("toby", true, None).await;
    let attempts = u64::from(session_aws::dynamodb::OPEN_ATTEMPTS);
    stack.inject_fault(faults::transaction_conflict(2, 1, attempts));
    let (status, body, headers) = start("toby").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    assert_eq!(headers.get("retry-after").map(String::as_str), Some("1"));
    assert_eq!(fired(&stack), attempts);
    assert!(stack.active_slots("toby").await.is_empty());

    // The client retries with the same key, as the answer asks.
    let (status, body, _) = start("toby").await;
    assert_eq!(status, 202, "{body}");
    let toby = SessionId::parse(body["session_id"].as_str().unwrap()).unwrap();
    running(&stack, &toby).await;
    assert_eq!(stack.active_slots("toby").await, vec![toby.to_string()]);

    stop_by_user(&stack, "tom", &tom).await;
    stop_by_user(&stack, "toby", &toby).await;
    nothing_left(&stack, &[tom, toby], Status::Stopped, &["tom", "toby"]).await;
    pump.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transaction_conflict_in_the_authorize_step_is_retried_and_the_session_holds_one_slot() {
    let (stack, pump) = stack_with_pump(StackOptions::default()).await;
    stack.put_user("tess", true, None).await;
    stack.inject_fault(faults::transaction_conflict(2, 1, 2));

    // Started as an operator would, so that the state machine's Authorize meets it.
    let (id, execution) = stack.start_session(json!({"user_id": "tess"})).await;
    running(&stack, &id).await;
    assert_eq!(stack.active_slots("tess").await, vec![id.to_string()]);
    let faults = stack.injected_faults();
    assert_eq!(
        fault(
            &faults,
            "TransactWriteItems",
            "TransactionCanceledException"
        )["fired"],
        2
    );
    let authorize_runs = stack
        .states_entered(&execution)
        .await
        .iter()
        .filter(|s| *s == "Authorize")
        .count();
    assert_eq!(
        authorize_runs, 1,
        "retried within the state, not re-entered"
    );

    stop_by_user(&stack, "tess", &id).await;
    nothing_left(&stack, &[id], Status::Stopped, &["tess"]).await;
    pump.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transaction_conflict_that_outlasts_the_retries_fails_the_start_clearly_and_holds_no_slot(
) {
    let (stack, pump) = stack_with_pump(StackOptions::default()).await;
    stack.put_user("tia", true, None).await;
    stack.inject_fault(faults::transaction_conflict(2, 1, 100));

    let (id, execution) = stack.start_session(json!({"user_id": "tia"})).await;
    stack.execution_ended(&execution).await;
    let session = stack
        .session_where(&id, "the session failed", |s| s.status == Status::Failed)
        .await;
    let cause = session.failure_cause.unwrap_or_default();
    assert!(cause.contains("TransactionConflict"), "{cause}");
    nothing_left(&stack, &[id], Status::Failed, &["tia"]).await;
    assert!(stack.all_tasks().await.is_empty(), "nothing was launched");
    pump.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deregistered_task_definition_is_replaced_and_the_next_start_runs_on_a_fresh_revision() {
    let (stack, pump) = stack_with_pump(StackOptions::default()).await;
    stack.put_user("ted", true, None).await;
    let (first, execution) = stack.start_session(json!({"user_id": "ted"})).await;
    let task_arn = running(&stack, &first).await.task_arn.unwrap();
    let old = stack
        .task(&task_arn)
        .await
        .task_definition_arn()
        .unwrap()
        .to_owned();
    stack.complete_await_stop(&first, "user").await;
    stack.execution_ended(&execution).await;
    nothing_left(&stack, &[first], Status::Stopped, &["ted"]).await;

    // Someone cleans up task definitions (or deregisters one by hand).
    stack
        .ecs
        .deregister_task_definition()
        .task_definition(&old)
        .send()
        .await
        .unwrap();

    let (second, execution) = stack.start_session(json!({"user_id": "ted"})).await;
    let task_arn = running(&stack, &second).await.task_arn.unwrap();
    let fresh = stack
        .task(&task_arn)
        .await
        .task_definition_arn()
        .unwrap()
        .to_owned();
    assert_ne!(fresh, old);
    let cached = match stack.user_item("ted").await.remove("task_definitions") {
        Some(AttributeValue::M(cached)) => cached,
        other => panic!("no task definition cache: {other:?}"),
    };
    assert_eq!(
        cached.values().cloned().collect::<Vec<_>>(),
        vec![AttributeValue::S(fresh)],
        "the inactive revision's entry was replaced"
    );

    stack.complete_await_stop(&second, "user").await;
    stack.execution_ended(&execution).await;
    nothing_left(&stack, &[second], Status::Stopped, &["ted"]).await;
    pump.abort();
}
