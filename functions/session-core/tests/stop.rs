//! Stop (`steps::stop`): what stopping a session does at each status, against the
//! in-memory twins. The slot waits for the old task to have STOPPED, whatever the
//! status; a second Stop changes nothing more.

use std::sync::Arc;

use session_core::ports::{Compute, SessionStore};
use session_core::session::{Reason, SessionId, Status, UserId};
use session_core::steps::launch::launch;
use session_core::steps::request_stop::StopRequestOutcome;
use session_core::steps::stop::{stop, StopInput, StopOutput};
use session_core::template::SessionTemplate;
use session_core::testing::{
    authorized_user, launch_settings, ready, session_in, FixedClock, MemoryCompute, MemoryStorage,
    MemoryStore, MemoryTask, MemoryTaskRoles, SessionWorld,
};
use session_core::Error;

const USER: &str = "u-1";
const SESSION: &str = "sess-1";
/// Another session of the same user: its slot is never touched by a stop of SESSION.
const OTHER: &str = "sess-2";
const TASK: &str = "arn:aws:ecs:eu-west-1:000000000000:task/sessions/1";

fn id() -> SessionId {
    SessionId::parse(SESSION).unwrap()
}

fn input(reason: Option<Reason>) -> StopInput {
    StopInput {
        session_id: id(),
        reason,
        request: None,
    }
}

/// A user holding the slots of SESSION and OTHER, SESSION stored in `status`, and its
/// task running. A session still `starting` has not recorded its task (RunTask
/// answered, its result not yet written): Stop finds it by its startedBy.
fn world(status: Status) -> (MemoryStore, MemoryCompute) {
    let store = MemoryStore::new();
    let mut user = authorized_user(USER);
    user.active_sessions = [SESSION, OTHER].map(String::from).into();
    store.seed_user(user);
    let mut session = session_in(SESSION, USER, status);
    if status != Status::Starting {
        session.task_arn = Some(TASK.into());
    }
    store.seed_session(session);
    let compute = MemoryCompute::new();
    compute.seed_task(MemoryTask {
        task_arn: TASK.into(),
        task_definition_arn: "arn:aws:ecs:eu-west-1:000000000000:task-definition/s:1".into(),
        started_by: Some(SESSION.into()),
        last_status: "RUNNING".into(),
        desired_status: "RUNNING".into(),
        created_at: None,
    });
    (store, compute)
}

fn stopped_status(before: Status) -> Status {
    match before {
        Status::Starting | Status::Provisioning | Status::Running => Status::Stopping,
        other => other,
    }
}

