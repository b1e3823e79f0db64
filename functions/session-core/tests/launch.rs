//! Launch (`steps::launch`): the user's storage and role made once, a task definition
//! registered once per (user, version, template), and one task per session.

use std::sync::Arc;

use session_core::config::LaunchSettings;
use session_core::ports::User;
use session_core::session::{Reason, SessionId, Status, UserId, Version};
use session_core::steps::authorize::SessionRef;
use session_core::steps::launch::{launch, LaunchOutput};
use session_core::template::SessionTemplate;
use session_core::testing::{
    authorized_user, launch_settings, session_in, FixedClock, MemoryCompute, MemoryStorage,
    MemoryStore, MemoryTaskRoles,
};
use session_core::Error;

const USER: &str = "u-1";

struct World {
    settings: LaunchSettings,
    store: Arc<MemoryStore>,
    compute: MemoryCompute,
    storage: MemoryStorage,
    roles: MemoryTaskRoles,
}

impl World {
    /// USER, admitted into SESSION ids `sessions`, all `starting`.
    fn new(sessions: &[&str]) -> Self {
        let store = Arc::new(MemoryStore::new());
        let mut user = authorized_user(USER);
        user.active_sessions = sessions.iter().map(|s| (*s).to_owned()).collect();
        store.seed_user(user);
        for id in sessions {
            store.seed_session(session_in(id, USER, Status::Starting));
        }
        Self {
            settings: launch_settings(SessionTemplate::default()),
            store,
            compute: MemoryCompute::new(),
            storage: MemoryStorage::new(),
            roles: MemoryTaskRoles::new(),
        }
    }

    async fn launch(&self, session: &str, version: &str) -> Result<LaunchOutput, Error> {
        let session = SessionRef {
            session_id: SessionId::parse(session).unwrap(),
            user_id: UserId::parse(USER).unwrap(),
            version: Version::parse(version).unwrap(),
        };
        launch(
            session,
            &self.settings,
            &*self.store,
            &self.compute,
            &self.storage,
            &self.roles,
            &FixedClock::default(),
        )
        .await
    }

    fn user(&self) -> User {
        self.store.stored_user(USER).unwrap()
    }

    fn status(&self, session: &str) -> Status {
        let id = SessionId::parse(session).unwrap();
        self.store.stored_session(&id).unwrap().status
    }
}

#[tokio::test]
async fn a_users_first_launch_makes_their_access_point_and_role_registers_and_runs_the_task() {
    let world = World::new(&["sess-1"]);
    let out = world.launch("sess-1", "1.2.3").await.unwrap();

    let user = world.user();
    let access_point = user.efs_access_point_id.clone().unwrap();
    let role = user.task_role_arn.clone().unwrap();
    assert_eq!(world.storage.calls(), [USER]);
    assert_eq!(
        world.roles.calls(),
        [(USER.to_owned(), access_point.clone())],
        "the role may mount only the user's access point"
    );

    let definitions = world.compute.definitions();
    let spec = &definitions[&out.task_definition_arn];
    assert_eq!(spec.task_role_arn, role);
    assert_eq!(spec.efs_access_point_id, access_point);
    assert!(spec
        .containers
        .iter()
        .any(|c| c.image.ends_with("/api_service:1.2.3")));
    assert_eq!(
        user.task_definitions.values().collect::<Vec<_>>(),
        [&out.task_definition_arn],
        "the revision is cached on the user"
    );
    assert!(user
        .task_definitions
        .keys()
        .all(|k| k.starts_with("1.2.3:")));

    let session = world
        .store
        .stored_session(&SessionId::parse("sess-1").unwrap())
        .unwrap();
    assert_eq!(session.status, Status::Provisioning);
    assert_eq!(session.task_arn.as_deref(), Some(out.task_arn.as_str()));
    assert!(
        session.awaits_health,
        "the default template has health checks"
    );
    let task = world.compute.task(&out.task_arn).unwrap();
    assert_eq!(task.started_by.as_deref(), Some("sess-1"));
    assert_eq!(task.task_definition_arn, out.task_definition_arn);
}

#[tokio::test]
async fn a_later_launch_of_the_same_user_and_version_reuses_storage_role_and_revision() {
    let world = World::new(&["sess-1", "sess-2"]);
    let first = world.launch("sess-1", "1.2.3").await.unwrap();
    let second = world.launch("sess-2", "1.2.3").await.unwrap();

    assert_eq!(second.task_definition_arn, first.task_definition_arn);
    assert_ne!(second.task_arn, first.task_arn);
    assert_eq!(world.storage.calls().len(), 1);
    assert_eq!(world.roles.calls().len(), 1);
    assert_eq!(world.compute.definitions().len(), 1);
    assert_eq!(world.compute.run_calls(), 2);
}

