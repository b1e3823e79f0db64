//! Stop: stops every task of the session and gives the user's slot back once they have
//! all STOPPED. Used both at the end of a session's life and by the compensation path
//! after a failure, so it must succeed whatever was or was not launched.
//!
//! A task asked to stop runs on until its containers exit (up to its stop timeout): its
//! PostgreSQL still writes to the user's data. The slot, and with it the user's next
//! session on the same data, waits for STOPPED. While a task is still stopping, Stop
//! says so and the state machine waits in AwaitTasksStopped (completed by the task's
//! STOPPED event, or timed out) before calling Stop again.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::ports::{Change, Clock, Compute, SessionStore};
use crate::session::{Reason, SessionId, Status};
use crate::steps::authorize::parse_user_id;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopInput {
    pub session_id: SessionId,
    /// Why the session stops; absent on the compensation path (the session fails).
    #[serde(default)]
    pub reason: Option<Reason>,
    /// The execution input, to find the user when Authorize never created the session.
    #[serde(default)]
    pub request: Option<serde_json::Value>,
}

#[derive(Debug, PartialEq, Serialize)]
pub struct StopOutput {
    pub stopped_tasks: Vec<String>,
    /// Whether every task of the session has STOPPED (or none was ever started).
    pub tasks_stopped: bool,
    /// The tasks asked to stop that have not yet STOPPED.
    pub awaiting_tasks: Vec<String>,
    pub slot_released: bool,
    /// The reason the session stops for; `None` on the compensation path.
    pub reason: Option<Reason>,
}

pub async fn stop(
    input: StopInput,
    store: &impl SessionStore,
    compute: &impl Compute,
    clock: &impl Clock,
) -> Result<StopOutput> {
    let id = &input.session_id;
    let session = store.session(id).await?;
    // Without a reason this is either a stop requested while the session was starting
    // (the reason is on the session) or the compensation of a failure (none).
    let reason = input.reason.or_else(|| {
        session
            .as_ref()
            .filter(|s| s.status == Status::Stopping)
            .and_then(|s| s.stop_reason)
    });
    if let (Some(reason), Some(_)) = (reason, &session) {
        let at = clock.now();
        store
            .apply(id, Change::StopRequested { reason, at })
            .await?;
    }

    // The stored task ARN, and any task started for this session that a failure left
    // unrecorded (RunTask succeeded but its result was never written).
    let mut tasks: BTreeSet<String> = session.iter().filter_map(|s| s.task_arn.clone()).collect();
    tasks.extend(compute.tasks_started_by(id).await?);
    let why = format!(
        "session {id} stopped: {}",
        reason.map_or("failed", Reason::as_str)
    );
    for task_arn in &tasks {
        compute.stop_task(task_arn, &why).await?;
    }
    let known: Vec<String> = tasks.iter().cloned().collect();
    let awaiting_tasks = compute.tasks_not_stopped(id, &known).await?;
    let tasks_stopped = awaiting_tasks.is_empty();

    let user_id = match &session {
        Some(s) => Some(s.user_id.clone()),
        None => input
            .request
            .as_ref()
            .and_then(|r| parse_user_id(r.get("user_id")).ok()),
    };
    let release = user_id.as_ref().filter(|_| tasks_stopped);
    if let Some(user_id) = release {
        store.release_slot(user_id, id).await?;
    }
    tracing::info!(
        session_id = %id,
        tasks = tasks.len(),
        still_stopping = awaiting_tasks.len(),
        "session tasks stopped"
    );
    Ok(StopOutput {
        stopped_tasks: tasks.into_iter().collect(),
        tasks_stopped,
        awaiting_tasks,
        slot_released: release.is_some(),
        reason,
    })
}
