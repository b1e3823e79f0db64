//! Record (`steps::record`): progress written once, repeated safely, and announced on
//! the bus only in the status it announces.

use chrono::{DateTime, Utc};
use serde_json::json;

use session_core::config::Access;
use session_core::events::{SESSION_FAILED, SESSION_RUNNING, SESSION_STOPPED};
use session_core::ports::SessionStore;
use session_core::session::{Reason, Session, SessionId, Status};
use session_core::steps::record::{
    record, CaughtError, NetworkInfo, RecordContext, RecordInput, RecordOutput,
};
use session_core::template::SessionTemplate;
use session_core::testing::{
    authorized_user, gateway_access, session_in, FixedClock, MemoryEventBus, MemoryStore,
    MemoryWorkflow, TokenOutcome,
};
use session_core::Error;

const USER: &str = "u-1";
const SESSION: &str = "sess-1";

fn id() -> SessionId {
    SessionId::parse(SESSION).unwrap()
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-01T10:02:30Z")
        .unwrap()
        .with_timezone(&Utc)
}

struct World {
    template: SessionTemplate,
    access: Access,
    store: MemoryStore,
    workflow: MemoryWorkflow,
    bus: MemoryEventBus,
    clock: FixedClock,
}

impl World {
    fn new(access: Access) -> Self {
        let store = MemoryStore::new();
        let mut user = authorized_user(USER);
        user.active_sessions = [SESSION.to_owned()].into();
        store.seed_user(user);
        Self {
            template: SessionTemplate::default(),
            access,
            store,
            workflow: MemoryWorkflow::new(),
            bus: MemoryEventBus::new(),
            clock: FixedClock(now()),
        }
    }

    fn gateway() -> Self {
        Self::new(gateway_access())
    }

    fn with(self, session: Session) -> Self {
        self.store.seed_session(session);
        self
    }

    async fn record(&self, input: RecordInput) -> Result<RecordOutput, Error> {
        let ctx = RecordContext {
            template: &self.template,
            access: &self.access,
            store: &self.store,
            workflow: &self.workflow,
            bus: &self.bus,
            clock: &self.clock,
        };
        record(input, &ctx).await
    }

    fn session(&self) -> Session {
        self.store.stored_session(&id()).unwrap()
    }
}

fn provisioning() -> Session {
    let mut session = session_in(SESSION, USER, Status::Provisioning);
    session.task_arn = Some("arn:aws:ecs:eu-west-1:000000000000:task/sessions/1".into());
    session.ip_token = Some("ip-token".into());
    session
}

fn running_input(public_ip: Option<&str>) -> RecordInput {
    RecordInput::Running {
        session_id: id(),
        network: NetworkInfo {
            public_ip: public_ip.map(str::to_owned),
            private_ip: Some("10.0.0.5".into()),
            eni_id: Some("eni-1".into()),
        },
    }
}

#[tokio::test]
async fn recording_running_stores_the_urls_and_ports_and_announces_the_session_once_per_call() {
    let world = World::gateway().with(provisioning());
    let out = world.record(running_input(None)).await.unwrap();

    assert_eq!(out.status, Status::Running);
    let session = world.session();
    assert_eq!(session.status, Status::Running);
    assert_eq!(session.started_at, Some(now().into()));
    assert_eq!(session.ip_token, None, "WaitForIp's token is spent");
    assert_eq!(session.private_ip.as_deref(), Some("10.0.0.5"));
    assert_eq!(session.service_ports, world.template.service_ports());
    assert_eq!(
        session.urls.0.keys().collect::<Vec<_>>(),
        ["api", "frontend", "suv_ui"]
    );
    assert!(session
        .urls
        .0
        .values()
        .all(|url| url.starts_with("https://") && url.contains(SESSION)));
    assert_eq!(out.urls, session.urls.0);

    // A retried RecordRunning changes nothing and announces again (consumers dedupe).
    let again = world.record(running_input(None)).await.unwrap();
    assert_eq!(again, out);
    assert_eq!(world.session(), session);
    assert_eq!(world.bus.detail_types(), [SESSION_RUNNING, SESSION_RUNNING]);
    assert_eq!(world.bus.published()[0].1["status"], json!("running"));
}

#[tokio::test]
async fn running_recorded_after_a_stop_request_leaves_the_session_stopping_and_announces_nothing() {
    let mut session = provisioning();
    session.status = Status::Stopping;
    let world = World::gateway().with(session);
    let out = world.record(running_input(None)).await.unwrap();
    assert_eq!(out.status, Status::Stopping);
    assert_eq!(world.session().started_at, None);
    assert!(world.bus.published().is_empty());
}

#[tokio::test]
async fn in_direct_access_running_needs_the_public_ip() {
    let world = World::new(Access::Direct).with(provisioning());
    let err = world.record(running_input(None)).await.unwrap_err();
    assert_eq!(err.error_type(), "InvalidInput");
    assert_eq!(world.session().status, Status::Provisioning);

    world
        .record(running_input(Some("203.0.113.7")))
        .await
        .unwrap();
    let session = world.session();
    assert_eq!(session.public_ip.as_deref(), Some("203.0.113.7"));
    assert_eq!(
        session.urls.get("api"),
        Some("http://203.0.113.7:8000"),
        "direct URLs are the task's ports on its public IP"
    );
}

