//! The small interfaces the lifecycle steps need from the outside world. AWS adapters
//! implement them in `crate::aws`; tests may implement them in memory.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{ErrorName, Result};
use crate::session::{Reason, Session, SessionId, Urls};
use crate::template::TaskDefinitionSpec;

/// A user as stored in the users table.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct User {
    pub user_id: String,
    #[serde(default)]
    pub authorized: bool,
    /// May act for any user through the API, when their token also holds the admin
    /// scope: scopes are granted per app client, so the scope alone is not enough.
    #[serde(default)]
    pub admin: bool,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub efs_access_point_id: Option<String>,
    /// The user's own task role: its only EFS right is their access point.
    #[serde(default)]
    pub task_role_arn: Option<String>,
    #[serde(default)]
    pub max_sessions: Option<u32>,
    #[serde(default)]
    pub idle_timeout_s: Option<u64>,
    #[serde(default)]
    pub max_lifetime_s: Option<u64>,
    /// The sessions holding one of the user's slots (a string set).
    #[serde(default)]
    pub active_sessions: BTreeSet<String>,
    /// Registered task definition ARNs by `{version}:{fingerprint}`.
    #[serde(default)]
    pub task_definitions: BTreeMap<String, String>,
}

/// What an ECS task state change says about a session's task.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskObservation {
    pub task_arn: String,
    pub last_status: String,
    /// ECS `detail.version`: grows with every change of the task.
    pub version: i64,
    pub eni_id: Option<String>,
    /// The task's private IPv4 address, from its network attachment: what the session
    /// gateway forwards to.
    pub private_ip: Option<String>,
    /// ECS's `healthStatus` of the task: HEALTHY, UNHEALTHY or UNKNOWN.
    pub health_status: Option<String>,
    pub stop_code: Option<String>,
    pub stopped_reason: Option<String>,
    pub image_pull_s: Option<f64>,
}

/// How a session changes when the state machine's steps record progress.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    Launched {
        task_arn: String,
        /// The template has health checks: the session runs once the task is HEALTHY.
        awaits_health: bool,
        at: DateTime<Utc>,
    },
    Running {
        /// Only in direct access.
        public_ip: Option<String>,
        private_ip: Option<String>,
        urls: Urls,
        /// Each URL's key and the port it reaches (read by the session gateway).
        service_ports: BTreeMap<String, u16>,
        at: DateTime<Utc>,
    },
    StopRequested {
        reason: Reason,
        at: DateTime<Utc>,
    },
    Stopped {
        reason: Reason,
        at: DateTime<Utc>,
    },
    Failed {
        reason: Reason,
        cause: String,
        at: DateTime<Utc>,
    },
}

impl Change {
    /// When the change happened: the session's `status_changed_at` after it.
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            Change::Launched { at, .. }
            | Change::Running { at, .. }
            | Change::StopRequested { at, .. }
            | Change::Stopped { at, .. }
            | Change::Failed { at, .. } => *at,
        }
    }
}

/// Sessions and users (DynamoDB).
pub trait SessionStore: Send + Sync {
    fn user(&self, user_id: &str) -> impl Future<Output = Result<Option<User>>> + Send;

    /// The users of `user_ids` that have an item, read in batches (the reaper's one
    /// read of every active session's user). Each id once; missing ones are absent.
    fn users(
        &self,
        user_ids: &BTreeSet<String>,
    ) -> impl Future<Output = Result<BTreeMap<String, User>>> + Send;

    /// Creates the session in `starting` and takes one of the user's slots, atomically.
    /// A repeat for the same session and user succeeds without a second slot.
    fn open(&self, session: &Session, max_sessions: u32)
        -> impl Future<Output = Result<()>> + Send;

    fn session(&self, id: &SessionId) -> impl Future<Output = Result<Option<Session>>> + Send;

    /// Applies a change if the session's status allows it (a conditional write on the
    /// statuses [`crate::session::Status::predecessors`] gives). Returns the updated
    /// session, or `None` when the change did not apply (duplicate, late, or the
    /// session does not exist).
    fn apply(
        &self,
        id: &SessionId,
        change: Change,
    ) -> impl Future<Output = Result<Option<Session>>> + Send;

