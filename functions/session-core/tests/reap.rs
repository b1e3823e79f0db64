//! The reaper (`steps::reap`): idle, max-lifetime and lost sessions, and orphan tasks.

use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use session_core::config::{ReaperSettings, SessionLimits};
use session_core::session::{Reason, Session, SessionId, Status, Timestamp};
use session_core::steps::reap::{ReapReport, Reaper};
use session_core::testing::{
    authorized_user, session_in, ManualClock, MemoryCompute, MemoryStore, MemoryTask,
    MemoryWorkflow, TokenOutcome,
};

const USER: &str = "u-1";
const SESSION: &str = "sess-1";
const TASK: &str = "arn:aws:ecs:eu-west-1:000000000000:task/sessions/1";
const EXECUTION: &str = "arn:aws:states:eu-west-1:000000000000:execution:sessions:sess-1";

fn id() -> SessionId {
    SessionId::parse(SESSION).unwrap()
}

/// Minutes after 10:00, when SESSION was admitted.
fn at(minutes: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-01T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
        + Duration::minutes(minutes)
}

fn settings() -> ReaperSettings {
    ReaperSettings {
        limits: SessionLimits {
            idle_timeout_s: 30 * 60,
            max_lifetime_s: 8 * 3600,
            heartbeat_interval_s: 60,
        },
        orphan_grace_s: 5 * 60,
        transition_deadline_s: 20 * 60,
    }
}

fn task(task_arn: &str, started_by: &str, created_minute: i64) -> MemoryTask {
    MemoryTask {
        task_arn: task_arn.into(),
        task_definition_arn: "arn:aws:ecs:eu-west-1:000000000000:task-definition/s:1".into(),
        started_by: Some(started_by.into()),
        last_status: "RUNNING".into(),
        desired_status: "RUNNING".into(),
        created_at: Some(at(created_minute)),
    }
}

/// SESSION admitted at 10:00, its execution running, holding its user's slot.
fn admitted(status: Status, entered_minute: i64) -> Session {
    let mut session = session_in(SESSION, USER, status);
    session.created_at = at(0).into();
    session.status_changed_at = Some(Timestamp::from(at(entered_minute)));
    session.execution_arn = Some(EXECUTION.into());
    session
}

/// SESSION running since 10:01 on TASK, last active at `active_minute`, its
/// execution waiting in AwaitStop.
fn running(active_minute: i64) -> Session {
    let mut session = admitted(Status::Running, 1);
    session.task_arn = Some(TASK.into());
    session.started_at = Some(Timestamp::from(at(1)));
    session.last_activity_at = Some(Timestamp::from(at(active_minute)));
    session.stop_token = Some("stop-token".into());
    session
}

struct World {
    store: MemoryStore,
    compute: MemoryCompute,
    workflow: MemoryWorkflow,
    clock: ManualClock,
    settings: ReaperSettings,
}

impl World {
    fn with(session: Session) -> Self {
        let store = MemoryStore::new();
        let mut user = authorized_user(USER);
        user.active_sessions = [SESSION.to_owned()].into();
        store.seed_user(user);
        store.seed_session(session);
        let workflow = MemoryWorkflow::new();
        workflow.set_running(EXECUTION, true);
        Self {
            store,
            compute: MemoryCompute::new(),
            workflow,
            clock: ManualClock::new(at(0)),
            settings: settings(),
        }
    }

    async fn run_at(&self, minute: i64) -> ReapReport {
        self.clock.set(at(minute));
        Reaper {
            settings: &self.settings,
            store: &self.store,
            compute: &self.compute,
            workflow: &self.workflow,
            clock: &self.clock,
        }
        .run()
        .await
        .unwrap()
    }

    fn session(&self) -> Session {
        self.store.stored_session(&id()).unwrap()
    }
}

