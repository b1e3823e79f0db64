//! task-events: mirrors "ECS Task State Change" events of our cluster onto sessions.
//! Events are at-least-once and may arrive out of order; `detail.version` orders the
//! changes of one task, and older or repeated versions change nothing.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Access;
use crate::error::Result;
use crate::metrics::{self, Unit};
use crate::ports::{Clock, Delivery, Network, SessionStore, TaskObservation, Workflow};
use crate::session::SessionId;
use crate::session::{Reason, Status};
use crate::steps::record::recorded_stopped;
use crate::steps::request_stop::{request_stop, StopRequestOutcome};
use crate::steps::wait_for_ip::{
    complete_wait_for_ip, TASK_ENDED, TASK_HEALTHY, TASK_RUNNING, TASK_STOPPED,
};

pub const DETAIL_TYPE: &str = "ECS Task State Change";

/// An EventBridge event as the rule delivers it, with the envelope fields we read.
/// Like EventBridge's own schema, `detail-type`, `source` and `detail` are required
/// and the rest optional; a `time` that is present must be a time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TaskEvent {
    pub detail_type: String,
    pub source: String,
    #[serde(default)]
    pub time: Option<DateTime<Utc>>,
    pub detail: TaskStateChange,
}

/// The `detail` of an ECS task state change, with the fields we use.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskStateChange {
    pub cluster_arn: String,
    pub task_arn: String,
    pub last_status: String,
    #[serde(default)]
    pub desired_status: Option<String>,
    #[serde(default)]
    pub started_by: Option<String>,
    pub version: i64,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    #[serde(default)]
    pub stop_code: Option<String>,
    #[serde(default)]
    pub stopped_reason: Option<String>,
    #[serde(default)]
    pub pull_started_at: Option<String>,
    #[serde(default)]
    pub pull_stopped_at: Option<String>,
    /// Present once the task has reached RUNNING, also in its later events.
    #[serde(default)]
    pub started_at: Option<String>,
    /// When this change happened.
    #[serde(default)]
    pub updated_at: Option<String>,
    /// HEALTHY once every essential container with a health check passes it,
    /// UNHEALTHY once one fails it, UNKNOWN before.
    #[serde(default)]
    pub health_status: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub details: Vec<AttachmentDetail>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AttachmentDetail {
    pub name: String,
    #[serde(default)]
    pub value: Option<String>,
}

impl TaskStateChange {
    /// Seconds the task spent pulling its images.
    pub fn image_pull_seconds(&self) -> Option<f64> {
        let parse = |t: &Option<String>| {
            t.as_deref()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        };
        let (start, stop) = (parse(&self.pull_started_at)?, parse(&self.pull_stopped_at)?);
        Some((stop - start).num_milliseconds() as f64 / 1000.0)
    }

    /// The task's network interface (events call the attachment `eni`, DescribeTasks
    /// `ElasticNetworkInterface`).
    pub fn eni_id(&self) -> Option<&str> {
        self.attachments
            .iter()
            .filter(|a| a.kind == "eni" || a.kind == "ElasticNetworkInterface")
            .flat_map(|a| &a.details)
            .find(|d| d.name == "networkInterfaceId")
            .and_then(|d| d.value.as_deref())
    }

    /// The task's private IPv4 address (the `privateIPv4Address` detail of its
    /// network attachment): no EC2 call needed.
    pub fn private_ip(&self) -> Option<&str> {
        self.attachments
            .iter()
            .filter(|a| a.kind == "eni" || a.kind == "ElasticNetworkInterface")
            .flat_map(|a| &a.details)
            .find(|d| d.name == "privateIPv4Address")
            .and_then(|d| d.value.as_deref())
    }

    /// Seconds from the task's RUNNING to this change.
    pub fn seconds_since_running(&self) -> Option<f64> {
        let parse = |t: &Option<String>| {
            t.as_deref()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        };
        let (running, now) = (parse(&self.started_at)?, parse(&self.updated_at)?);
        Some((now - running).num_milliseconds() as f64 / 1000.0)
    }

    fn observation(&self) -> TaskObservation {
        TaskObservation {
            task_arn: self.task_arn.clone(),
            last_status: self.last_status.clone(),
            version: self.version,
            eni_id: self.eni_id().map(str::to_owned),
            private_ip: self.private_ip().map(str::to_owned),
            health_status: self.health_status.clone(),
            stop_code: self.stop_code.clone(),
            stopped_reason: self.stopped_reason.clone(),
            image_pull_s: self.image_pull_seconds(),
        }
    }
}

/// What handling one event did; logged, and asserted on by tests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome", content = "detail")]
pub enum Outcome {
    /// Not an event about one of our sessions.
    Ignored(String),
    /// A duplicate, or older than what is already recorded.
    Stale,
    Recorded,
    CompletedWaitForIp,
    /// The task ended on its own while the session was running.
    StopRequested,
    /// The stopped session's task has STOPPED: Stop may release the slot.
    CompletedAwaitTasksStopped,
}