    /// Records a failure for a session that may never have been created (Authorize
    /// refused it): creates it as `failed` or moves it there.
    fn fail(
        &self,
        session: &Session,
        reason: Reason,
        cause: &str,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<Session>>> + Send;

    /// Stores the task token of WaitForIp; returns the session as it now is.
    fn store_ip_token(
        &self,
        id: &SessionId,
        token: &str,
    ) -> impl Future<Output = Result<Option<Session>>> + Send;

    /// Stores the task token of AwaitStop; returns the session as it now is.
    fn store_stop_token(
        &self,
        id: &SessionId,
        token: &str,
    ) -> impl Future<Output = Result<Option<Session>>> + Send;

    /// Stores the task token of AwaitTasksStopped; returns the session as it now is.
    fn store_tasks_stopped_token(
        &self,
        id: &SessionId,
        token: &str,
    ) -> impl Future<Output = Result<Option<Session>>> + Send;

    /// Records a task state change unless a newer one (higher `version`) is already
    /// recorded. Returns the session as it now is, or `None` for a stale event.
    fn observe_task(
        &self,
        id: &SessionId,
        observation: &TaskObservation,
    ) -> impl Future<Output = Result<Option<Session>>> + Send;

    /// Removes a session whose execution could not be started, provided it is still
    /// `starting` with no task: as if it had never been requested, so that a retry
    /// under the same idempotency key starts it afresh. Returns whether it removed it.
    fn discard_unstarted(&self, id: &SessionId) -> impl Future<Output = Result<bool>> + Send;

    /// Gives the user's slot back. Idempotent.
    fn release_slot(
        &self,
        user_id: &str,
        id: &SessionId,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Stores the user's access point unless one is stored already; returns the one
    /// that is stored afterwards.
    fn set_access_point(
        &self,
        user_id: &str,
        access_point_id: &str,
    ) -> impl Future<Output = Result<String>> + Send;

    /// Stores (or replaces) the user's task definition ARN under `key`, and drops the
    /// entries under `evict` in the same write, so that the cache stays bounded.
    /// Stores the user's task role unless one is stored already; returns the one that
    /// is stored afterwards.
    fn set_task_role(
        &self,
        user_id: &str,
        role_arn: &str,
    ) -> impl Future<Output = Result<String>> + Send;

    fn cache_task_definition(
        &self,
        user_id: &str,
        key: &str,
        arn: &str,
        evict: &[String],
    ) -> impl Future<Output = Result<()>> + Send;

    /// Every session that is not terminal, read from the sparse `active` index only.
    fn active_sessions(&self) -> impl Future<Output = Result<ActiveSessions>> + Send;

    /// One page of a user's sessions, newest first, from the `by-user` index.
    fn sessions_of_user(
        &self,
        user_id: &str,
        limit: u32,
        after: Option<&PageCursor>,
    ) -> impl Future<Output = Result<SessionPage>> + Send;

    /// Records activity on a running session, at most once per `min_interval`.
    /// Returns whether it wrote.
    fn touch(
        &self,
        id: &SessionId,
        user_id: &str,
        at: DateTime<Utc>,
        min_interval: chrono::Duration,
    ) -> impl Future<Output = Result<bool>> + Send;
}

/// Where a page of a user's sessions ended: the next page starts after it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageCursor {
    pub created_at: String,
    pub session_id: SessionId,
}

/// A page of a user's sessions.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SessionPage {
    pub sessions: Vec<Session>,
    pub next: Option<PageCursor>,
}

/// The active sessions and how many items DynamoDB read to find them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ActiveSessions {
    pub sessions: Vec<Session>,
    pub items_read: u64,
}

/// A task of the cluster that has not stopped.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskSummary {
    pub task_arn: String,
    pub started_by: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
}

/// A request to run one session's task.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskLaunch<'a> {
    pub task_definition_arn: &'a str,
    pub session_id: &'a SessionId,
    pub user_id: &'a str,
}

/// Tasks (ECS).
pub trait Compute: Send + Sync {
    fn register_task_definition(
        &self,
        spec: &TaskDefinitionSpec,
    ) -> impl Future<Output = Result<String>> + Send;

