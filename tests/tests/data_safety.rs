//! Never two PostgreSQL servers on one user's data: a task asked to stop runs on until
//! its containers have exited (Fargate waits up to the stop timeout), and its
//! PostgreSQL writes to the user's data until then. The user's slot, and so their
//! next session on the same data, waits for the task's STOPPED.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use session_core::session::SessionId;
use session_tests::pump::{self, PumpSettings};
use session_tests::Stack;

const USER: &str = "uma";

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
    const STOP_TAKES: Duration = Duration::from_secs(8);
    let stack = Arc::new(Stack::start().await);
    let pump = pump::spawn(stack.clone(), PumpSettings::default());
    stack.put_user(USER, true, None).await;
    stack.set_stop_task_delay(STOP_TAKES);

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
    let asked = Instant::now();
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

    // While the old task runs on, every start is refused and no second task exists.
    let mut refusals = 0;
    while stack.task(&old_task).await.last_status() != Some("STOPPED") {
        assert!(
            asked.elapsed() < STOP_TAKES + Duration::from_secs(20),
            "the old task never stopped"
        );
        let (status, body) = start(&stack).await;
        assert_eq!(status, 409, "a start while the old task runs: {body}");
        assert_eq!(body["error"]["code"], "session_limit_reached", "{body}");
        assert_eq!(live_tasks(&stack).await, vec![old_task.clone()]);
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
        refusals += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        refusals >= 3,
        "the old task stopped too soon to tell: {refusals} refusals"
    );

    // Its STOPPED event (not AwaitTasksStopped's 300 s timeout) ends the session.
    let stopped = status_via_api(&stack, &first_id, "stopped", Duration::from_secs(30)).await;
    assert_eq!(stopped["stop_reason"], "user", "{stopped}");
    let execution = format!(
        "{}:{first_id}",
        stack
            .info
            .state_machine_arn
            .replace(":stateMachine:", ":execution:")
    );
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
    const STOP_TAKES: Duration = Duration::from_secs(6);
    let stack = Arc::new(Stack::start().await);
    let pump = pump::spawn(stack.clone(), PumpSettings::default());
    stack.put_user(USER, true, None).await;
    // RunTask starts the task but answers an error Launch does not retry: the task is
    // recorded nowhere, the start fails, and compensation stops the task by its
    // startedBy. The task then takes a while to stop.
    stack.set_run_task_error("AccessDeniedException", true);
    stack.set_stop_task_delay(STOP_TAKES);

    let (status, started) = start(&stack).await;
    assert_eq!(status, 202, "{started}");
    let id = started["session_id"].as_str().unwrap().to_owned();
    let task = stack
        .eventually(
            "compensation to ask the task to stop",
            Duration::from_secs(60),
            || async {
                stack.all_tasks().await.into_iter().find(|t| {
                    t.started_by() == Some(id.as_str()) && t.desired_status() == Some("STOPPED")
                })
            },
        )
        .await;
    let task_arn = task.task_arn().unwrap().to_owned();

    let mut looks = 0;
    while stack.task(&task_arn).await.last_status() != Some("STOPPED") {
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
        looks += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        looks >= 3,
        "the task stopped too soon to tell: {looks} looks"
    );

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
    let execution = format!(
        "{}:{id}",
        stack
            .info
            .state_machine_arn
            .replace(":stateMachine:", ":execution:")
    );
    let states = stack.states_entered(&execution).await;
    assert!(
        states.iter().any(|s| s == "AwaitCompensationTasksStopped"),
        "{states:?}"
    );

    stack.clear_faults();
    drop(stack);
    pump.await.unwrap();
}
