//! A stop request (`steps::request_stop`) at each status: which token it resumes, and
//! what it leaves stored.

use session_core::error::ErrorName;
use session_core::ports::Delivery;
use session_core::session::{Reason, Status};
use session_core::steps::request_stop::StopRequestOutcome;
use session_core::testing::{session_in, Completion, FixedClock, SessionWorld, TokenOutcome};

const SESSION: &str = "sess-1";

/// SESSION stored in `status`, with the token its execution waits on there: WaitForIp's
/// while `provisioning`, AwaitStop's while `running`.
fn world_in(status: Status) -> SessionWorld {
    let mut session = session_in(SESSION, "u-1", status);
    match status {
        Status::Provisioning => session.ip_token = Some("ip-token".into()),
        Status::Running => session.stop_token = Some("stop-token".into()),
        _ => {}
    }
    SessionWorld::with(session)
}

#[tokio::test]
async fn a_stop_request_at_each_status_resumes_the_waiting_token_or_says_why_not() {
    let stop_requested = |token: &str| Completion {
        token: token.into(),
        outcome: TokenOutcome::Failed {
            error: ErrorName::StopRequested,
            cause: "user".into(),
        },
        delivery: Delivery::Delivered,
    };
    let await_stop_resumed = Completion {
        token: "stop-token".into(),
        outcome: TokenOutcome::Succeeded(serde_json::json!({ "reason": "user" })),
        delivery: Delivery::Delivered,
    };
    // (status before, answer, status after, completions): the status names the case.
    let cases = [
        (
            Status::Starting,
            StopRequestOutcome::Requested { resumed: false },
            Status::Stopping,
            vec![],
        ),
        (
            Status::Provisioning,
            StopRequestOutcome::Requested { resumed: true },
            Status::Stopping,
            vec![stop_requested("ip-token")],
        ),
        (
            Status::Running,
            StopRequestOutcome::Requested { resumed: true },
            Status::Stopping,
            vec![await_stop_resumed],
        ),
        (
            Status::Stopping,
            StopRequestOutcome::AlreadyStopping,
            Status::Stopping,
            vec![],
        ),
        (
            Status::Stopped,
            StopRequestOutcome::AlreadyEnded {
                status: Status::Stopped,
            },
            Status::Stopped,
            vec![],
        ),
        (
            Status::Failed,
            StopRequestOutcome::AlreadyEnded {
                status: Status::Failed,
            },
            Status::Failed,
            vec![],
        ),
    ];
    for (status, answer, after, completions) in cases {
        let world = world_in(status);
        let got = world.request_stop(Reason::User).await.unwrap();
        assert_eq!(got, answer, "{status}");
        let stored = world.session();
        assert_eq!(stored.status, after, "{status}");
        assert_eq!(world.workflow.completions(), completions, "{status}");
        if after == Status::Stopping && status != Status::Stopping {
            assert_eq!(stored.stop_reason, Some(Reason::User), "{status}");
        }
    }
}

#[tokio::test]
async fn a_second_stop_request_is_already_stopping_and_resumes_nothing_again() {
    let world = world_in(Status::Running);
    world.request_stop(Reason::User).await.unwrap();
    let again = world.request_stop(Reason::Idle).await.unwrap();
    assert_eq!(again, StopRequestOutcome::AlreadyStopping);
    assert_eq!(world.workflow.completions().len(), 1);
    assert_eq!(
        world.session().stop_reason,
        Some(Reason::User),
        "the first reason stays"
    );
}

#[tokio::test]
async fn a_stop_request_for_an_unknown_session_is_not_found_and_creates_nothing() {
    let world = SessionWorld::without(SESSION);
    let got = world.request_stop(Reason::User).await.unwrap();
    assert_eq!(got, StopRequestOutcome::NotFound);
    assert!(world.store.stored_session(&world.session_id).is_none());
}

#[tokio::test]
async fn a_stop_whose_token_has_closed_is_recorded_but_resumes_nothing() {
    let world = world_in(Status::Running);
    world.workflow.close("stop-token");
    let got = world.request_stop(Reason::MaxLifetime).await.unwrap();
    assert_eq!(got, StopRequestOutcome::Requested { resumed: false });
    let stored = world.session();
    assert_eq!(
        (stored.status, stored.stop_reason),
        (Status::Stopping, Some(Reason::MaxLifetime))
    );
    assert_eq!(
        world.workflow.completions()[0].delivery,
        Delivery::AlreadyClosed
    );
}

#[tokio::test]
async fn a_stop_before_wait_for_ip_stored_its_token_resumes_nothing_yet() {
    let world = world_in(Status::Provisioning);
    world.store.edit(&world.session_id, |s| s.ip_token = None);
    let got = world.request_stop(Reason::User).await.unwrap();
    assert_eq!(got, StopRequestOutcome::Requested { resumed: false });
    assert!(world.workflow.completions().is_empty());
    assert_eq!(
        world.session().status,
        Status::Stopping,
        "WaitForIp finds the session stopping when it stores its token"
    );
}

#[tokio::test]
async fn a_stop_request_is_dated_by_the_steps_clock_so_the_transition_deadline_counts_from_it() {
    let world = SessionWorld {
        clock: FixedClock(
            chrono::DateTime::parse_from_rfc3339("2031-05-06T07:08:09.010Z")
                .unwrap()
                .to_utc(),
        ),
        ..world_in(Status::Running)
    };
    world.request_stop(Reason::Idle).await.unwrap();
    let stored = world.session();
    assert_eq!(stored.status, Status::Stopping);
    assert_eq!(
        stored.status_changed_at.map(|at| at.to_string()).as_deref(),
        Some("2031-05-06T07:08:09.010Z")
    );
}