    /// Runs the session's task; capacity problems are `Error::CapacityUnavailable`.
    fn run_task(&self, launch: &TaskLaunch<'_>) -> impl Future<Output = Result<String>> + Send;

    /// Stops a task. Stopping a task that is already stopped or gone succeeds.
    fn stop_task(&self, task_arn: &str, reason: &str) -> impl Future<Output = Result<()>> + Send;

    /// Tasks not yet stopped that were started for this session.
    fn tasks_started_by(&self, id: &SessionId) -> impl Future<Output = Result<Vec<String>>> + Send;

    /// The tasks among `known`, and those started for this session (stop requested or
    /// not), whose last status is not yet STOPPED: a task asked to stop keeps running
    /// until its containers have exited, up to its stop timeout. A task ECS no longer
    /// knows has stopped.
    fn tasks_not_stopped(
        &self,
        id: &SessionId,
        known: &[String],
    ) -> impl Future<Output = Result<Vec<String>>> + Send;

    /// Every task of the cluster that has not stopped.
    fn running_tasks(&self) -> impl Future<Output = Result<Vec<TaskSummary>>> + Send;
}

/// Per-user persistent storage (EFS access points).
pub trait Storage: Send + Sync {
    fn create_access_point(&self, user_id: &str) -> impl Future<Output = Result<String>> + Send;
}

/// Per-user task roles (IAM).
pub trait TaskRoles: Send + Sync {
    /// The user's task role, created when missing: trusted by ECS tasks of this account,
    /// under the configured path and permissions boundary, tagged with the user's access
    /// point, with the shared policy that lets it mount only that access point. Returns
    /// its ARN. Safe to repeat and to race.
    fn ensure_task_role(
        &self,
        user_id: &str,
        access_point_id: &str,
    ) -> impl Future<Output = Result<String>> + Send;
}

/// An image of a repository that carries at least one tag.
#[derive(Clone, Debug, PartialEq)]
pub struct TaggedImage {
    /// The image's manifest digest (`sha256:...`): two tags name the same image
    /// exactly when their digests are equal.
    pub digest: String,
    pub tags: Vec<String>,
    pub pushed_at: DateTime<Utc>,
}

/// The image registry (ECR).
pub trait Registry: Send + Sync {
    fn image_exists(
        &self,
        repository: &str,
        tag: &str,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Every tagged image of the repository (untagged ones are left out); none when the
    /// repository does not exist.
    fn tagged_images(
        &self,
        repository: &str,
    ) -> impl Future<Output = Result<Vec<TaggedImage>>> + Send;
}

/// Network interfaces (EC2).
pub trait Network: Send + Sync {
    fn public_ip(&self, eni_id: &str) -> impl Future<Output = Result<Option<String>>> + Send;
}

/// What became of a task token we completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    Delivered,
    /// The token was already completed, timed out, or its execution ended.
    AlreadyClosed,
}

/// Callback tokens of the lifecycle state machine (Step Functions).
pub trait Workflow: Send + Sync {
    fn succeed(
        &self,
        token: &str,
        output: &serde_json::Value,
    ) -> impl Future<Output = Result<Delivery>> + Send;
    fn fail(
        &self,
        token: &str,
        error: ErrorName,
        cause: &str,
    ) -> impl Future<Output = Result<Delivery>> + Send;

    /// Starts the execution named `name` with `input`. The name is the idempotency key:
    /// an execution of that name that exists already is not an error.
    fn start(
        &self,
        state_machine_arn: &str,
        name: &str,
        input: &serde_json::Value,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Whether the execution still runs (false once it ended or if it does not exist).
    fn execution_running(&self, execution_arn: &str) -> impl Future<Output = Result<bool>> + Send;

    /// Stops an execution. Stopping one that has already ended or does not exist
    /// succeeds.
    fn stop_execution(
        &self,
        execution_arn: &str,
        cause: &str,
    ) -> impl Future<Output = Result<()>> + Send;
}

/// The project's event bus (EventBridge).
pub trait EventBus: Send + Sync {
    fn publish(
        &self,
        detail_type: &str,
        detail: &serde_json::Value,
    ) -> impl Future<Output = Result<()>> + Send;
}

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}
