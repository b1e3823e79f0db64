use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};
use serde_json::json;

use session_core::ports::{Clock, Registry, SessionStore, Workflow};
use session_core::session::{Reason, Status};
use session_core::steps::request_stop::{request_stop, StopRequestOutcome};

use crate::error::ApiError;
use crate::http::json_response;
use crate::identity::Caller;
use crate::Api;

impl<S: SessionStore, W: Workflow, R: Registry, K: Clock> Api<S, W, R, K> {
    pub(crate) async fn stop(
        &self,
        caller: &Caller,
        raw_id: &str,
    ) -> Result<Response<Body>, ApiError> {
        let session = self.visible(caller, raw_id).await?;
        let id = &session.session_id;
        let outcome =
            request_stop(id, Reason::User, &self.store, &self.workflow, &self.clock).await?;
        let status = match outcome {
            StopRequestOutcome::NotFound => return Err(ApiError::session_not_found(id.as_str())),
            StopRequestOutcome::Requested { .. } | StopRequestOutcome::AlreadyStopping => {
                StatusCode::ACCEPTED
            }
            StopRequestOutcome::AlreadyEnded { .. } => StatusCode::OK,
        };
        let now = self.store.session(id).await?.unwrap_or(session);
        let mut body = self.view(&now).await?;
        body["message"] = json!(match now.status {
            Status::Stopping => "the session is stopping",
            Status::Stopped => "the session has ended",
            _ => "the session has already ended",
        });
        Ok(json_response(status, &body))
    }
}
