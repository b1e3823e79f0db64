//! A stop request (`steps::request_stop`) at each status: which token it resumes, and
//! what it leaves stored.

use session_core::error::ErrorName;
use session_core::ports::Delivery;
use session_core::session::{Reason, SessionId, Status};
use session_core::steps::request_stop::{request_stop, StopRequest};
use session_core::testing::{
    session_in, Completion, FixedClock, MemoryStore, MemoryWorkflow, TokenOutcome,
};

const SESSION: &str = "sess-1";

fn id() -> SessionId {
    SessionId::parse(SESSION).unwrap()
}

/// SESSION stored in `status`, with the token its execution waits on there: WaitForIp's
/// while `provisioning`, AwaitStop's while `running`.
fn store_in(status: Status) -> MemoryStore {
    let store = MemoryStore::new();
    let mut session = session_in(SESSION, "u-1", status);
    match status {
        Status::Provisioning => session.ip_token = Some("ip-token".into()),
        Status::Running => session.stop_token = Some("stop-token".into()),
        _ => {}
    }
    store.seed_session(session);
    store
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
    let cases = [
        (
            Status::Starting,
            StopRequest::Requested { resumed: false },
            Status::Stopping,
            vec![],
        ),
        (
            Status::Provisioning,
            StopRequest::Requested { resumed: true },
            Status::Stopping,
            vec![stop_requested("ip-token")],
        ),
        (
            Status::Running,
            StopRequest::Requested { resumed: true },
            Status::Stopping,
            vec![await_stop_resumed],
        ),
        (
            Status::Stopping,
            StopRequest::AlreadyStopping,
            Status::Stopping,
            vec![],
        ),
        (
            Status::Stopped,
            StopRequest::AlreadyEnded {
                status: Status::Stopped,
            },
            Status::Stopped,
            vec![],
        ),
        (
            Status::Failed,
            StopRequest::AlreadyEnded {
                status: Status::Failed,
            },
            Status::Failed,
            vec![],
        ),
    ];
    for (status, answer, after, completions) in cases {
        let store = store_in(status);
        let workflow = MemoryWorkflow::new();
        let got = request_stop(
            &id(),
            Reason::User,
            &store,
            &workflow,
            &FixedClock::default(),
        )
        .await
        .unwrap();
        assert_eq!(got, answer, "{status}");
        let stored = store.stored_session(&id()).unwrap();
        assert_eq!(stored.status, after, "{status}");
        assert_eq!(workflow.completions(), completions, "{status}");
        if after == Status::Stopping && status != Status::Stopping {
            assert_eq!(stored.stop_reason, Some(Reason::User), "{status}");
        }
    }
}

#[tokio::test]
async fn a_second_stop_request_is_already_stopping_and_resumes_nothing_again() {
    let store = store_in(Status::Running);
    let workflow = MemoryWorkflow::new();
    request_stop(
        &id(),
        Reason::User,
        &store,
        &workflow,
        &FixedClock::default(),
    )
    .await
    .unwrap();
    let again = request_stop(
        &id(),
        Reason::Idle,
        &store,
        &workflow,
        &FixedClock::default(),
    )
    .await
    .unwrap();
    assert_eq!(again, StopRequest::AlreadyStopping);
    assert_eq!(workflow.completions().len(), 1);
    assert_eq!(
        store.stored_session(&id()).unwrap().stop_reason,
        Some(Reason::User),
        "the first reason stays"
    );
}

#[tokio::test]
async fn a_stop_request_for_an_unknown_session_is_not_found_and_creates_nothing() {
    let store = MemoryStore::new();
    let workflow = MemoryWorkflow::new();
    let got = request_stop(
        &id(),
        Reason::User,
        &store,
        &workflow,
        &FixedClock::default(),
    )
    .await
    .unwrap();
    assert_eq!(got, StopRequest::NotFound);
    assert!(store.stored_session(&id()).is_none());
}

#[tokio::test]
async fn a_stop_whose_token_has_closed_is_recorded_but_resumes_nothing() {
    let store = store_in(Status::Running);
    let workflow = MemoryWorkflow::new();
    workflow.close("stop-token");
    let got = request_stop(
        &id(),
        Reason::MaxLifetime,
        &store,
        &workflow,
        &FixedClock::default(),
    )
    .await
    .unwrap();
    assert_eq!(got, StopRequest::Requested { resumed: false });
    let stored = store.stored_session(&id()).unwrap();
    assert_eq!(
        (stored.status, stored.stop_reason),
        (Status::Stopping, Some(Reason::MaxLifetime))
    );
    assert_eq!(workflow.completions()[0].delivery, Delivery::AlreadyClosed);
}

#[tokio::test]
async fn a_stop_before_wait_for_ip_stored_its_token_resumes_nothing_yet() {
    let store = store_in(Status::Provisioning);
    store.edit(&id(), |s| s.ip_token = None);
    let workflow = MemoryWorkflow::new();
    let got = request_stop(
        &id(),
        Reason::User,
        &store,
        &workflow,
        &FixedClock::default(),
    )
    .await
    .unwrap();
    assert_eq!(got, StopRequest::Requested { resumed: false });
    assert!(workflow.completions().is_empty());
    assert_eq!(
        store.stored_session(&id()).unwrap().status,
        Status::Stopping,
        "WaitForIp finds the session stopping when it stores its token"
    );
}

#[tokio::test]
async fn a_stop_request_is_dated_by_the_steps_clock_so_the_transition_deadline_counts_from_it() {
    let store = store_in(Status::Running);
    let clock = FixedClock(
        chrono::DateTime::parse_from_rfc3339("2031-05-06T07:08:09.010Z")
            .unwrap()
            .to_utc(),
    );
    request_stop(&id(), Reason::Idle, &store, &MemoryWorkflow::new(), &clock)
        .await
        .unwrap();
    let stored = store.stored_session(&id()).unwrap();
    assert_eq!(stored.status, Status::Stopping);
    assert_eq!(
        stored.status_changed_at.map(|at| at.to_string()).as_deref(),
        Some("2031-05-06T07:08:09.010Z")
    );
}
