//! Lifecycle events on the project's EventBridge bus. The schema is documented in
//! `docs/events.md`; change both together.

use serde_json::{json, Value};

use crate::session::Session;

/// The `source` of every lifecycle event.
pub const SOURCE: &str = "session-provisioner";
pub const SESSION_RUNNING: &str = "Session Running";
pub const SESSION_STOPPED: &str = "Session Stopped";
pub const SESSION_FAILED: &str = "Session Failed";

/// The `detail` of a lifecycle event. No task tokens, no email: only what a
/// subscriber needs to act on the session.
pub fn detail(session: &Session) -> Value {
    json!({
        "session_id": session.session_id,
        "user_id": session.user_id,
        "version": session.version,
        "status": session.status,
        "created_at": session.created_at,
        "started_at": session.started_at,
        "stopped_at": session.stopped_at,
        "stop_reason": session.stop_reason,
        "failure_cause": session.failure_cause,
        "task_arn": session.task_arn,
        "public_ip": session.public_ip,
        "urls": session.urls.0,
    })
}
