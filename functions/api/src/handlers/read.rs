use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};

use session_core::ports::{Clock, Registry, SessionStore, Workflow};

use crate::error::ApiError;
use crate::http::json_response;
use crate::identity::Caller;
use crate::Api;

impl<S: SessionStore, W: Workflow, R: Registry, K: Clock> Api<S, W, R, K> {
    pub(crate) async fn read(
        &self,
        caller: &Caller,
        raw_id: &str,
    ) -> Result<Response<Body>, ApiError> {
        let session = self.visible(caller, raw_id).await?;
        Ok(json_response(StatusCode::OK, &self.view(&session).await?))
    }
}
