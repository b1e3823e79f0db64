//! WaitForIp: event driven, not a poll. The state stores its task token on the session;
//! the ECS RUNNING event (task-events) records the task's state on the same item. Both
//! writes are atomic read-modify-writes of one item, so whichever comes second sees
//! the other's write and completes the token; if both do, the second completion is
//! refused by Step Functions and ignored.

use serde::Deserialize;
use serde_json::json;

use crate::error::{Error, Result};
use crate::ports::{Delivery, Network, SessionStore, Workflow};
use crate::session::{Session, SessionId, Status};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitForIpInput {
    pub session_id: SessionId,
    pub task_token: String,
}

pub const TASK_RUNNING: &str = "RUNNING";
/// The last status of a task whose containers have all exited.
pub const TASK_STOPPED: &str = "STOPPED";
/// ECS statuses after which a task never runs again. A task that fails to start goes
/// from PROVISIONING or PENDING straight to DEPROVISIONING: that event alone tells.
pub const TASK_ENDED: [&str; 4] = ["DEACTIVATING", "STOPPING", "DEPROVISIONING", TASK_STOPPED];

pub async fn wait_for_ip(
    input: WaitForIpInput,
    store: &impl SessionStore,
    network: &impl Network,
    workflow: &impl Workflow,
) -> Result<Option<Delivery>> {
    if input.task_token.is_empty() {
        return Err(crate::error::InvalidInput::new("task_token", "must not be empty").into());
    }
    let session = store
        .store_ip_token(&input.session_id, &input.task_token)
        .await?
        .ok_or_else(|| Error::SessionNotFound(input.session_id.to_string()))?;
    complete_wait_for_ip(&session, network, workflow).await
}

/// Completes WaitForIp's token if the session has one and its task's fate is known:
/// success with the public IP once the task runs, failure once it has ended.
pub async fn complete_wait_for_ip(
    session: &Session,
    network: &impl Network,
    workflow: &impl Workflow,
) -> Result<Option<Delivery>> {
    let Some(token) = session.ip_token.as_deref() else {
        return Ok(None);
    };
    if session.status == Status::Stopping {
        let reason = session.stop_reason.map_or("stop", |r| r.as_str());
        let delivery = workflow.fail(token, "StopRequested", reason).await?;
        return Ok(Some(delivery));
    }
    if session.status != Status::Provisioning {
        return Ok(None);
    }
    let task_status = session.task_status.as_deref().unwrap_or_default();
    if task_status == TASK_RUNNING {
        let eni_id = session.eni_id.as_deref().ok_or_else(|| {
            Error::LaunchFailed("the running task has no network interface".into())
        })?;
        let delivery = match network.public_ip(eni_id).await? {
            Some(public_ip) => {
                workflow.succeed(token, &json!({ "public_ip": public_ip, "eni_id": eni_id })).await?
            }
            None => {
                workflow
                    .fail(
                        token,
                        "NoPublicIp",
                        "the task's network interface has no public IP: tasks need public subnets and assignPublicIp",
                    )
                    .await?
            }
        };
        tracing::info!(session_id = %session.session_id, ?delivery, "WaitForIp completed");
        return Ok(Some(delivery));
    }
    if TASK_ENDED.contains(&task_status) {
        let cause = format!(
            "the task stopped before it was running: {} {}",
            session.stop_code.as_deref().unwrap_or("(no stop code)"),
            session.stopped_reason.as_deref().unwrap_or_default()
        );
        let delivery = workflow
            .fail(token, "TaskStoppedBeforeRunning", cause.trim_end())
            .await?;
        return Ok(Some(delivery));
    }
    Ok(None)
}
