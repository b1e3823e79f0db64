//! A stop request from outside the state machine (the user through the API, the
//! reaper, a dying task). It marks the session `stopping` and resumes the execution
//! through whichever task token is live; a step that is running without a token
//! notices the `stopping` status itself when it next writes, so a stop requested at
//! any moment ends with no task running.

use serde::Serialize;
use serde_json::json;

use crate::error::{ErrorName, Result};
use crate::ports::{Change, Clock, Delivery, SessionStore, Workflow};
use crate::session::{Reason, SessionId, Status};

/// What a stop request came to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "stop")]
pub enum StopRequestOutcome {
    /// The session is now stopping; `resumed` tells whether a waiting state was
    /// resumed right away (otherwise the running step picks the stop up).
    Requested {
        resumed: bool,
    },
    AlreadyStopping,
    AlreadyEnded {
        status: Status,
    },
    NotFound,
}

pub async fn request_stop(
    id: &SessionId,
    reason: Reason,
    store: &impl SessionStore,
    workflow: &impl Workflow,
    clock: &impl Clock,
) -> Result<StopRequestOutcome> {
    let at = clock.now();
    let Some(session) = store
        .apply(id, Change::StopRequested { reason, at })
        .await?
    else {
        return Ok(match store.session(id).await? {
            None => StopRequestOutcome::NotFound,
            Some(s) if s.status == Status::Stopping => StopRequestOutcome::AlreadyStopping,
            Some(s) => StopRequestOutcome::AlreadyEnded { status: s.status },
        });
    };
    // The first reason recorded wins over later ones.
    let reason = session.stop_reason.unwrap_or(reason);
    let delivery = if let Some(token) = &session.stop_token {
        Some(
            workflow
                .succeed(token, &json!({ "reason": reason }))
                .await?,
        )
    } else if let Some(token) = &session.ip_token {
        Some(
            workflow
                .fail(token, ErrorName::StopRequested, reason.as_str())
                .await?,
        )
    } else {
        None
    };
    tracing::info!(session_id = %id, %reason, ?delivery, "stop requested");
    Ok(StopRequestOutcome::Requested {
        resumed: delivery == Some(Delivery::Delivered),
    })
}