/// True when the session's recorded task state is this event's: the same task, version
/// and status.
fn already_recorded(session: &crate::session::Session, detail: &TaskStateChange) -> bool {
    session.task_arn.as_deref() == Some(detail.task_arn.as_str())
        && session.task_version == Some(detail.version)
        && session.task_status.as_deref() == Some(detail.last_status.as_str())
}

/// True when `cluster_arn` names the configured cluster (given as a name or an ARN).
pub fn is_our_cluster(cluster_arn: &str, configured: &str) -> bool {
    cluster_arn == configured
        || cluster_arn
            .rsplit_once(":cluster/")
            .is_some_and(|(_, name)| name == configured)
}

pub async fn on_task_state_change(
    event: TaskEvent,
    cluster: &str,
    access: &Access,
    store: &impl SessionStore,
    network: &impl Network,
    workflow: &impl Workflow,
    clock: &impl Clock,
) -> Result<Outcome> {
    if event.detail_type != DETAIL_TYPE || event.source != "aws.ecs" {
        return Ok(Outcome::Ignored(format!(
            "{} from {}",
            event.detail_type, event.source
        )));
    }
    let detail = event.detail;
    if !is_our_cluster(&detail.cluster_arn, cluster) {
        return Ok(Outcome::Ignored(format!("cluster {}", detail.cluster_arn)));
    }
    let Some(session_id) = detail
        .started_by
        .as_deref()
        .and_then(|s| SessionId::parse(s).ok())
    else {
        return Ok(Outcome::Ignored("task not started for a session".into()));
    };
    let mut retried = false;
    let session = match store
        .observe_task(&session_id, &detail.observation())
        .await?
    {
        Some(session) => session,
        // EventBridge retries an invocation that failed after its write (a throttled
        // EC2 or Step Functions call): the stored state is this very event's, and
        // what follows from it must still be done.
        None => match store.session(&session_id).await? {
            Some(session) if already_recorded(&session, &detail) => {
                retried = true;
                session
            }
            _ => {
                tracing::info!(session_id = %session_id, version = detail.version, "stale task event");
                return Ok(Outcome::Stale);
            }
        },
    };
    tracing::info!(
        session_id = %session_id,
        last_status = %detail.last_status,
        version = detail.version,
        "task state recorded"
    );
    if detail.last_status == TASK_RUNNING {
        if let Some(seconds) = detail.image_pull_seconds() {
            metrics::emit(
                &[],
                &[(metrics::IMAGE_PULL_SECONDS, seconds, Unit::Seconds)],
            );
        }
    }
    if detail.health_status.as_deref() == Some(TASK_HEALTHY)
        && session.status == Status::Provisioning
        && !retried
    {
        if let Some(seconds) = detail.seconds_since_running() {
            metrics::emit(
                &[],
                &[(metrics::TASK_HEALTHY_SECONDS, seconds, Unit::Seconds)],
            );
        }
    }
    if detail.last_status == TASK_STOPPED {
        if let Some(token) = session.tasks_stopped_token.as_deref() {
            let awaiting = [detail.task_arn.clone()];
            if recorded_stopped(&session, &awaiting) {
                let delivery = workflow.succeed(token, &serde_json::json!({})).await?;
                tracing::info!(session_id = %session_id, ?delivery, "AwaitTasksStopped completed");
                return Ok(match delivery {
                    Delivery::Delivered => Outcome::CompletedAwaitTasksStopped,
                    Delivery::AlreadyClosed if retried => Outcome::Stale,
                    Delivery::AlreadyClosed => Outcome::Recorded,
                });
            }
        }
    }
    let ran = session.status == Status::Running
        || (session.status == Status::Provisioning && detail.started_at.is_some());
    if TASK_ENDED.contains(&detail.last_status.as_str()) && ran {
        // The task ran, then stopped without being asked to: the session ends with it
        // (even if its RUNNING event is late or lost). A task that never ran fails
        // WaitForIp instead, below.
        let requested =
            request_stop(&session_id, Reason::TaskStopped, store, workflow, clock).await?;
        return Ok(match requested {
            StopRequestOutcome::Requested { .. } => Outcome::StopRequested,
            _ if retried => Outcome::Stale,
            _ => Outcome::StopRequested,
        });
    }
    match complete_wait_for_ip(&session, access, network, workflow).await? {
        Some(Delivery::Delivered) => Ok(Outcome::CompletedWaitForIp),
        // A repeat whose consequences were all done already changed nothing.
        _ if retried => Ok(Outcome::Stale),
        _ => Ok(Outcome::Recorded),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_cluster_matches_by_name_or_arn() {
        let arn = "arn:aws:ecs:eu-west-1:123456789012:cluster/sessions";
        assert!(is_our_cluster(arn, "sessions"));
        assert!(is_our_cluster(arn, arn));
        assert!(!is_our_cluster(arn, "other"));
        assert!(!is_our_cluster(
            "arn:aws:ecs:eu-west-1:123456789012:cluster/sessions-2",
            "sessions"
        ));
    }
}
