//! Record: writes the session's progress (running, stopped, failed) and stores the
//! AwaitStop task token.

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::config::Access;
use crate::error::{Error, InvalidInput, Result};
use crate::events;
use crate::metrics::{self, Unit};
use crate::ports::{Change, Clock, EventBus, SessionStore, Workflow};
use crate::session::{Reason, Session, SessionId, Status, Version};
use crate::steps::authorize::{parse_user_id, parse_version};
use crate::steps::wait_for_ip::TASK_STOPPED;
use crate::template::SessionTemplate;

#[derive(Debug, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case", deny_unknown_fields)]
pub enum RecordInput {
    /// WaitForIp completed: the task runs and has this address.
    Running {
        session_id: SessionId,
        network: NetworkInfo,
    },
    /// AwaitStop began: keep its token so a stop request can resume the execution.
    StopToken {
        session_id: SessionId,
        task_token: String,
    },
    /// AwaitTasksStopped began: keep its token so the task's STOPPED event can resume
    /// the execution (Stop then releases the slot).
    TasksStoppedToken {
        session_id: SessionId,
        task_token: String,
        /// The tasks Stop found still stopping.
        #[serde(default)]
        awaiting_tasks: Vec<String>,
    },
    /// The task was stopped.
    Stopped {
        session_id: SessionId,
        reason: Reason,
    },
    /// A step failed; `error` is what the state machine's Catch caught.
    Failed {
        session_id: SessionId,
        #[serde(default)]
        request: Option<serde_json::Value>,
        error: CaughtError,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetworkInfo {
    /// Direct access only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eni_id: Option<String>,
}

/// The error output of a Catch: `{"Error": "...", "Cause": "..."}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CaughtError {
    #[serde(rename = "Error")]
    pub error: String,
    #[serde(rename = "Cause", default)]
    pub cause: Option<String>,
}

impl CaughtError {
    /// A Lambda error's Cause is the function's JSON error payload; keep its message.
    pub fn message(&self) -> String {
        let cause = self.cause.as_deref().unwrap_or_default();
        serde_json::from_str::<serde_json::Value>(cause)
            .ok()
            .and_then(|v| {
                v.get("errorMessage")
                    .and_then(|m| m.as_str())
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| cause.to_owned())
    }
}

/// What Record answers: the session as it now is, in the API's shape.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RecordOutput {
    pub session_id: SessionId,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<Reason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_ip: Option<String>,
    pub urls: std::collections::BTreeMap<String, String>,
}

impl From<&Session> for RecordOutput {
    fn from(s: &Session) -> Self {
        Self {
            session_id: s.session_id.clone(),
            status: s.status,
            stop_reason: s.stop_reason,
            public_ip: s.public_ip.clone(),
            urls: s.urls.0.clone(),
        }
    }
}

pub struct RecordContext<'a, S, W, B, C> {
    pub template: &'a SessionTemplate,
    pub access: &'a Access,
    pub store: &'a S,
    pub workflow: &'a W,
    pub bus: &'a B,
    pub clock: &'a C,
}

