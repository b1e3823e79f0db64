//! WaitForIp (`steps::wait_for_ip`): stores its token, and completes it at once when
//! the task's fate is already recorded (the ECS event came first).

use serde_json::json;

use session_core::config::Access;
use session_core::error::ErrorName;
use session_core::ports::Delivery;
use session_core::session::{Reason, Session, SessionId, Status};
use session_core::steps::wait_for_ip::WaitForIpInput;
use session_core::testing::{gateway_access, session_in, SessionWorld, TokenOutcome};
use session_core::Error;

const SESSION: &str = "sess-1";

fn id() -> SessionId {
    SessionId::parse(SESSION).unwrap()
}

fn input() -> WaitForIpInput {
    WaitForIpInput {
        session_id: id(),
        task_token: "ip-token".into(),
    }
}

/// SESSION launched, its task in `task_status` on interface eni-1 (10.0.0.5).
fn launched(task_status: Option<&str>) -> Session {
    let mut session = session_in(SESSION, "u-1", Status::Provisioning);
    session.task_arn = Some("arn:aws:ecs:eu-west-1:000000000000:task/sessions/1".into());
    session.task_status = task_status.map(str::to_owned);
    if task_status.is_some() {
        session.eni_id = Some("eni-1".into());
        session.private_ip = Some("10.0.0.5".into());
    }
    session
}

/// Runs WaitForIp for SESSION's token "ip-token" in `world`, with `access`.
async fn wait(world: &SessionWorld, access: &Access) -> Result<Option<Delivery>, Error> {
    world.wait_for_ip(input(), access).await
}

#[tokio::test]
async fn before_the_running_event_the_token_is_stored_and_waits() {
    let world = SessionWorld::with(launched(Some("PENDING")));
    assert_eq!(wait(&world, &gateway_access()).await.unwrap(), None);
    assert_eq!(world.session().ip_token.as_deref(), Some("ip-token"));
    assert!(world.workflow.completions().is_empty());
}

#[tokio::test]
async fn after_the_running_event_the_token_completes_at_once_with_the_private_address() {
    let world = SessionWorld::with(launched(Some("RUNNING")));
    assert_eq!(
        wait(&world, &gateway_access()).await.unwrap(),
        Some(Delivery::Delivered)
    );
    assert_eq!(
        world.only_outcome("ip-token"),
        TokenOutcome::Succeeded(json!({ "private_ip": "10.0.0.5", "eni_id": "eni-1" }))
    );
}

#[tokio::test]
async fn in_direct_access_the_token_carries_the_interfaces_public_ip() {
    let world = SessionWorld::with(launched(Some("RUNNING")));
    world.network.add("eni-1", Some("203.0.113.7"));
    wait(&world, &Access::Direct).await.unwrap();
    assert_eq!(
        world.only_outcome("ip-token"),
        TokenOutcome::Succeeded(json!({
            "public_ip": "203.0.113.7", "private_ip": "10.0.0.5", "eni_id": "eni-1"
        }))
    );
}

#[tokio::test]
async fn in_direct_access_an_interface_without_a_public_ip_fails_the_token() {
    let world = SessionWorld::with(launched(Some("RUNNING")));
    world.network.add("eni-1", None);
    wait(&world, &Access::Direct).await.unwrap();
    assert!(matches!(
        world.only_outcome("ip-token"),
        TokenOutcome::Failed {
            error: ErrorName::NoPublicIp,
            ..
        }
    ));
}

#[tokio::test]
async fn in_direct_access_a_running_task_without_an_interface_fails_the_token_as_a_launch_failure()
{
    let mut session = launched(Some("RUNNING"));
    session.eni_id = None;
    let world = SessionWorld::with(session);
    wait(&world, &Access::Direct).await.unwrap();
    assert!(matches!(
        world.only_outcome("ip-token"),
        TokenOutcome::Failed {
            error: ErrorName::LaunchFailed,
            ..
        }
    ));
}

#[tokio::test]
async fn behind_the_gateway_a_running_task_without_a_private_ip_fails_the_token() {
    let mut session = launched(Some("RUNNING"));
    session.private_ip = None;
    let world = SessionWorld::with(session);
    wait(&world, &gateway_access()).await.unwrap();
    assert!(matches!(
        world.only_outcome("ip-token"),
        TokenOutcome::Failed {
            error: ErrorName::LaunchFailed,
            ..
        }
    ));
}

#[tokio::test]
async fn a_stop_requested_before_the_token_was_stored_fails_it_towards_stop() {
    let mut session = launched(None);
    session.status = Status::Stopping;
    session.stop_reason = Some(Reason::User);
    let world = SessionWorld::with(session);
    wait(&world, &gateway_access()).await.unwrap();
    assert_eq!(
        world.only_outcome("ip-token"),
        TokenOutcome::Failed {
            error: ErrorName::StopRequested,
            cause: "user".into()
        }
    );
}

#[tokio::test]
async fn a_task_that_stopped_before_running_fails_the_token_with_its_stop_code() {
    let mut session = launched(Some("STOPPED"));
    session.stop_code = Some("EssentialContainerExited".into());
    let world = SessionWorld::with(session);
    wait(&world, &gateway_access()).await.unwrap();
    assert_eq!(
        world.only_outcome("ip-token"),
        TokenOutcome::Failed {
            error: ErrorName::TaskStoppedBeforeRunning,
            cause: "the task stopped before it was running: EssentialContainerExited".into()
        }
    );
}

#[tokio::test]
async fn with_health_checks_a_running_task_waits_until_it_is_healthy() {
    let mut session = launched(Some("RUNNING"));
    session.awaits_health = true;
    session.task_health = Some("UNKNOWN".into());
    let world = SessionWorld::with(session);
    assert_eq!(wait(&world, &gateway_access()).await.unwrap(), None);
    assert!(world.workflow.completions().is_empty());
}

#[tokio::test]
async fn an_empty_token_or_an_unknown_session_is_refused() {
    let world = SessionWorld::with(launched(None));
    let empty = WaitForIpInput {
        task_token: String::new(),
        ..input()
    };
    let err = world
        .wait_for_ip(empty, &gateway_access())
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "InvalidInput");

    let world = SessionWorld::with(session_in("sess-other", "u-1", Status::Provisioning));
    let err = wait(&world, &gateway_access()).await.unwrap_err();
    assert!(
        matches!(err, Error::SessionNotFound(ref s) if s == SESSION),
        "{err}"
    );
    assert!(
        world.store.stored_session(&id()).is_none(),
        "no session is created by storing a token"
    );
}