#[tokio::test]
async fn an_idle_running_session_is_stopped_through_its_await_stop_token() {
    let world = World::with(running(5));
    world.compute.seed_task(task(TASK, SESSION, 0));

    let before = world.run_at(34).await;
    assert!(before.idle.is_empty(), "{before:?}");
    assert_eq!(world.session().status, Status::Running);

    let report = world.run_at(35).await;
    assert_eq!(report.idle, [SESSION]);
    assert_eq!(report.judged, 1);
    let session = world.session();
    assert_eq!(
        (session.status, session.stop_reason),
        (Status::Stopping, Some(Reason::Idle))
    );
    assert_eq!(
        world.workflow.delivered()[0].outcome,
        TokenOutcome::Succeeded(json!({ "reason": "idle" }))
    );
}

#[tokio::test]
async fn a_session_past_its_users_max_lifetime_is_stopped_however_active_it_is() {
    let world = World::with(running(60));
    let mut user = authorized_user(USER);
    user.max_lifetime_s = Some(3600);
    user.active_sessions = [SESSION.to_owned()].into();
    world.store.seed_user(user);
    world.compute.seed_task(task(TASK, SESSION, 0));

    let report = world.run_at(60).await;
    assert_eq!(report.max_lifetime, [SESSION]);
    assert_eq!(world.session().stop_reason, Some(Reason::MaxLifetime));
}

#[tokio::test]
async fn a_running_session_whose_task_is_gone_is_stopped_as_lost() {
    let world = World::with(running(5));
    let report = world.run_at(10).await;
    assert_eq!(report.lost, [SESSION]);
    let session = world.session();
    assert_eq!(
        (session.status, session.stop_reason),
        (Status::Stopping, Some(Reason::Lost))
    );
}

#[tokio::test]
async fn only_a_settled_task_of_ours_without_an_active_session_is_stopped_as_an_orphan() {
    let world = World::with(running(5));
    let orphan = "arn:aws:ecs:eu-west-1:000000000000:task/sessions/9";
    let young = "arn:aws:ecs:eu-west-1:000000000000:task/sessions/10";
    let service = "arn:aws:ecs:eu-west-1:000000000000:task/sessions/11";
    world.compute.seed_task(task(TASK, SESSION, 0));
    world.compute.seed_task(task(orphan, "sess-9", 0));
    world.compute.seed_task(task(young, "sess-10", 8));
    world.compute.seed_task(task(service, "ecs-svc/1", 0));

    let report = world.run_at(10).await;
    assert_eq!(report.orphans, [orphan]);
    assert_eq!(
        world.compute.stop_calls(),
        [(orphan.to_owned(), "orphan: no active session".to_owned())]
    );
}

#[tokio::test]
async fn a_session_whose_execution_ended_is_closed_as_lost_only_once_its_task_has_stopped() {
    let mut session = admitted(Status::Provisioning, 1);
    session.task_arn = Some(TASK.into());
    let world = World::with(session);
    world.compute.seed_task(task(TASK, SESSION, 1));
    world.workflow.set_running(EXECUTION, false);

    let first = world.run_at(10).await;
    assert!(first.lost.is_empty(), "{first:?}");
    assert_eq!(world.compute.stop_calls()[0].0, TASK);
    assert_eq!(world.session().status, Status::Provisioning);
    assert_eq!(world.store.slots(USER), [SESSION.to_owned()].into());

    world.compute.set_status(TASK, "STOPPED");
    let second = world.run_at(15).await;
    assert_eq!(second.lost, [SESSION]);
    let session = world.session();
    assert_eq!(
        (session.status, session.stop_reason),
        (Status::Stopped, Some(Reason::Lost))
    );
    assert!(world.store.slots(USER).is_empty());
}

#[tokio::test]
async fn a_session_stuck_starting_has_its_execution_stopped_and_ends_failed_as_lost() {
    let world = World::with(admitted(Status::Starting, 0));
    let early = world.run_at(20).await;
    assert!(early.lost.is_empty(), "at the deadline, not past it");

    let report = world.run_at(21).await;
    assert_eq!(report.lost, [SESSION]);
    assert_eq!(world.workflow.stopped()[0].0, EXECUTION);
    let session = world.session();
    assert_eq!(
        (session.status, session.stop_reason),
        (Status::Failed, Some(Reason::Lost))
    );
    assert_eq!(
        session.failure_cause.as_deref(),
        Some("no progress while starting for more than 1200 s")
    );
    assert!(world.store.slots(USER).is_empty());
}