pub async fn record<S: SessionStore, W: Workflow, B: EventBus, C: Clock>(
    input: RecordInput,
    ctx: &RecordContext<'_, S, W, B, C>,
) -> Result<RecordOutput> {
    match input {
        RecordInput::Running {
            session_id,
            network,
        } => {
            let urls = ctx
                .template
                .urls(ctx.access, &session_id, network.public_ip.as_deref())
                .ok_or_else(|| {
                    InvalidInput::new(
                        "network.public_ip",
                        "direct access needs the task's public IP",
                    )
                })?;
            let change = Change::Running {
                urls,
                service_ports: ctx.template.service_ports(),
                public_ip: network.public_ip,
                private_ip: network.private_ip,
                at: ctx.clock.now(),
            };
            let (session, applied) = applied_or_current(ctx.store, &session_id, change).await?;
            if applied {
                if let Some(seconds) = start_seconds(&session) {
                    metrics::emit(
                        &[],
                        &[(metrics::SESSION_START_SECONDS, seconds, Unit::Seconds)],
                    );
                }
            }
            announce(ctx.bus, &session, Status::Running).await?;
            tracing::info!(session_id = %session_id, status = %session.status, "session running");
            Ok((&session).into())
        }
        RecordInput::StopToken {
            session_id,
            task_token,
        } => {
            let session = ctx
                .store
                .store_stop_token(&session_id, &task_token)
                .await?
                .ok_or_else(|| Error::SessionNotFound(session_id.to_string()))?;
            // A stop requested before the token was stored is delivered now.
            if session.status == Status::Stopping {
                let reason = session.stop_reason.unwrap_or(Reason::User);
                let delivery = ctx
                    .workflow
                    .succeed(&task_token, &json!({ "reason": reason }))
                    .await?;
                tracing::info!(session_id = %session_id, ?delivery, "stop requested before AwaitStop");
            }
            Ok((&session).into())
        }
        RecordInput::TasksStoppedToken {
            session_id,
            task_token,
            awaiting_tasks,
        } => {
            let session = ctx
                .store
                .store_tasks_stopped_token(&session_id, &task_token)
                .await?
                .ok_or_else(|| Error::SessionNotFound(session_id.to_string()))?;
            // The STOPPED event recorded before the token was stored is delivered now.
            // Only the session's own task is known to the events; any other task waits
            // for the state's timeout, after which Stop looks again.
            if recorded_stopped(&session, &awaiting_tasks) {
                let delivery = ctx.workflow.succeed(&task_token, &json!({})).await?;
                tracing::info!(session_id = %session_id, ?delivery, "task stopped before AwaitTasksStopped");
            }
            Ok((&session).into())
        }
        RecordInput::Stopped { session_id, reason } => {
            let change = Change::Stopped {
                reason,
                at: ctx.clock.now(),
            };
            let (session, applied) = applied_or_current(ctx.store, &session_id, change).await?;
            if applied {
                ended_metric(&session);
            }
            announce(ctx.bus, &session, Status::Stopped).await?;
            tracing::info!(session_id = %session_id, %reason, status = %session.status, "session stopped");
            Ok((&session).into())
        }
        RecordInput::Failed {
            session_id,
            request,
            error,
        } => {
            let reason = Reason::from_error_name(&error.error);
            let cause = format!("{}: {}", error.error, error.message());
            let request = request.unwrap_or_default();
            let user_id = parse_user_id(request.get("user_id"))?;
            let version =
                parse_version(request.get("version")).unwrap_or_else(|_| Version::default());
            let now = ctx.clock.now();
            let blank = Session::new(session_id.clone(), user_id, version, now);
            let session = match ctx.store.fail(&blank, reason, &cause, now).await? {
                Some(session) => {
                    ended_metric(&session);
                    session
                }
                None => ctx
                    .store
                    .session(&session_id)
                    .await?
                    .ok_or_else(|| Error::SessionNotFound(session_id.to_string()))?,
            };
            announce(ctx.bus, &session, Status::Failed).await?;
            tracing::warn!(session_id = %session_id, %reason, status = %session.status, "session failed");
            Ok((&session).into())
        }
    }
}

/// Whether the session's recorded task state says every task Stop is waiting for has
/// STOPPED.
pub fn recorded_stopped(session: &Session, awaiting_tasks: &[String]) -> bool {
    session.task_status.as_deref() == Some(TASK_STOPPED)
        && !awaiting_tasks.is_empty()
        && awaiting_tasks
            .iter()
            .all(|t| session.task_arn.as_deref() == Some(t.as_str()))
}

/// Seconds from the request to the session running.
fn start_seconds(session: &Session) -> Option<f64> {
    let elapsed = session.started_at?.at() - session.created_at.at();
    Some(elapsed.num_milliseconds() as f64 / 1000.0)
}

fn ended_metric(session: &Session) {
    let reason = session.stop_reason.map_or("none", Reason::as_str);
    metrics::emit(
        &[("Status", session.status.as_str()), ("Reason", reason)],
        &[(metrics::SESSIONS_ENDED, 1.0, Unit::Count)],
    );
}

/// Publishes the lifecycle event of `status` if the session is in it. At least once:
/// a retried Record publishes again, and consumers dedupe on (`session_id`, type).
async fn announce(bus: &impl EventBus, session: &Session, status: Status) -> Result<()> {
    if session.status != status {
        return Ok(());
    }
    let detail_type = match status {
        Status::Running => events::SESSION_RUNNING,
        Status::Stopped => events::SESSION_STOPPED,
        Status::Failed => events::SESSION_FAILED,
        _ => return Ok(()),
    };
    bus.publish(detail_type, &events::detail(session)).await
}

/// Applies a change; when it does not apply (a retried step already applied it, or a
/// concurrent stop moved the session on) answers the session as it is. The flag says
/// whether this call applied it.
async fn applied_or_current(
    store: &impl SessionStore,
    id: &SessionId,
    change: Change,
) -> Result<(Session, bool)> {
    if let Some(session) = store.apply(id, change).await? {
        return Ok((session, true));
    }
    let session = store
        .session(id)
        .await?
        .ok_or_else(|| Error::SessionNotFound(id.to_string()))?;
    Ok((session, false))
}
