//! task-events (`steps::task_events`): ECS task state changes arrive at least once and
//! in any order; `detail.version` orders them, and whatever the order the session
//! ends in the right state, with each waiting token completed once.

use serde_json::json;

use session_core::error::ErrorName;
use session_core::ports::Delivery;
use session_core::session::{Reason, Session, SessionId, Status};
use session_core::steps::task_events::{
    Attachment, AttachmentDetail, Outcome as Handled, TaskEvent, TaskStateChange,
};
use session_core::testing::{gateway_access, session_in, SessionWorld, TokenOutcome};
use session_core::Error;

const CLUSTER: &str = "sessions";
const CLUSTER_ARN: &str = "arn:aws:ecs:eu-west-1:000000000000:cluster/sessions";
const SESSION: &str = "sess-1";
const TASK: &str = "arn:aws:ecs:eu-west-1:000000000000:task/sessions/1";
const STARTED_AT: &str = "2026-01-01T10:01:00Z";

/// A change of SESSION's task to `last_status`, with its network attachment.
fn change(last_status: &str, version: i64) -> TaskStateChange {
    let detail = |name: &str, value: &str| AttachmentDetail {
        name: name.into(),
        value: Some(value.into()),
    };
    TaskStateChange {
        cluster_arn: CLUSTER_ARN.into(),
        task_arn: TASK.into(),
        last_status: last_status.into(),
        started_by: Some(SESSION.into()),
        version,
        attachments: vec![Attachment {
            kind: "eni".into(),
            details: vec![
                detail("networkInterfaceId", "eni-1"),
                detail("privateIPv4Address", "10.0.0.5"),
            ],
        }],
        ..Default::default()
    }
}

/// The change of a task that has been RUNNING: its later events carry `startedAt`.
fn after_running(last_status: &str, version: i64) -> TaskStateChange {
    TaskStateChange {
        started_at: Some(STARTED_AT.into()),
        ..change(last_status, version)
    }
}

fn event(detail: TaskStateChange) -> TaskEvent {
    serde_json::from_value(json!({
        "detail-type": "ECS Task State Change",
        "source": "aws.ecs",
        "detail": detail,
    }))
    .unwrap()
}

/// SESSION launched (its task recorded) and waiting in WaitForIp.
fn provisioning() -> Session {
    let mut session = session_in(SESSION, "u-1", Status::Provisioning);
    session.task_arn = Some(TASK.into());
    session.ip_token = Some("ip-token".into());
    session
}

/// Handles the event of `detail` in `world`, as the function of CLUSTER behind the
/// gateway does.
async fn on(world: &SessionWorld, detail: TaskStateChange) -> Result<Handled, Error> {
    world
        .on_task_state_change(event(detail), CLUSTER, &gateway_access())
        .await
}

#[tokio::test]
async fn a_running_event_completes_wait_for_ip_with_the_tasks_private_address() {
    let world = SessionWorld::with(provisioning());
    let handled = on(&world, change("RUNNING", 2)).await.unwrap();
    assert_eq!(handled, Handled::CompletedWaitForIp);
    let delivered = world.workflow.delivered();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].token, "ip-token");
    assert_eq!(
        delivered[0].outcome,
        TokenOutcome::Succeeded(json!({ "private_ip": "10.0.0.5", "eni_id": "eni-1" }))
    );
    let session = world.session();
    assert_eq!(
        (
            session.task_status.as_deref(),
            session.task_version,
            session.private_ip.as_deref()
        ),
        (Some("RUNNING"), Some(2), Some("10.0.0.5"))
    );
    assert_eq!(
        session.status,
        Status::Provisioning,
        "RecordRunning moves it on"
    );
}

#[tokio::test]
async fn a_duplicate_running_event_is_stale_and_completes_nothing_twice() {
    let world = SessionWorld::with(provisioning());
    on(&world, change("RUNNING", 2)).await.unwrap();
    let again = on(&world, change("RUNNING", 2)).await.unwrap();
    assert_eq!(again, Handled::Stale);
    assert_eq!(world.workflow.delivered().len(), 1);
}

#[tokio::test]
async fn a_stopped_event_before_the_running_one_stops_the_session_and_the_late_running_event_is_stale(
) {
    let world = SessionWorld::with(provisioning());
    let stopped = on(&world, after_running("STOPPED", 3)).await.unwrap();
    assert_eq!(
        stopped,
        Handled::StopRequested,
        "the task ran, then stopped"
    );
    let late = on(&world, change("RUNNING", 2)).await.unwrap();
    assert_eq!(late, Handled::Stale);

    let session = world.session();
    assert_eq!(
        (session.status, session.stop_reason),
        (Status::Stopping, Some(Reason::TaskStopped))
    );
    assert_eq!(
        (session.task_status.as_deref(), session.task_version),
        (Some("STOPPED"), Some(3)),
        "the late RUNNING did not overwrite the STOPPED"
    );
    let completions = world.workflow.completions();
    assert_eq!(completions.len(), 1);
    assert_eq!(
        completions[0].outcome,
        TokenOutcome::Failed {
            error: ErrorName::StopRequested,
            cause: "task_stopped".into()
        },
        "WaitForIp is resumed towards Stop"
    );
}

