//! A session as the API shows it: the seed's field names (`session_id`, `status`,
//! `urls.api`, ...) plus timestamps and why it ended. Task tokens, the execution and
//! failure internals stay inside; every documented field is always present (null when
//! not known yet), so clients can rely on the shape. And the versions a session may
//! run, as `GET /versions` shows them.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use session_core::session::{timestamp, Reason, Session, Status};
use session_core::versions::AvailableVersion;

#[derive(Debug, Serialize)]
pub struct SessionView<'a> {
    pub session_id: &'a str,
    pub user_id: &'a str,
    pub status: Status,
    pub version: &'a str,
    pub task_arn: Option<&'a str>,
    pub urls: BTreeMap<&'a str, &'a str>,
    pub created_at: &'a str,
    pub started_at: Option<&'a str>,
    pub stopped_at: Option<&'a str>,
    pub last_activity_at: Option<&'a str>,
    pub stop_reason: Option<Reason>,
    pub stop_code: Option<&'a str>,
    pub stopped_reason: Option<&'a str>,
}

impl<'a> SessionView<'a> {
    pub fn of(session: &'a Session) -> Self {
        Self {
            session_id: session.session_id.as_str(),
            user_id: &session.user_id,
            status: session.status,
            version: session.version.as_str(),
            task_arn: session.task_arn.as_deref(),
            // Only while running: a direct-access URL names a public IP that Fargate
            // hands to someone else's task once this one has stopped.
            urls: match session.status {
                Status::Running => session
                    .urls
                    .0
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect(),
                _ => BTreeMap::new(),
            },
            created_at: &session.created_at,
            started_at: session.started_at.as_deref(),
            stopped_at: session.stopped_at.as_deref(),
            last_activity_at: session.last_activity_at.as_deref(),
            stop_reason: session.stop_reason,
            stop_code: session.stop_code.as_deref(),
            stopped_reason: session.stopped_reason.as_deref(),
        }
    }

    pub fn json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// The answer of `GET /versions`.
#[derive(Debug, Serialize)]
pub struct VersionsView<'a> {
    /// Whether the versions come from the registry: false where the deployment does
    /// not check images (`CHECK_IMAGES=false`), and then `versions` is empty.
    pub listed: bool,
    pub versions: Vec<VersionView<'a>>,
}

#[derive(Debug, Serialize)]
pub struct VersionView<'a> {
    pub version: &'a str,
    pub pushed_at: String,
    pub latest: bool,
}

impl<'a> VersionsView<'a> {
    pub fn listed(versions: &'a [AvailableVersion]) -> Self {
        Self {
            listed: true,
            versions: versions
                .iter()
                .map(|v| VersionView {
                    version: v.version.as_str(),
                    pushed_at: timestamp(v.pushed_at),
                    latest: v.latest,
                })
                .collect(),
        }
    }

    pub fn not_listed() -> Self {
        Self {
            listed: false,
            versions: Vec::new(),
        }
    }

    pub fn json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use session_core::session::{SessionId, Urls, Version};

    #[test]
    fn the_view_has_the_seed_fields_and_never_the_task_tokens() {
        let mut session = Session::new(
            SessionId::parse("sess-1").unwrap(),
            "alice".into(),
            Version::default(),
            "2026-11-26T00:00:00.000Z".into(),
        );
        session.ip_token = Some("secret-ip-token".into());
        session.stop_token = Some("secret-stop-token".into());
        session.execution_arn = Some("arn:aws:states:x".into());
        session.urls = Urls(BTreeMap::from([(
            "api".into(),
            "http://1.2.3.4:8000".into(),
        )]));
        session.status = Status::Running;
        let json = SessionView::of(&session).json();
        assert_eq!(json["session_id"], "sess-1");
        assert_eq!(json["urls"]["api"], "http://1.2.3.4:8000");
        assert_eq!(json["status"], "running");
        assert!(json["task_arn"].is_null());
        let text = json.to_string();
        for secret in ["secret-ip-token", "secret-stop-token", "arn:aws:states"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
    }

    #[test]
    fn an_ended_session_shows_no_urls_whose_address_fargate_may_have_reused() {
        let mut session = Session::new(
            SessionId::parse("sess-2").unwrap(),
            "alice".into(),
            Version::default(),
            "2026-11-26T00:00:00.000Z".into(),
        );
        session.urls = Urls(BTreeMap::from([(
            "api".into(),
            "http://1.2.3.4:8000".into(),
        )]));
        for status in [Status::Stopping, Status::Stopped, Status::Failed] {
            session.status = status;
            assert_eq!(
                SessionView::of(&session).json()["urls"],
                serde_json::json!({})
            );
        }
    }
}
