//! Authorize: admits a session request, or refuses it before anything is launched.

use serde::{Deserialize, Serialize};

use crate::config::AdmissionSettings;
use crate::error::{Error, InvalidInput, Result};
use crate::ports::{Clock, Registry, SessionStore};
use crate::session::{Session, SessionId, UserId, Version};

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

/// AwaitStop's timeout is the backstop of the reaper's max-lifetime stop: it fires
/// this long after the session's maximum lifetime, so the reaper (which runs every few
/// minutes) stops the session first and the backstop only when the reaper cannot.
pub const BACKSTOP_MARGIN_S: u64 = 15 * 60;

/// The longest AwaitStop may wait: a Standard execution lasts at most a year.
pub const MAX_AWAIT_STOP_S: u64 = 360 * 24 * 60 * 60;
const _: () = assert!(MAX_AWAIT_STOP_S < 365 * 24 * 60 * 60);

/// What Authorize answers the state machine: the admitted session, and the timeout of
/// its AwaitStop (`TimeoutSecondsPath`), which follows the user's maximum lifetime.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Admitted {
    #[serde(flatten)]
    pub session: SessionRef,
    pub await_stop_timeout_s: u64,
}

/// AwaitStop's timeout for a session whose maximum lifetime is `max_lifetime_s`.
pub fn await_stop_timeout_s(max_lifetime_s: u64) -> u64 {
    max_lifetime_s
        .saturating_add(BACKSTOP_MARGIN_S)
        .min(MAX_AWAIT_STOP_S)
}

/// Identifies an admitted session to the steps that follow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionRef {
    pub session_id: SessionId,
    pub user_id: UserId,
    pub version: Version,
}

pub fn parse_user_id(raw: Option<&serde_json::Value>) -> Result<UserId, InvalidInput> {
    match raw {
        Some(serde_json::Value::String(id)) => UserId::parse(id),
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
) -> Result<Admitted> {
    let session_id = SessionId::parse(&input.session_id)?;
    let user_id = parse_user_id(input.request.user_id.as_ref())?;
    let version = parse_version(input.request.version.as_ref())?;
    admit(
        Admission {
            session_id,
            user_id,
            version,
            execution_arn: input.execution_arn,
        },
        settings,
        store,
        registry,
        clock,
    )
    .await
}

/// A session request whose parts are already checked: Authorize's input once read, or
/// the api's start ([`crate::steps::start`]), which has them typed and must not send
/// them through JSON to be read again.
#[derive(Clone, Debug, PartialEq)]
pub struct Admission {
    pub session_id: SessionId,
    pub user_id: UserId,
    pub version: Version,
    pub execution_arn: Option<String>,
}

/// Admits a checked session request: the user must be authorized, the version's images
/// must exist (when the deployment checks them), and a slot must be free.
pub async fn admit(
    request: Admission,
    settings: &AdmissionSettings,
    store: &impl SessionStore,
    registry: &impl Registry,
    clock: &impl Clock,
) -> Result<Admitted> {
    let Admission {
        session_id,
        user_id,
        version,
        execution_arn,
    } = request;
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
        clock.now(),
    );
    session.execution_arn = execution_arn;
    let asked = user.max_sessions.unwrap_or(settings.max_sessions);
    let limit = settings.template.session_limit(asked);
    if limit < asked {
        tracing::warn!(
            max_sessions = asked,
            applied = limit,
            "the user's max_sessions is more than the session template allows: it mounts the user's data"
        );
    }
    if limit == 0 {
        // A user item's `max_sessions: 0` suspends the user. The slot condition only
        // counts slots held, so it would still admit a first session.
        return Err(Error::SessionLimitReached {
            max: 0,
            active: Vec::new(),
        });
    }
    store.open(&session, limit).await?;
    let max_lifetime_s = user.max_lifetime_s.unwrap_or(settings.max_lifetime_s);
    if max_lifetime_s.saturating_add(BACKSTOP_MARGIN_S) > MAX_AWAIT_STOP_S {
        tracing::warn!(
            max_lifetime_s,
            applied_s = MAX_AWAIT_STOP_S - BACKSTOP_MARGIN_S,
            "the user's max_lifetime_s is longer than an execution may last: the session ends at the longest"
        );
    }
    tracing::info!(session_id = %session_id, version = %version, "session admitted");
    Ok(Admitted {
        session: SessionRef {
            session_id,
            user_id,
            version,
        },
        await_stop_timeout_s: await_stop_timeout_s(max_lifetime_s),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_await_stop_backstop_comes_a_margin_after_the_max_lifetime_and_within_a_year() {
        assert_eq!(await_stop_timeout_s(3600), 3600 + BACKSTOP_MARGIN_S);
        assert_eq!(
            await_stop_timeout_s(2 * 86_400),
            2 * 86_400 + BACKSTOP_MARGIN_S
        );
        assert_eq!(await_stop_timeout_s(u64::MAX), MAX_AWAIT_STOP_S);
    }
}