#[tokio::test]
async fn the_stop_token_is_stored_and_resumed_at_once_if_a_stop_came_first() {
    let mut running = provisioning();
    running.status = Status::Running;
    let world = World::gateway().with(running);
    let token = |t: &str| RecordInput::StopToken {
        session_id: id(),
        task_token: t.into(),
    };
    world.record(token("stop-1")).await.unwrap();
    assert_eq!(world.session().stop_token.as_deref(), Some("stop-1"));
    assert!(world.workflow.completions().is_empty(), "nothing to resume");

    world.store.edit(&id(), |s| {
        s.status = Status::Stopping;
        s.stop_reason = Some(Reason::Idle);
    });
    world.record(token("stop-2")).await.unwrap();
    let delivered = world.workflow.delivered();
    assert_eq!(delivered.len(), 1);
    assert_eq!(
        (delivered[0].token.as_str(), &delivered[0].outcome),
        (
            "stop-2",
            &TokenOutcome::Succeeded(json!({ "reason": "idle" }))
        )
    );
}

#[tokio::test]
async fn the_tasks_stopped_token_is_resumed_at_once_only_if_the_awaited_task_has_stopped() {
    const TASK: &str = "arn:aws:ecs:eu-west-1:000000000000:task/sessions/1";
    let mut stopping = provisioning();
    stopping.status = Status::Stopping;
    stopping.task_status = Some("STOPPED".into());
    let world = World::gateway().with(stopping);
    let token = |t: &str, awaiting: &[&str]| RecordInput::TasksStoppedToken {
        session_id: id(),
        task_token: t.into(),
        awaiting_tasks: awaiting.iter().map(|a| (*a).to_owned()).collect(),
    };

    world
        .record(token(
            "other",
            &["arn:aws:ecs:eu-west-1:000000000000:task/sessions/9"],
        ))
        .await
        .unwrap();
    world.record(token("none", &[])).await.unwrap();
    assert!(
        world.workflow.completions().is_empty(),
        "a task the events do not follow waits for the state's timeout"
    );
    world.record(token("own", &[TASK])).await.unwrap();
    assert_eq!(world.workflow.delivered()[0].token, "own");
    assert_eq!(world.session().tasks_stopped_token.as_deref(), Some("own"));
}

#[tokio::test]
async fn tokens_of_an_unknown_session_are_session_not_found() {
    let world = World::gateway();
    let err = world
        .record(RecordInput::StopToken {
            session_id: id(),
            task_token: "t".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "SessionNotFound");
    assert!(world.store.stored_session(&id()).is_none());
}

#[tokio::test]
async fn recording_stopped_ends_the_session_with_its_first_reason_and_leaves_the_active_index() {
    let mut stopping = provisioning();
    stopping.status = Status::Stopping;
    stopping.stop_reason = Some(Reason::User);
    stopping.stop_token = Some("stop-token".into());
    let world = World::gateway().with(stopping);
    let stopped = || RecordInput::Stopped {
        session_id: id(),
        reason: Reason::Idle,
    };

    let out = world.record(stopped()).await.unwrap();
    assert_eq!(
        (out.status, out.stop_reason),
        (Status::Stopped, Some(Reason::User))
    );
    let session = world.session();
    assert_eq!(session.stopped_at, Some(now().into()));
    assert_eq!((session.ip_token, session.stop_token), (None, None));
    assert!(world
        .store
        .active_sessions()
        .await
        .unwrap()
        .sessions
        .is_empty());

    world.record(stopped()).await.unwrap();
    assert_eq!(world.session().stopped_at, Some(now().into()));
    assert_eq!(world.bus.detail_types(), [SESSION_STOPPED, SESSION_STOPPED]);
}

#[tokio::test]
async fn a_failure_before_authorize_created_the_session_records_it_failed_with_the_reason() {
    let world = World::gateway();
    let out = world
        .record(RecordInput::Failed {
            session_id: id(),
            request: Some(json!({ "user_id": USER, "version": "1.2.3" })),
            error: CaughtError {
                error: "SessionLimitReached".into(),
                cause: Some(
                    json!({ "errorMessage": "session limit of 1 reached; active: sess-0" })
                        .to_string(),
                ),
            },
        })
        .await
        .unwrap();
    assert_eq!(
        (out.status, out.stop_reason),
        (Status::Failed, Some(Reason::SessionLimit))
    );
    let session = world.session();
    assert_eq!(session.user_id, USER);
    assert_eq!(session.version.as_str(), "1.2.3");
    assert_eq!(
        session.failure_cause.as_deref(),
        Some("SessionLimitReached: session limit of 1 reached; active: sess-0")
    );
    assert!(
        world
            .store
            .active_sessions()
            .await
            .unwrap()
            .sessions
            .is_empty(),
        "a failed session is not active"
    );
    assert_eq!(world.bus.detail_types(), [SESSION_FAILED]);
}

#[tokio::test]
async fn a_failure_of_a_launched_session_ends_it_and_one_of_an_ended_session_changes_nothing() {
    let world = World::gateway().with(provisioning());
    let failed = || RecordInput::Failed {
        session_id: id(),
        request: Some(json!({ "user_id": USER })),
        error: CaughtError {
            error: "States.Timeout".into(),
            cause: None,
        },
    };
    let out = world.record(failed()).await.unwrap();
    assert_eq!(
        (out.status, out.stop_reason),
        (Status::Failed, Some(Reason::Timeout))
    );
    assert_eq!(world.session().ip_token, None);

    let stopped = World::gateway().with(session_in(SESSION, USER, Status::Stopped));
    let out = stopped.record(failed()).await.unwrap();
    assert_eq!(
        out.status,
        Status::Stopped,
        "an ended session stays as it ended"
    );
    assert!(stopped.bus.published().is_empty());
}

#[tokio::test]
async fn a_failure_without_the_user_in_the_request_is_invalid_input() {
    let world = World::gateway();
    let err = world
        .record(RecordInput::Failed {
            session_id: id(),
            request: None,
            error: CaughtError {
                error: "NotAuthorized".into(),
                cause: None,
            },
        })
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "InvalidInput");
    assert!(world.store.stored_session(&id()).is_none());
}