#[tokio::test]
async fn a_task_that_stops_without_ever_running_fails_wait_for_ip_with_its_stop_code() {
    let world = SessionWorld::with(provisioning());
    let detail = TaskStateChange {
        stop_code: Some("TaskFailedToStart".into()),
        stopped_reason: Some("CannotPullContainerError".into()),
        ..change("STOPPED", 3)
    };
    let handled = on(&world, detail).await.unwrap();
    assert_eq!(handled, Handled::CompletedWaitForIp);
    assert_eq!(
        world.workflow.delivered()[0].outcome,
        TokenOutcome::Failed {
            error: ErrorName::TaskStoppedBeforeRunning,
            cause: "the task stopped before it was running: TaskFailedToStart \
                    CannotPullContainerError"
                .into()
        }
    );
    assert_eq!(
        world.session().status,
        Status::Provisioning,
        "RecordFailed ends it"
    );
}

#[tokio::test]
async fn a_deprovisioning_event_alone_tells_a_task_failed_to_start() {
    let world = SessionWorld::with(provisioning());
    let handled = on(&world, change("DEPROVISIONING", 3)).await.unwrap();
    assert_eq!(handled, Handled::CompletedWaitForIp);
    assert!(matches!(
        world.workflow.delivered()[0].outcome,
        TokenOutcome::Failed {
            error: ErrorName::TaskStoppedBeforeRunning,
            ..
        }
    ));
}

#[tokio::test]
async fn events_of_another_cluster_or_of_tasks_not_started_for_a_session_are_ignored() {
    let world = SessionWorld::with(provisioning());
    let other_cluster = TaskStateChange {
        cluster_arn: "arn:aws:ecs:eu-west-1:000000000000:cluster/sessions-2".into(),
        ..change("RUNNING", 2)
    };
    let by_a_service = TaskStateChange {
        started_by: Some("ecs-svc/1234".into()),
        ..change("RUNNING", 2)
    };
    let by_hand = TaskStateChange {
        started_by: None,
        ..change("RUNNING", 2)
    };
    for detail in [other_cluster, by_a_service, by_hand] {
        let handled = on(&world, detail.clone()).await.unwrap();
        assert!(matches!(handled, Handled::Ignored(_)), "{detail:?}");
    }
    let mut not_ecs = event(change("RUNNING", 2));
    not_ecs.source = "session-provisioner".into();
    assert!(matches!(
        world
            .on_task_state_change(not_ecs, CLUSTER, &gateway_access())
            .await
            .unwrap(),
        Handled::Ignored(_)
    ));
    assert_eq!(world.session(), provisioning(), "nothing recorded");
    assert!(world.workflow.completions().is_empty());
}

#[tokio::test]
async fn an_event_for_an_unknown_session_is_stale_and_creates_nothing() {
    let world = SessionWorld::with(provisioning());
    let detail = TaskStateChange {
        started_by: Some("sess-unknown".into()),
        ..change("RUNNING", 2)
    };
    assert_eq!(on(&world, detail).await.unwrap(), Handled::Stale);
    let unknown = SessionId::parse("sess-unknown").unwrap();
    assert!(world.store.stored_session(&unknown).is_none());
}

#[tokio::test]
async fn an_event_of_another_task_started_for_the_session_is_stale() {
    let world = SessionWorld::with(provisioning());
    let other = TaskStateChange {
        task_arn: "arn:aws:ecs:eu-west-1:000000000000:task/sessions/2".into(),
        ..change("RUNNING", 7)
    };
    assert_eq!(on(&world, other).await.unwrap(), Handled::Stale);
    assert_eq!(world.session(), provisioning());
    assert!(world.workflow.completions().is_empty());
}

#[tokio::test]
async fn a_stale_event_after_the_stop_changes_nothing() {
    let mut stopped = provisioning();
    stopped.status = Status::Stopped;
    stopped.ip_token = None;
    stopped.task_status = Some("STOPPED".into());
    stopped.task_version = Some(5);
    let world = SessionWorld::with(stopped.clone());
    for detail in [change("RUNNING", 4), after_running("STOPPING", 5)] {
        assert_eq!(on(&world, detail).await.unwrap(), Handled::Stale);
    }
    assert_eq!(world.session(), stopped);
    assert!(world.workflow.completions().is_empty());
}

#[tokio::test]
async fn the_stopped_event_of_a_stopping_session_completes_await_tasks_stopped_once() {
    let mut stopping = provisioning();
    stopping.status = Status::Stopping;
    stopping.ip_token = None;
    stopping.tasks_stopped_token = Some("tasks-stopped-token".into());
    stopping.task_status = Some("RUNNING".into());
    stopping.task_version = Some(2);
    let world = SessionWorld::with(stopping);

    let stopped = on(&world, after_running("STOPPED", 4)).await.unwrap();
    assert_eq!(stopped, Handled::CompletedAwaitTasksStopped);
    let repeated = on(&world, after_running("STOPPED", 4)).await.unwrap();
    assert_eq!(repeated, Handled::Stale);

    let delivered = world.workflow.delivered();
    assert_eq!(delivered.len(), 1);
    assert_eq!(
        (delivered[0].token.as_str(), &delivered[0].outcome),
        ("tasks-stopped-token", &TokenOutcome::Succeeded(json!({})))
    );
    assert_eq!(world.session().status, Status::Stopping);
}

