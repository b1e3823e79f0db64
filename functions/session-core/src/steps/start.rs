//! Start: admits a session (Authorize's rules: user, image, slot) before it starts the
//! session's execution, so that a refusal is an answer to whoever asked and not a
//! failed execution later. The execution's own Authorize admits it again, which the
//! store takes as the same admission. An admitted session whose execution could not be
//! started is abandoned, so that it holds no slot.

use serde::Serialize;

use crate::config::AdmissionSettings;
use crate::error::{Error, Result};
use crate::ports::{Clock, Registry, SessionStore, Workflow};
use crate::session::{Session, SessionId, UserId, Version};
use crate::steps::authorize::{admit, Admission};

/// A request to start a session, its parts already read.
#[derive(Clone, Debug, PartialEq)]
pub struct StartSession {
    pub session_id: SessionId,
    /// The id was derived from the caller's idempotency key, so it may name a session a
    /// first attempt already admitted: that one is started again, never admitted again.
    pub keyed: bool,
    pub user_id: String,
    pub version: Version,
    /// The ARN the execution gets: recorded on the session from its admission, so that
    /// the reaper can look the execution up before it has said anything.
    pub execution_arn: String,
}

/// The execution's input, which Authorize reads as its `request`.
#[derive(Serialize)]
struct ExecutionInput<'a> {
    user_id: &'a str,
    version: &'a Version,
}

/// What became of a start.
#[derive(Clone, Debug, PartialEq)]
pub enum Started {
    /// The session's execution runs, started now or by an earlier attempt under the
    /// same key (`replayed`); `session` is as stored after the start.
    Accepted { session: Session, replayed: bool },
    /// The key names a session of another version: it was used for another start, or
    /// two first attempts under it raced with different versions.
    KeyReused(Session),
}

/// Starts a session: admits it unless an earlier attempt under the same key did, then
/// starts its execution under the session id. Starting is idempotent on that name, so
/// a replay also finishes a first attempt that was admitted but never started.
pub async fn start(
    request: StartSession,
    admission: &AdmissionSettings,
    state_machine_arn: &str,
    store: &impl SessionStore,
    registry: &impl Registry,
    workflow: &impl Workflow,
    clock: &impl Clock,
) -> Result<Started> {
    let StartSession {
        session_id,
        keyed,
        user_id,
        version,
        execution_arn,
    } = request;
    let user_id = UserId::parse(&user_id)?;
    let replay = if keyed {
        store.session(&session_id).await?
    } else {
        None
    };
    let replayed = match replay {
        Some(first) if first.version != version => return Ok(Started::KeyReused(first)),
        Some(_) => true,
        None => {
            admit(
                Admission {
                    session_id: session_id.clone(),
                    user_id: user_id.clone(),
                    version: version.clone(),
                    execution_arn: Some(execution_arn),
                },
                admission,
                store,
                registry,
                clock,
            )
            .await?;
            false
        }
    };

    let input = serde_json::to_value(ExecutionInput {
        user_id: &user_id,
        version: &version,
    })
    .map_err(|e| Error::Aws {
        operation: "serialize execution input",
        message: e.to_string(),
    })?;
    let started = workflow
        .start(state_machine_arn, session_id.as_str(), &input)
        .await;
    if let Err(err) = started {
        // A replay's session is the first attempt's: whether or not its execution
        // runs, that attempt admitted it and it is not this one's to take back.
        if !replayed {
            abandon(&session_id, &user_id, store).await;
        }
        return Err(err);
    }
    let session = store
        .session(&session_id)
        .await?
        .ok_or_else(|| Error::SessionNotFound(session_id.to_string()))?;
    if session.version != version {
        return Ok(Started::KeyReused(session));
    }
    tracing::info!(session_id = %session_id, replayed, "session start accepted");
    Ok(Started::Accepted { session, replayed })
}

