//! WaitForIp: event driven, not a poll. The state stores its task token on the session;
//! the ECS RUNNING event (task-events) records the task's state on the same item. Both
//! writes are atomic read-modify-writes of one item, so whichever comes second sees
//! the other's write and completes the token; if both do, the second completion is
//! refused by Step Functions and ignored.

use serde::Deserialize;
use serde_json::json;

use crate::config::Access;
use crate::error::{Error, ErrorName, Result};
use crate::ports::{Delivery, Network, SessionStore, Workflow};
use crate::session::{Session, SessionId, Status};
use crate::steps::record::NetworkInfo;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitForIpInput {
    pub session_id: SessionId,
    pub task_token: String,
}

pub const TASK_RUNNING: &str = "RUNNING";
/// ECS's `healthStatus` of a task whose essential containers pass their health checks.
pub const TASK_HEALTHY: &str = "HEALTHY";
pub const TASK_UNHEALTHY: &str = "UNHEALTHY";
/// The last status of a task whose containers have all exited.
pub const TASK_STOPPED: &str = "STOPPED";
/// ECS statuses after which a task never runs again. A task that fails to start goes
/// from PROVISIONING or PENDING straight to DEPROVISIONING: that event alone tells.
pub const TASK_ENDED: [&str; 4] = ["DEACTIVATING", "STOPPING", "DEPROVISIONING", TASK_STOPPED];

pub async fn wait_for_ip(
    input: WaitForIpInput,
    access: &Access,
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
    complete_wait_for_ip(&session, access, network, workflow).await
}

/// Completes WaitForIp's token if the session has one and its task's fate is known:
/// success with the task's address once it runs (and, if its template has health
/// checks, is HEALTHY), failure once it has ended or is UNHEALTHY.
pub async fn complete_wait_for_ip(
    session: &Session,
    access: &Access,
    network: &impl Network,
    workflow: &impl Workflow,
) -> Result<Option<Delivery>> {
    let Some(token) = session.ip_token.as_deref() else {
        return Ok(None);
    };
    if session.status == Status::Stopping {
        let reason = session.stop_reason.map_or("stop", |r| r.as_str());
        let delivery = workflow
            .fail(token, ErrorName::StopRequested, reason)
            .await?;
        return Ok(Some(delivery));
    }
    if session.status != Status::Provisioning {
        return Ok(None);
    }
    let task_status = session.task_status.as_deref().unwrap_or_default();
    if task_status == TASK_RUNNING {
        let delivery = match (session.awaits_health, session.task_health.as_deref()) {
            (true, Some(TASK_UNHEALTHY)) => workflow
                .fail(
                    token,
                    ErrorName::Unhealthy,
                    "the task is RUNNING but its health checks fail: its services do not answer",
                )
                .await?,
            // Running is not reachable yet: wait for the HEALTHY event.
            (true, health) if health != Some(TASK_HEALTHY) => return Ok(None),
            _ => match address(session, access, network).await? {
                Ok(network) => workflow.succeed(token, &json!(network)).await?,
                Err((error, cause)) => workflow.fail(token, error, cause).await?,
            },
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
            .fail(token, ErrorName::TaskStoppedBeforeRunning, cause.trim_end())
            .await?;
        return Ok(Some(delivery));
    }
    Ok(None)
}

/// The address the session's URLs lead to: the private IP from the task's events
/// behind the gateway (no EC2 call), the ENI's public IP in direct access. `Err` holds
/// the error name and cause when there is none.
async fn address(
    session: &Session,
    access: &Access,
    network: &impl Network,
) -> Result<Result<NetworkInfo, (ErrorName, &'static str)>> {
    let private_ip = session.private_ip.clone();
    let eni_id = session.eni_id.clone();
    match access {
        Access::Gateway { .. } => match private_ip {
            Some(_) => Ok(Ok(NetworkInfo {
                public_ip: None,
                private_ip,
                eni_id,
            })),
            None => Ok(Err((
                ErrorName::LaunchFailed,
                "the running task's events carry no private IPv4 address",
            ))),
        },
        Access::Direct => {
            // Failing the token, not the invocation: task-events would otherwise be
            // retried on a state that cannot change, and WaitForIp wait out its timeout.
            let Some(eni) = eni_id.as_deref() else {
                return Ok(Err((
                    ErrorName::LaunchFailed,
                    "the running task has no network interface",
                )));
            };
            Ok(match network.public_ip(eni).await? {
                Some(public_ip) => Ok(NetworkInfo {
                    public_ip: Some(public_ip),
                    private_ip,
                    eni_id,
                }),
                None => Err((
                    ErrorName::NoPublicIp,
                    "the task's network interface has no public IP: direct access needs public subnets and assignPublicIp",
                )),
            })
        }
    }
}