#[tokio::test]
async fn a_running_sessions_task_that_stops_on_its_own_resumes_await_stop() {
    let mut running = provisioning();
    running.status = Status::Running;
    running.ip_token = None;
    running.stop_token = Some("stop-token".into());
    running.task_status = Some("RUNNING".into());
    running.task_version = Some(2);
    let world = SessionWorld::with(running);

    let handled = on(&world, after_running("STOPPED", 5)).await.unwrap();
    assert_eq!(handled, Handled::StopRequested);
    let session = world.session();
    assert_eq!(
        (session.status, session.stop_reason),
        (Status::Stopping, Some(Reason::TaskStopped))
    );
    let delivered = world.workflow.delivered();
    assert_eq!(
        (delivered[0].token.as_str(), &delivered[0].outcome),
        (
            "stop-token",
            &TokenOutcome::Succeeded(json!({ "reason": "task_stopped" }))
        )
    );

    // Its STOPPING event, delivered late, is older and changes nothing.
    let late = on(&world, after_running("STOPPING", 4)).await.unwrap();
    assert_eq!(late, Handled::Stale);
    assert_eq!(world.workflow.completions().len(), 1);
}

#[tokio::test]
async fn a_task_whose_running_event_was_lost_still_ends_its_session_when_it_stops() {
    let world = SessionWorld::with(provisioning());
    let handled = on(&world, after_running("STOPPING", 4)).await.unwrap();
    assert_eq!(handled, Handled::StopRequested);
    assert_eq!(world.session().status, Status::Stopping);
}

#[tokio::test]
async fn with_health_checks_wait_for_ip_waits_for_healthy() {
    let mut session = provisioning();
    session.awaits_health = true;
    let world = SessionWorld::with(session);
    let unknown = TaskStateChange {
        health_status: Some("UNKNOWN".into()),
        ..after_running("RUNNING", 2)
    };
    assert_eq!(on(&world, unknown).await.unwrap(), Handled::Recorded);
    assert!(world.workflow.completions().is_empty(), "not reachable yet");

    let healthy = TaskStateChange {
        health_status: Some("HEALTHY".into()),
        ..after_running("RUNNING", 3)
    };
    assert_eq!(
        on(&world, healthy).await.unwrap(),
        Handled::CompletedWaitForIp
    );
    assert!(matches!(
        world.workflow.delivered()[0].outcome,
        TokenOutcome::Succeeded(_)
    ));
}

#[tokio::test]
async fn with_health_checks_an_unhealthy_task_fails_wait_for_ip() {
    let mut session = provisioning();
    session.awaits_health = true;
    let world = SessionWorld::with(session);
    let unhealthy = TaskStateChange {
        health_status: Some("UNHEALTHY".into()),
        ..after_running("RUNNING", 3)
    };
    assert_eq!(
        on(&world, unhealthy).await.unwrap(),
        Handled::CompletedWaitForIp
    );
    assert!(matches!(
        world.workflow.delivered()[0].outcome,
        TokenOutcome::Failed {
            error: ErrorName::Unhealthy,
            ..
        }
    ));
}

#[tokio::test]
async fn a_running_event_of_a_session_stopped_meanwhile_resumes_wait_for_ip_towards_stop() {
    let mut session = provisioning();
    session.status = Status::Stopping;
    session.stop_reason = Some(Reason::Idle);
    let world = SessionWorld::with(session);
    assert_eq!(
        on(&world, change("RUNNING", 2)).await.unwrap(),
        Handled::CompletedWaitForIp
    );
    assert_eq!(
        world.workflow.delivered()[0].outcome,
        TokenOutcome::Failed {
            error: ErrorName::StopRequested,
            cause: "idle".into()
        }
    );
}

#[tokio::test]
async fn a_retried_event_whose_token_completion_failed_completes_the_token_on_the_retry() {
    let world = SessionWorld::with(provisioning());
    world.workflow.refuse_next_completion(Error::Throttled {
        operation: "SendTaskSuccess",
        message: "Rate exceeded".into(),
    });
    let first = on(&world, change("RUNNING", 2)).await.unwrap_err();
    assert_eq!(first.error_type(), "Throttled");
    assert_eq!(
        world.session().task_status.as_deref(),
        Some("RUNNING"),
        "written before the failing call"
    );

    let retry = on(&world, change("RUNNING", 2)).await.unwrap();
    assert_eq!(retry, Handled::CompletedWaitForIp);
    assert_eq!(world.workflow.delivered().len(), 1);
    assert_eq!(world.workflow.delivered()[0].delivery, Delivery::Delivered);
}
