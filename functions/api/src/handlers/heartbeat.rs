use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};
use serde_json::json;

use session_core::ports::{Clock, Registry, SessionStore, Workflow};
use session_core::session::Status;

use crate::error::ApiError;
use crate::http::json_response;
use crate::identity::Caller;
use crate::view::HeartbeatView;
use crate::Api;

impl<S: SessionStore, W: Workflow, R: Registry, K: Clock> Api<S, W, R, K> {
    pub(crate) async fn heartbeat(
        &self,
        caller: &Caller,
        raw_id: &str,
    ) -> Result<Response<Body>, ApiError> {
        let session = self.visible(caller, raw_id).await?;
        if session.status != Status::Running {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "session_not_running",
                format!("the session is {}, not running", session.status),
            )
            .with("status", json!(session.status)));
        }
        let now = self.clock.now();
        let interval = chrono::Duration::seconds(
            i64::try_from(self.settings.limits.heartbeat_interval_s).unwrap_or(i64::MAX / 1000),
        );
        let mut session = session;
        let recorded = self
            .store
            .touch(&session.session_id, &session.user_id, now, interval)
            .await?;
        if recorded {
            session.last_activity_at = Some(now.into());
        }
        // Read after the beat is written, so that a failed read cannot cost the user
        // the activity it records.
        let owner = self.store.user(&session.user_id).await?;
        let limits = self.settings.limits.of_user(owner.as_ref());
        Ok(json_response(
            StatusCode::OK,
            &HeartbeatView::of(&session, recorded, &limits).json(),
        ))
    }
}
