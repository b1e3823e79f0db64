//! Authorize: admits a session request, or refuses it before anything is launched.

use serde::{Deserialize, Serialize};

use crate::config::AdmissionSettings;
use crate::error::{Error, InvalidInput, Result};
use crate::ports::{Clock, Registry, SessionStore};
use crate::session::{timestamp, Session, SessionId, Version};

/// A user id is an opaque string from the identity provider (`sub` by default).
const MAX_USER_ID_LEN: usize = 256;

/// The state machine's input for Authorize: the execution's name (the session id) and
/// the execution input as an operator or the API gave it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizeInput {
    pub session_id: String,
    #[serde(default)]
    pub execution_arn: Option<String>,
    pub request: StartRequest,
}

#[derive(Debug, Deserialize)]
pub struct StartRequest {
    pub user_id: Option<serde_json::Value>,
    #[serde(default)]
    pub version: Option<serde_json::Value>,
}

/// Identifies an admitted session to the steps that follow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionRef {
    pub session_id: SessionId,
    pub user_id: String,
    pub version: Version,
}

pub fn parse_user_id(raw: Option<&serde_json::Value>) -> Result<String, InvalidInput> {
    match raw {
        Some(serde_json::Value::String(id))
            if !id.trim().is_empty()
                && id.len() <= MAX_USER_ID_LEN
                && !id.chars().any(char::is_control) =>
        {
            Ok(id.clone())
        }
        Some(serde_json::Value::String(_)) => Err(InvalidInput::new(
            "user_id",
            format!("must be 1 to {MAX_USER_ID_LEN} characters without control characters"),
        )),
        Some(_) => Err(InvalidInput::new("user_id", "must be a string")),
        None => Err(InvalidInput::new("user_id", "is required")),
    }
}

pub fn parse_version(raw: Option<&serde_json::Value>) -> Result<Version, Error> {
    match raw {
        None | Some(serde_json::Value::Null) => Ok(Version::default()),
        Some(serde_json::Value::String(v)) => Version::parse(v).map_err(Error::InvalidVersion),
        Some(_) => Err(Error::InvalidVersion(InvalidInput::new(
            "version",
            "must be a string",
        ))),
    }
}

pub async fn authorize(
    input: AuthorizeInput,
    settings: &AdmissionSettings,
    store: &impl SessionStore,
    registry: &impl Registry,
    clock: &impl Clock,
) -> Result<SessionRef> {
    let session_id = SessionId::parse(&input.session_id)?;
    let user_id = parse_user_id(input.request.user_id.as_ref())?;
    let version = parse_version(input.request.version.as_ref())?;

    let user = store
        .user(&user_id)
        .await?
        .filter(|u| u.authorized)
        .ok_or(Error::NotAuthorized)?;

    if settings.check_images {
        for repository in settings.template.repositories() {
            if !registry.image_exists(repository, version.as_str()).await? {
                return Err(Error::ImageNotFound {
                    image: format!("{repository}:{version}"),
                });
            }
        }
    }

    let mut session = Session::new(
        session_id.clone(),
        user_id.clone(),
        version.clone(),
        timestamp(clock.now()),
    );
    session.execution_arn = input.execution_arn;
    store
        .open(&session, user.max_sessions.unwrap_or(settings.max_sessions))
        .await?;
    tracing::info!(session_id = %session_id, version = %version, "session admitted");
    Ok(SessionRef {
        session_id,
        user_id,
        version,
    })
}