/// The execution could not be started: the admitted session is removed and its slot
/// given back, as if never requested, so that a retry (under the same key, or another)
/// starts afresh. Should the execution have started after all (an answer lost on the
/// way), its Authorize records the session again and a retry under the same key finds
/// it. The start's own error is what the caller must hear, so a failure here is only
/// logged.
async fn abandon(id: &SessionId, user_id: &str, store: &impl SessionStore) {
    match store.discard_unstarted(id).await {
        Ok(true) => {
            if let Err(err) = store.release_slot(user_id, id).await {
                tracing::error!(session_id = %id, error = %err, "could not release the slot");
            }
        }
        // Its execution got to it first: the session lives on as its own.
        Ok(false) => {}
        Err(err) => {
            tracing::error!(session_id = %id, error = %err, "could not discard the unstarted session");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use chrono::{DateTime, Utc};
    use serde_json::json;

    use super::*;
    use crate::ports::User;
    use crate::session::Status;
    use crate::template::SessionTemplate;
    use crate::testing::{
        authorized_user, ready, FixedClock, ItemRead, MemoryRegistry, MemoryStore, MemoryWorkflow,
    };

    const STATE_MACHINE: &str = "arn:aws:states:eu-west-1:123456789012:stateMachine:sessions";

    /// The ports a start uses, as in-memory twins.
    struct World {
        store: Arc<MemoryStore>,
        registry: MemoryRegistry,
        workflow: MemoryWorkflow,
    }

    /// The store as the next StartExecution found it.
    #[derive(Debug)]
    struct AtStart {
        session: Option<Session>,
        slots: Vec<String>,
        /// Every read of the store until then.
        reads: Vec<ItemRead>,
    }

    impl World {
        /// Alice may start sessions, and every image of the template is pushed at 1.0.0.
        fn new() -> Self {
            Self::with(Some(authorized_user("alice")), None)
        }

        /// `user` stored if any, and every image of the template pushed at 1.0.0 but
        /// `missing`'s.
        fn with(user: Option<User>, missing: Option<&str>) -> Self {
            let store = MemoryStore::new();
            if let Some(user) = user {
                store.seed_user(user);
            }
            let registry = MemoryRegistry::new();
            let settings = settings();
            registry.push_all(
                settings
                    .template
                    .repositories()
                    .filter(|r| Some(*r) != missing),
                "1.0.0",
            );
            World {
                store: Arc::new(store),
                registry,
                workflow: MemoryWorkflow::new(),
            }
        }

        async fn run(&self, request: StartSession) -> Result<Started> {
            start(
                request,
                &settings(),
                STATE_MACHINE,
                &*self.store,
                &self.registry,
                &self.workflow,
                &FixedClock(now()),
            )
            .await
        }

        fn slots(&self, user_id: &str) -> Vec<String> {
            self.store.slots(user_id).into_iter().collect()
        }

        fn stored(&self, id: &SessionId) -> Option<Session> {
            self.store.stored_session(id)
        }

        /// The store's reads from the `from`th on.
        fn reads(&self, from: usize) -> Vec<ItemRead> {
            self.store.reads()[from..].to_vec()
        }

        /// Keeps the store as the next StartExecution finds `id` and alice's slots.
        fn watch_start(&self, id: &str) -> Arc<Mutex<Option<AtStart>>> {
            let seen = Arc::new(Mutex::new(None));
            let (store, found, id) = (self.store.clone(), seen.clone(), self::id(id));
            self.workflow.on_start(move || {
                *found.lock().unwrap() = Some(AtStart {
                    session: store.stored_session(&id),
                    slots: store.slots("alice").into_iter().collect(),
                    reads: store.reads(),
                });
            });
            seen
        }
    }

    fn at_start(seen: &Mutex<Option<AtStart>>) -> AtStart {
        seen.lock()
            .unwrap()
            .take()
            .expect("StartExecution was called")
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-26T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn settings() -> AdmissionSettings {
        AdmissionSettings {
            max_sessions: 1,
            check_images: true,
            template: SessionTemplate::default(),
            max_lifetime_s: 8 * 3600,
        }
    }

    fn request(id: &str, keyed: bool, version: &str) -> StartSession {
        StartSession {
            session_id: SessionId::parse(id).unwrap(),
            keyed,
            user_id: "alice".into(),
            version: Version::parse(version).unwrap(),
            execution_arn: execution_arn(id),
        }
    }

    fn execution_arn(id: &str) -> String {
        format!("arn:aws:states:eu-west-1:123456789012:execution:sessions:{id}")
    }

    fn id(raw: &str) -> SessionId {
        SessionId::parse(raw).unwrap()
    }

    fn user_read() -> ItemRead {
        ItemRead::User("alice".into())
    }

    fn session_read(raw: &str) -> ItemRead {
        ItemRead::Session(id(raw))
    }

    fn throttled() -> Error {
        Error::Throttled {
            operation: "StartExecution",
            message: "Rate exceeded".into(),
        }
    }

    #[tokio::test]
    async fn a_session_is_admitted_then_its_execution_started_under_its_id() {
        let world = World::new();
        let seen = world.watch_start("sess-1");
        let started = world.run(request("sess-1", false, "1.0.0")).await.unwrap();

        let session = world.stored(&id("sess-1")).expect("the admitted session");
        assert_eq!(
            started,
            Started::Accepted {
                session: session.clone(),
                replayed: false
            }
        );
        assert_eq!(
            session.execution_arn.as_deref(),
            Some("arn:aws:states:eu-west-1:123456789012:execution:sessions:sess-1")
        );
        let at_start = at_start(&seen);
        assert_eq!(
            at_start.session.as_ref(),
            Some(&session),
            "admitted before the start"
        );
        assert_eq!(at_start.slots, ["sess-1"]);
        assert_eq!(at_start.reads, [user_read()]);
        assert_eq!(
            world.store.reads(),
            [user_read(), session_read("sess-1")],
            "the session answered is read after the start"
        );
        assert_eq!(
            world.workflow.start_calls(),
            [(
                MemoryWorkflow::execution_arn(STATE_MACHINE, "sess-1"),
                json!({"user_id": "alice", "version": "1.0.0"})
            )]
        );
        assert_eq!(
            MemoryWorkflow::execution_arn(STATE_MACHINE, "sess-1"),
            execution_arn("sess-1"),
            "the ARN recorded is the execution's"
        );
        assert_eq!(world.slots("alice"), ["sess-1"]);
    }

    #[tokio::test]
    async fn a_session_whose_execution_cannot_start_is_abandoned_and_its_slot_freed() {
        let world = World::new();
        world.workflow.refuse_next_start(throttled());
        let seen = world.watch_start("sess-1");
        let err = world
            .run(request("sess-1", false, "1.0.0"))
            .await
            .unwrap_err();

        assert!(matches!(err, Error::Throttled { .. }), "{err:?}");
        let at_start = at_start(&seen);
        assert_eq!(
            at_start.session.map(|s| s.status),
            Some(Status::Starting),
            "admitted before the start"
        );
        assert_eq!(at_start.slots, ["sess-1"]);
        assert_eq!(at_start.reads, [user_read()]);
        assert_eq!(world.stored(&id("sess-1")), None);
        assert!(world.slots("alice").is_empty());
        assert_eq!(world.store.discards(), [(id("sess-1"), true)]);
        assert_eq!(world.store.reads(), [user_read()], "nothing read after");
        assert_eq!(world.workflow.start_calls().len(), 1);
        assert!(world.workflow.started().is_empty());
    }

    #[tokio::test]
    async fn a_session_its_execution_got_to_before_the_start_failed_is_left_to_that_execution() {
        let world = World::new();
        world.workflow.fail_next_start_after_starting(throttled());
        let store = world.store.clone();
        world.workflow.on_start(move || {
            // The execution's Authorize admits it again, and it moves on.
            let admitted = store.edit(&id("sess-1"), |s| s.status = Status::Provisioning);
            assert!(admitted, "admitted before the start");
        });
        let err = world
            .run(request("sess-1", false, "1.0.0"))
            .await
            .unwrap_err();

        assert!(matches!(err, Error::Throttled { .. }), "{err:?}");
        assert_eq!(
            world.stored(&id("sess-1")).map(|s| s.status),
            Some(Status::Provisioning)
        );
        assert_eq!(world.slots("alice"), ["sess-1"], "the slot stays its own");
        assert_eq!(
            world.store.discards(),
            [(id("sess-1"), false)],
            "the discard was tried, and refused"
        );
        assert_eq!(world.store.reads(), [user_read()], "nothing read after");
        assert_eq!(world.workflow.started().len(), 1, "the execution runs");
    }

    #[tokio::test]
    async fn a_refused_admission_never_starts_the_execution() {
        let unauthorized = World::with(None, None);
        let err = unauthorized
            .run(request("sess-1", false, "1.0.0"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::NotAuthorized), "{err:?}");

        // Each of the template's images is checked.
        let settings = settings();
        let repositories: Vec<&str> = settings.template.repositories().collect();
        assert!(!repositories.is_empty());
        let mut no_image = Vec::new();
        for repository in repositories {
            let world = World::with(Some(authorized_user("alice")), Some(repository));
            let err = world
                .run(request("sess-1", false, "1.0.0"))
                .await
                .unwrap_err();
            assert!(
                matches!(&err, Error::ImageNotFound { image } if *image == format!("{repository}:1.0.0")),
                "{err:?}"
            );
            assert_eq!(world.stored(&id("sess-1")), None);
            no_image.push(world);
        }

        let full = World::new();
        full.run(request("sess-1", false, "1.0.0")).await.unwrap();
        let err = full
            .run(request("sess-2", false, "1.0.0"))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::SessionLimitReached { max: 1, active } if active == &["sess-1"]),
            "{err:?}"
        );
        assert_eq!(full.stored(&id("sess-2")), None);

        for world in no_image.iter().chain([&unauthorized, &full]) {
            assert!(
                world.store.discards().is_empty(),
                "refused, so there is nothing to abandon"
            );
        }
        assert_eq!(unauthorized.workflow.start_calls().len(), 0);
        for world in &no_image {
            assert_eq!(world.workflow.start_calls().len(), 0);
        }
        assert_eq!(
            full.workflow.start_calls().len(),
            1,
            "only the first session's"
        );
    }

    #[tokio::test]
    async fn an_invalid_user_id_is_refused_before_anything_is_read() {
        let world = World::new();
        world.store.seed_user(authorized_user(" "));
        let mut bad = request("sess-1", true, "1.0.0");
        bad.user_id = " ".into();
        let err = world.run(bad).await.unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
        assert_eq!(world.store.reads(), [], "not even the replay lookup");
        assert_eq!(world.stored(&id("sess-1")), None);
        assert!(world.workflow.start_calls().is_empty());
    }

    #[tokio::test]
    async fn a_retry_under_the_same_key_after_a_failed_start_admits_the_session_afresh() {
        let world = World::new();
        world.workflow.refuse_next_start(throttled());
        world
            .run(request("sess-k", true, "1.0.0"))
            .await
            .unwrap_err();
        assert_eq!(world.store.discards(), [(id("sess-k"), true)]);
        let mark = world.store.reads().len();

        let seen = world.watch_start("sess-k");
        let started = world.run(request("sess-k", true, "1.0.0")).await.unwrap();
        assert!(
            matches!(
                started,
                Started::Accepted {
                    replayed: false,
                    ..
                }
            ),
            "{started:?}"
        );
        let at_start = at_start(&seen);
        assert!(at_start.session.is_some(), "admitted before the start");
        assert_eq!(at_start.slots, ["sess-k"]);
        assert_eq!(
            at_start.reads[mark..],
            [session_read("sess-k"), user_read()]
        );
        assert_eq!(
            world.reads(mark),
            [session_read("sess-k"), user_read(), session_read("sess-k")]
        );
        assert_eq!(world.store.discards().len(), 1, "the first attempt's only");
        assert_eq!(world.workflow.start_calls().len(), 2);
        assert_eq!(world.workflow.started().len(), 1);
        assert_eq!(world.slots("alice"), ["sess-k"]);
    }

    #[tokio::test]
    async fn a_retry_under_the_same_key_starts_the_same_session_again_without_a_second_admission() {
        let world = World::new();
        let first = world.run(request("sess-k", true, "1.0.0")).await.unwrap();
        let mark = world.store.reads().len();

        let seen = world.watch_start("sess-k");
        let again = world.run(request("sess-k", true, "1.0.0")).await.unwrap();
        let Started::Accepted { session, replayed } = again else {
            panic!("{again:?}")
        };
        assert!(replayed);
        assert_eq!(
            Started::Accepted {
                session,
                replayed: false
            },
            first
        );
        assert_eq!(at_start(&seen).reads[mark..], [session_read("sess-k")]);
        assert_eq!(
            world.reads(mark),
            [session_read("sess-k"), session_read("sess-k")],
            "no user read: no admission"
        );
        let executions = world.workflow.start_calls();
        assert_eq!(executions.len(), 2);
        assert_eq!(executions[0], executions[1], "the same execution, twice");
        assert_eq!(world.workflow.started().len(), 1);
    }

    #[tokio::test]
    async fn a_replay_whose_start_fails_keeps_the_first_attempts_session() {
        let world = World::new();
        world.run(request("sess-k", true, "1.0.0")).await.unwrap();
        let mark = world.store.reads().len();

        world.workflow.refuse_next_start(throttled());
        let err = world
            .run(request("sess-k", true, "1.0.0"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Throttled { .. }), "{err:?}");
        assert!(world.stored(&id("sess-k")).is_some());
        assert_eq!(world.slots("alice"), ["sess-k"]);
        assert_eq!(world.reads(mark), [session_read("sess-k")]);
        assert!(world.store.discards().is_empty(), "nothing abandoned");
        assert_eq!(world.workflow.start_calls().len(), 2);
    }

    #[tokio::test]
    async fn a_retry_under_the_same_key_with_another_version_starts_nothing() {
        // Only 1.0.0 is pushed: an admission of 2.0.0 would be refused.
        let world = World::new();
        world.run(request("sess-k", true, "1.0.0")).await.unwrap();
        let mark = world.store.reads().len();

        let reused = world.run(request("sess-k", true, "2.0.0")).await.unwrap();
        let Started::KeyReused(first) = reused else {
            panic!("{reused:?}")
        };
        assert_eq!(first.version.as_str(), "1.0.0");
        assert_eq!(world.reads(mark), [session_read("sess-k")]);
        assert_eq!(world.workflow.start_calls().len(), 1, "the first's only");
        assert_eq!(world.slots("alice"), ["sess-k"]);
    }

    #[tokio::test]
    async fn two_first_attempts_under_one_key_with_different_versions_end_in_a_reused_key() {
        let world = World::new();
        let mut racing = Session::new(
            id("sess-k"),
            UserId::parse("alice").unwrap(),
            Version::parse("2.0.0").unwrap(),
            now(),
        );
        racing.execution_arn = Some("arn:exec:sess-k".into());
        // The other attempt admits its session after this one's lookup found none.
        let store = world.store.clone();
        world.store.on_open(move || {
            ready(store.open(&racing, 1)).expect("the racing admission");
        });

        let reused = world.run(request("sess-k", true, "1.0.0")).await.unwrap();
        let Started::KeyReused(first) = reused else {
            panic!("{reused:?}")
        };
        assert_eq!(first.version.as_str(), "2.0.0");
        assert_eq!(
            world.store.reads(),
            [session_read("sess-k"), user_read(), session_read("sess-k")]
        );
        assert_eq!(
            world.slots("alice"),
            ["sess-k"],
            "one slot for the one session"
        );
    }

    #[tokio::test]
    async fn without_a_key_no_earlier_session_is_looked_up() {
        let world = World::new();
        world.run(request("sess-1", false, "1.0.0")).await.unwrap();
        assert_eq!(world.store.reads().first(), Some(&user_read()));
    }
}
