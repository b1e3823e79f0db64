//! Never two PostgreSQL servers on one user's data: a task asked to stop runs on until
//! its containers have exited (Fargate waits up to the stop timeout), and its
//! PostgreSQL writes to the user's data until then. The user's slot, and so their
//! next session on the same data, waits for the task's STOPPED.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use session_core::session::SessionId;
use session_tests::pump::{self, PumpSettings};
use session_tests::Stack;

const USER: &str = "uma";

/// A stop delay no test outlasts: the task stops when the test sets the delay to 0.
const HELD: Duration = Duration::from_secs(3600);

async fn start(stack: &Stack) -> (u16, Value) {
    let (status, body, _) = stack
        .http(
            "POST",
            "/sessions",
            Some(&format!("dev:{USER}")),
            Some(json!({})),
            &[],
        )
        .await;
    (status, body)
}

async fn status_via_api(stack: &Stack, id: &str, wanted: &str, within: Duration) -> Value {
    stack
        .eventually(&format!("{id} to be {wanted}"), within, || async {
            let (status, body, _) = stack
                .http(
                    "GET",
                    &format!("/sessions/{id}"),
                    Some(&format!("dev:{USER}")),
                    None,
                    &[],
                )
                .await;
            assert_eq!(status, 200, "{body}");
            (body["status"] == wanted).then_some(body)
        })
        .await
}

/// The tasks of the cluster whose last status is not STOPPED.
async fn live_tasks(stack: &Stack) -> Vec<String> {
    stack
        .all_tasks()
        .await
        .iter()
        .filter(|t| t.last_status() != Some("STOPPED"))
        .filter_map(|t| t.task_arn().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_session_waits_until_the_old_task_has_stopped_and_then_starts() {
    let stack = Arc::new(Stack::start().await);
    let pump = pump::spawn(stack.clone(), PumpSettings::default());
    stack.put_user(USER, true, None).await;
    // Tasks asked to stop keep running until the test lets them go.
    stack.set_stop_task_delay(HELD);

    let (status, first) = start(&stack).await;
    assert_eq!(status, 202, "{first}");
    let first_id = first["session_id"].as_str().unwrap().to_owned();
    let running = status_via_api(&stack, &first_id, "running", Duration::from_secs(60)).await;
    let old_task = running["task_arn"].as_str().unwrap().to_owned();

    let (status, body, _) = stack
        .http(
            "DELETE",
            &format!("/sessions/{first_id}"),
            Some(&format!("dev:{USER}")),
            None,
            &[],
        )
        .await;
    assert_eq!(status, 202, "{body}");
    stack
        .eventually(
            "StopTask to reach the old task",
            Duration::from_secs(30),
            || async {
                let task = stack.task(&old_task).await;
                (task.desired_status() == Some("STOPPED")).then_some(())
            },
        )
        .await;
    let execution = format!(
        "{}:{first_id}",
        stack
            .info
            .state_machine_arn
            .replace(":stateMachine:", ":execution:")
    );
    stack.wait_for_state(&execution, "AwaitTasksStopped").await;

    // While the old task runs on, every start is refused and no second task exists.
    for _ in 0..5 {
        let (status, body) = start(&stack).await;
        assert_eq!(status, 409, "a start while the old task runs: {body}");
        assert_eq!(body["error"]["code"], "session_limit_reached", "{body}");
        assert_eq!(live_tasks(&stack).await, vec![old_task.clone()]);
        assert_eq!(stack.all_tasks().await.len(), 1, "a second task exists");
        let (_, session, _) = stack
            .http(
                "GET",
                &format!("/sessions/{first_id}"),
                Some(&format!("dev:{USER}")),
                None,
                &[],
            )
            .await;
        assert_eq!(session["status"], "stopping", "{session}");
        assert_eq!(stack.active_slots(USER).await, vec![first_id.clone()]);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // The old task's containers exit.
    stack.set_stop_task_delay(Duration::ZERO);
    // Its STOPPED event (not AwaitTasksStopped's 300 s timeout) ends the session.
    let stopped = status_via_api(&stack, &first_id, "stopped", Duration::from_secs(30)).await;
    assert_eq!(stopped["stop_reason"], "user", "{stopped}");
    let states = stack.states_entered(&execution).await;
    assert!(
        states.iter().any(|s| s == "AwaitTasksStopped"),
        "{states:?}"
    );

    let (status, second) = start(&stack).await;
    assert_eq!(status, 202, "{second}");
    let second_id = second["session_id"].as_str().unwrap().to_owned();
    status_via_api(&stack, &second_id, "running", Duration::from_secs(60)).await;
    assert_eq!(live_tasks(&stack).await.len(), 1);
    assert_eq!(stack.active_slots(USER).await, vec![second_id]);

    stack.clear_faults();
    drop(stack);
    pump.await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_start_frees_the_slot_only_once_its_unrecorded_task_has_stopped() {
    let stack = Arc::new(Stack::start().await);
    let pump = pump::spawn(stack.clone(), PumpSettings::default());
    stack.put_user(USER, true, None).await;
    // RunTask starts the task but answers an error Launch does not retry: the task is
    // recorded nowhere, the start fails, and compensation stops the task by its
    // startedBy. The task keeps running until the test lets it go.
    stack.set_run_task_error("AccessDeniedException", true);
    stack.set_stop_task_delay(HELD);

    let (status, started) = start(&stack).await;
    assert_eq!(status, 202, "{started}");
    let id = started["session_id"].as_str().unwrap().to_owned();
    let execution = format!(
        "{}:{id}",
        stack
            .info
            .state_machine_arn
            .replace(":stateMachine:", ":execution:")
    );
    stack
        .wait_for_state(&execution, "AwaitCompensationTasksStopped")
        .await;
    let tasks = stack.all_tasks().await;
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].started_by(), Some(id.as_str()));
    assert_eq!(tasks[0].desired_status(), Some("STOPPED"));

    for _ in 0..3 {
        let (_, session, _) = stack
            .http(
                "GET",
                &format!("/sessions/{id}"),
                Some(&format!("dev:{USER}")),
                None,
                &[],
            )
            .await;
        assert_ne!(
            session["status"], "failed",
            "ended while its task runs: {session}"
        );
        assert_eq!(stack.active_slots(USER).await, vec![id.clone()]);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    stack.set_stop_task_delay(Duration::ZERO);
    let failed = status_via_api(&stack, &id, "failed", Duration::from_secs(30)).await;
    assert_eq!(failed["stop_reason"], "internal", "{failed}");
    let stored = stack
        .session(&SessionId::parse(&id).unwrap())
        .await
        .expect("the session");
    assert!(
        stored
            .failure_cause
            .as_deref()
            .is_some_and(|c| c.contains("AccessDeniedException")),
        "{stored:?}"
    );
    assert!(stack.active_slots(USER).await.is_empty());
    assert!(live_tasks(&stack).await.is_empty());

    stack.clear_faults();
    drop(stack);
    pump.await.unwrap();
}