#[tokio::test]
async fn another_version_registers_its_own_revision_and_keeps_the_first_cached() {
    let world = World::new(&["sess-1", "sess-2"]);
    let first = world.launch("sess-1", "1.2.3").await.unwrap();
    let second = world.launch("sess-2", "2.0.0").await.unwrap();
    assert_ne!(second.task_definition_arn, first.task_definition_arn);
    assert_eq!(world.user().task_definitions.len(), 2);
}

#[tokio::test]
async fn a_retried_launch_starts_no_second_task() {
    let world = World::new(&["sess-1"]);
    let first = world.launch("sess-1", "1.2.3").await.unwrap();
    let retry = world.launch("sess-1", "1.2.3").await.unwrap();
    assert_eq!(retry, first);
    assert_eq!(world.compute.run_calls(), 1);
    assert_eq!(world.compute.tasks().len(), 1);
}

#[tokio::test]
async fn a_deregistered_cached_revision_is_replaced_and_the_task_runs_on_the_fresh_one() {
    let world = World::new(&["sess-1", "sess-2"]);
    let first = world.launch("sess-1", "1.2.3").await.unwrap();
    world.compute.deregister(&first.task_definition_arn);

    let second = world.launch("sess-2", "1.2.3").await.unwrap();
    assert_ne!(second.task_definition_arn, first.task_definition_arn);
    assert_eq!(
        world.user().task_definitions.values().collect::<Vec<_>>(),
        [&second.task_definition_arn],
        "the fresh revision replaces the inactive one in the cache"
    );
    let task = world.compute.task(&second.task_arn).unwrap();
    assert_eq!(task.task_definition_arn, second.task_definition_arn);
}

#[tokio::test]
async fn a_session_stopping_before_its_launch_runs_no_task() {
    let world = World::new(&["sess-1"]);
    world.store.edit(&SessionId::parse("sess-1").unwrap(), |s| {
        s.status = Status::Stopping;
        s.stop_reason = Some(Reason::User);
    });
    let err = world.launch("sess-1", "1.2.3").await.unwrap_err();
    assert_eq!(err.error_type(), "StopRequested");
    assert_eq!(world.compute.run_calls(), 0);
}

#[tokio::test]
async fn an_ended_session_is_a_launch_failure_and_runs_no_task() {
    for ended in [Status::Stopped, Status::Failed] {
        let world = World::new(&["sess-1"]);
        world
            .store
            .edit(&SessionId::parse("sess-1").unwrap(), |s| s.status = ended);
        let err = world.launch("sess-1", "1.2.3").await.unwrap_err();
        assert_eq!(err.error_type(), "LaunchFailed", "{ended}");
        assert_eq!(world.compute.run_calls(), 0, "{ended}");
        assert!(world.storage.calls().is_empty(), "{ended}");
    }
}

#[tokio::test]
async fn a_session_that_ends_while_its_task_launches_has_the_task_stopped() {
    let world = World::new(&["sess-1"]);
    let store = world.store.clone();
    world.compute.on_run_task(move || {
        store.edit(&SessionId::parse("sess-1").unwrap(), |s| {
            s.status = Status::Failed;
        });
    });
    let err = world.launch("sess-1", "1.2.3").await.unwrap_err();
    assert_eq!(err.error_type(), "LaunchFailed");
    let tasks = world.compute.tasks();
    assert_eq!(tasks.len(), 1);
    assert_eq!(
        world.compute.stop_calls(),
        [(
            tasks[0].task_arn.clone(),
            "session ended during launch".to_owned()
        )]
    );
    assert_eq!(world.status("sess-1"), Status::Failed);
}

#[tokio::test]
async fn no_capacity_leaves_the_session_starting_for_the_state_machines_retry() {
    let world = World::new(&["sess-1"]);
    world
        .compute
        .refuse_next_run(Error::CapacityUnavailable("RESOURCE:FARGATE".into()));
    let err = world.launch("sess-1", "1.2.3").await.unwrap_err();
    assert_eq!(err.error_type(), "CapacityUnavailable");
    assert_eq!(world.status("sess-1"), Status::Starting);

    let retry = world.launch("sess-1", "1.2.3").await.unwrap();
    assert_eq!(world.status("sess-1"), Status::Provisioning);
    assert_eq!(world.compute.tasks().len(), 1);
    assert_eq!(world.compute.definitions().len(), 1, "registered once");
    assert!(world.compute.task(&retry.task_arn).is_some());
}

#[tokio::test]
async fn a_launch_for_a_missing_session_or_another_users_session_is_refused() {
    let world = World::new(&[]);
    let err = world.launch("sess-1", "1.2.3").await.unwrap_err();
    assert_eq!(err.error_type(), "SessionNotFound");

    world
        .store
        .seed_session(session_in("sess-1", "u-2", Status::Starting));
    let err = world.launch("sess-1", "1.2.3").await.unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput(e) if e.field == "user_id"),
        "{err}"
    );
    assert_eq!(world.compute.run_calls(), 0);
}
