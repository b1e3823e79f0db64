//! One session and the twins that follow its task, for the steps that act on it.

use crate::config::Access;
use crate::error::Result;
use crate::ports::Delivery;
use crate::session::{Reason, Session, SessionId};
use crate::steps::request_stop::{request_stop, StopRequestOutcome};
use crate::steps::task_events::{on_task_state_change, Outcome, TaskEvent};
use crate::steps::wait_for_ip::{wait_for_ip, WaitForIpInput};

use super::{FixedClock, MemoryNetwork, MemoryStore, MemoryWorkflow, TokenOutcome};

/// One session and the twins that follow its task: the store, the network and the
/// workflow whose tokens the session's execution waits on, at a [`FixedClock`]. The
/// world of WaitForIp, of the task-events handler and of a stop request; each step is
/// run against these twins by the method of its name.
pub struct SessionWorld {
    /// The sessions table: the world's session, and whatever the steps write.
    pub store: MemoryStore,
    /// The network interfaces: none until the test adds them.
    pub network: MemoryNetwork,
    /// The state machine's side: every token is open until a step completes it.
    pub workflow: MemoryWorkflow,
    /// The clock of the steps that read one: [`FixedClock::default`] unless the test
    /// sets another.
    pub clock: FixedClock,
    /// The session the world was made for, stored or not.
    pub session_id: SessionId,
}

impl SessionWorld {
    /// A world in which `session` is stored, alone: no user, no network interface, no
    /// token completed.
    pub fn with(session: Session) -> Self {
        let session_id = session.session_id.clone();
        let store = MemoryStore::new();
        store.seed_session(session);
        Self {
            store,
            network: MemoryNetwork::new(),
            workflow: MemoryWorkflow::new(),
            clock: FixedClock::default(),
            session_id,
        }
    }

    /// A world made for `session_id` in which nothing is stored: the steps look for a
    /// session that does not exist.
    ///
    /// # Panics
    /// If `session_id` is not a valid session id.
    pub fn without(session_id: &str) -> Self {
        Self {
            store: MemoryStore::new(),
            network: MemoryNetwork::new(),
            workflow: MemoryWorkflow::new(),
            clock: FixedClock::default(),
            session_id: SessionId::parse(session_id).expect("a valid session id"),
        }
    }

    /// The world's session as stored now.
    ///
    /// # Panics
    /// If it is not stored.
    pub fn session(&self) -> Session {
        self.store
            .stored_session(&self.session_id)
            .expect("the world's session is stored")
    }

    /// The outcome of the only completion of a token so far, which must be `token`'s.
    ///
    /// # Panics
    /// If there is not exactly one completion, or it is of another token.
    pub fn only_outcome(&self, token: &str) -> TokenOutcome {
        let completions = self.workflow.completions();
        assert_eq!(completions.len(), 1, "{completions:?}");
        assert_eq!(completions[0].token, token);
        completions[0].outcome.clone()
    }

    /// Runs WaitForIp (`steps::wait_for_ip`) with `input` and `access` against this
    /// world's twins.
    pub async fn wait_for_ip(
        &self,
        input: WaitForIpInput,
        access: &Access,
    ) -> Result<Option<Delivery>> {
        wait_for_ip(input, access, &self.store, &self.network, &self.workflow).await
    }

    /// Handles `event` as the task-events function of `cluster` with `access` does
    /// (`steps::task_events`), against this world's twins and clock.
    pub async fn on_task_state_change(
        &self,
        event: TaskEvent,
        cluster: &str,
        access: &Access,
    ) -> Result<Outcome> {
        on_task_state_change(
            event,
            cluster,
            access,
            &self.store,
            &self.network,
            &self.workflow,
            &self.clock,
        )
        .await
    }

    /// Requests the stop of the world's session for `reason` (`steps::request_stop`),
    /// against this world's twins and clock.
    pub async fn request_stop(&self, reason: Reason) -> Result<StopRequestOutcome> {
        request_stop(
            &self.session_id,
            reason,
            &self.store,
            &self.workflow,
            &self.clock,
        )
        .await
    }
}
