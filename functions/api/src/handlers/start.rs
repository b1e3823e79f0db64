use lambda_http::http::{HeaderValue, StatusCode};
use lambda_http::{Body, Request, Response};
use serde_json::{json, Value};

use session_core::ports::{Clock, Registry, SessionStore, Workflow};
use session_core::session::SessionId;
use session_core::steps::authorize::parse_version;
use session_core::steps::start::{start, StartSession, Started};

use crate::error::ApiError;
use crate::http::{json_response, IDEMPOTENCY_HEADER};
use crate::idempotency::{idempotency_key_reused, idempotent_session_id};
use crate::identity::Caller;
use crate::{Api, StartBody};

impl<S: SessionStore, W: Workflow, R: Registry, K: Clock> Api<S, W, R, K> {
    pub(crate) async fn start(
        &self,
        caller: &Caller,
        body: StartBody,
        req: &Request,
    ) -> Result<Response<Body>, ApiError> {
        let user_id = caller.acting_for(body.user_id.as_deref())?;
        let version = parse_version(body.version.map(Value::String).as_ref())?;
        let key = req
            .headers()
            .get(IDEMPOTENCY_HEADER)
            .map(|v| v.to_str().unwrap_or(""));
        let id = match key {
            Some(key) => idempotent_session_id(&user_id, key)?,
            None => SessionId::generate(),
        };
        let started = start(
            StartSession {
                session_id: id.clone(),
                keyed: key.is_some(),
                user_id,
                version,
                execution_arn: self.settings.execution_arn(id.as_str()),
            },
            &self.admission,
            &self.settings.state_machine_arn,
            &self.store,
            &self.registry,
            &self.workflow,
            &self.clock,
        )
        .await?;
        let session = match started {
            Started::Accepted { session, .. } => session,
            Started::KeyReused(first) => return Err(idempotency_key_reused(&first)),
        };
        let mut body = self.view(&session).await?;
        let status_url = format!("/sessions/{id}");
        body["status_url"] = json!(status_url);
        let mut response = json_response(StatusCode::ACCEPTED, &body);
        if let Ok(location) = HeaderValue::from_str(&status_url) {
            response.headers_mut().insert("location", location);
        }
        Ok(response)
    }
}