/// Runs Stop with `input` against `store` and `compute`, which must let it finish.
async fn run_stop(input: StopInput, store: &MemoryStore, compute: &MemoryCompute) -> StopOutput {
    stop(input, store, compute, &FixedClock::default())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_stop_at_any_status_stops_the_task_and_frees_the_slot_only_once_it_has_stopped() {
    for status in Status::ALL {
        let (store, compute) = world(status);

        let first = run_stop(input(Some(Reason::User)), &store, &compute).await;
        assert_eq!(
            first,
            StopOutput {
                stopped_tasks: vec![TASK.into()],
                tasks_stopped: false,
                awaiting_tasks: vec![TASK.into()],
                slot_released: false,
                reason: Some(Reason::User),
            },
            "{status}"
        );
        let stored = store.stored_session(&id()).unwrap();
        assert_eq!(stored.status, stopped_status(status), "from {status}");
        assert_eq!(
            compute.stop_calls(),
            [(TASK.to_owned(), "session sess-1 stopped: user".to_owned())],
            "{status}"
        );
        assert!(
            store.slots(USER).contains(SESSION),
            "{status}: the slot is kept while the task still stops"
        );

        compute.set_status(TASK, "STOPPED");
        let second = run_stop(input(Some(Reason::User)), &store, &compute).await;
        assert!(second.tasks_stopped && second.slot_released, "{status}");
        assert!(second.awaiting_tasks.is_empty(), "{status}");
        assert_eq!(store.slots(USER), [OTHER.to_owned()].into(), "{status}");

        let third = run_stop(input(Some(Reason::User)), &store, &compute).await;
        assert_eq!(third, second, "{status}: a repeated Stop answers the same");
        assert_eq!(
            store.stored_session(&id()).unwrap().status,
            stopped_status(status),
            "{status}"
        );
        assert_eq!(store.slots(USER), [OTHER.to_owned()].into(), "{status}");
    }
}

#[tokio::test]
async fn a_stop_records_the_reason_only_on_a_session_that_was_not_yet_stopping() {
    for status in Status::ALL {
        let (store, compute) = world(status);
        store.edit(&id(), |s| {
            if s.status == Status::Stopping {
                s.stop_reason = Some(Reason::Idle);
            }
        });
        run_stop(input(Some(Reason::User)), &store, &compute).await;
        let expected = match status {
            Status::Starting | Status::Provisioning | Status::Running => Some(Reason::User),
            Status::Stopping => Some(Reason::Idle),
            Status::Stopped | Status::Failed => None,
        };
        assert_eq!(
            store.stored_session(&id()).unwrap().stop_reason,
            expected,
            "{status}: the first reason recorded is kept"
        );
    }
}

#[tokio::test]
async fn a_stop_of_a_session_that_never_had_a_task_frees_the_slot_at_once() {
    let (store, _) = world(Status::Starting);
    let compute = MemoryCompute::new();
    let out = run_stop(input(Some(Reason::User)), &store, &compute).await;
    assert!(out.stopped_tasks.is_empty() && out.tasks_stopped && out.slot_released);
    assert!(compute.stop_calls().is_empty());
    assert_eq!(
        store.stored_session(&id()).unwrap().status,
        Status::Stopping
    );
    assert_eq!(store.slots(USER), [OTHER.to_owned()].into());
}

#[tokio::test]
async fn a_task_ecs_no_longer_knows_counts_as_stopped() {
    let (store, compute) = world(Status::Running);
    compute.forget(TASK);
    let out = run_stop(input(Some(Reason::Idle)), &store, &compute).await;
    assert_eq!(out.stopped_tasks, [TASK]);
    assert!(out.tasks_stopped && out.slot_released);
}

#[tokio::test]
async fn the_compensation_path_stops_the_task_without_marking_the_session_stopping() {
    let (store, compute) = world(Status::Provisioning);
    let out = run_stop(input(None), &store, &compute).await;
    assert_eq!(out.reason, None);
    let stored = store.stored_session(&id()).unwrap();
    assert_eq!(
        (stored.status, stored.stop_reason),
        (Status::Provisioning, None),
        "RecordFailed, not Stop, ends a failed session"
    );
    assert_eq!(
        compute.stop_calls(),
        [(TASK.to_owned(), "session sess-1 stopped: failed".to_owned())]
    );
    assert!(!out.slot_released);
}

#[tokio::test]
async fn without_a_reason_a_stopping_session_stops_for_the_reason_it_recorded() {
    let (store, compute) = world(Status::Stopping);
    store.edit(&id(), |s| s.stop_reason = Some(Reason::Idle));
    let out = run_stop(input(None), &store, &compute).await;
    assert_eq!(out.reason, Some(Reason::Idle));
    assert_eq!(
        compute.stop_calls(),
        [(TASK.to_owned(), "session sess-1 stopped: idle".to_owned())]
    );
}

#[tokio::test]
async fn a_session_authorize_never_created_frees_the_slot_of_the_user_in_the_request() {
    let store = MemoryStore::new();
    let mut user = authorized_user(USER);
    user.active_sessions = [SESSION, OTHER].map(String::from).into();
    store.seed_user(user);
    let compute = MemoryCompute::new();

    let without_request = run_stop(input(None), &store, &compute).await;
    assert!(without_request.tasks_stopped && !without_request.slot_released);
    assert_eq!(store.slots(USER).len(), 2, "no user known: no slot touched");

    let with_request = StopInput {
        request: Some(serde_json::json!({ "user_id": USER })),
        ..input(None)
    };
    let out = run_stop(with_request, &store, &compute).await;
    assert!(out.slot_released);
    assert_eq!(store.slots(USER), [OTHER.to_owned()].into());
    assert!(
        store.stored_session(&id()).is_none(),
        "Stop creates no session"
    );
}

#[tokio::test]
async fn a_stop_while_launching_resumes_no_token_and_frees_the_slot_once_the_task_has_stopped() {
    let world = Arc::new(SessionWorld::with(session_in(
        SESSION,
        USER,
        Status::Starting,
    )));
    let mut user = authorized_user(USER);
    user.active_sessions = [SESSION.to_owned()].into();
    world.store.seed_user(user);
    let store = &world.store;
    let compute = MemoryCompute::new();
    let requested = Arc::new(std::sync::Mutex::new(None));
    {
        let (world, requested) = (world.clone(), requested.clone());
        compute.on_run_task(move || {
            let answer = ready(world.request_stop(Reason::User));
            *requested.lock().unwrap() = Some(answer.unwrap());
        });
    }

    let err = launch(
        session_core::steps::authorize::SessionRef {
            session_id: id(),
            user_id: UserId::parse(USER).unwrap(),
            version: Default::default(),
        },
        &launch_settings(SessionTemplate::default()),
        store,
        &compute,
        &MemoryStorage::new(),
        &MemoryTaskRoles::new(),
        &FixedClock::default(),
    )
    .await
    .unwrap_err();

    assert!(matches!(err, Error::StopRequested(_)), "{err}");
    assert_eq!(
        *requested.lock().unwrap(),
        Some(StopRequestOutcome::Requested { resumed: false })
    );
    assert!(
        world.workflow.completions().is_empty(),
        "no token was waiting"
    );
    let launched = store.stored_session(&id()).unwrap();
    assert_eq!(
        (launched.status, launched.task_arn),
        (Status::Stopping, None)
    );
    assert!(
        compute.stop_calls().is_empty(),
        "Launch leaves a requested stop to Stop"
    );
    let task = compute.tasks_started_by(&id()).await.unwrap();
    assert_eq!(task.len(), 1);

    // The state machine's Catch of StopRequested goes to Stop, without a reason.
    let first = run_stop(input(None), store, &compute).await;
    assert_eq!(first.reason, Some(Reason::User));
    assert_eq!(first.stopped_tasks, task);
    assert_eq!(first.awaiting_tasks, task);
    assert!(!first.slot_released);
    assert!(store.slots(USER).contains(SESSION));

    compute.set_status(&task[0], "STOPPED");
    let second = run_stop(input(None), store, &compute).await;
    assert!(second.tasks_stopped && second.slot_released);
    assert!(store.slots(USER).is_empty());
    assert_eq!(
        store.session(&id()).await.unwrap().unwrap().status,
        Status::Stopping,
        "RecordStopped, after Stop, ends the session"
    );
}
