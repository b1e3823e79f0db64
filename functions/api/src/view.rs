//! A session as the API shows it: the seed's field names (`session_id`, `status`,
//! `urls.api`, ...) plus timestamps, when the reaper would stop it while it runs, and
//! why it ended. Task tokens, the execution and failure internals stay inside; every
//! documented field is always present (null when not known yet, or not applicable),
//! so clients can rely on the shape. The heartbeat's answer, and the versions a
//! session may run, as `GET /versions` shows them.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use session_core::limits::UserLimits;
use session_core::session::{timestamp, Reason, Session, Status, Timestamp};
use session_core::versions::AvailableVersion;

/// When the reaper would stop a running session, by the rule it stops sessions by
/// ([`UserLimits`]); both null for a session not running. The reaper runs on a
/// schedule, so a stop comes at its first run from that moment on.
#[derive(Debug, Default, PartialEq, Eq, Serialize)]
pub struct StopTimes {
    /// From this moment the next reaper run stops the session as idle, unless a
    /// heartbeat is written first.
    pub idle_stop_at: Option<String>,
    /// From this moment the next reaper run stops the session for its maximum
    /// lifetime, whatever its activity.
    pub ends_at: Option<String>,
}

impl StopTimes {
    /// The stop times of `session`, its owner held to `limits`. Those limits are read
    /// from the owner's item, so they are only known (and needed) for running sessions.
    pub fn of(session: &Session, limits: Option<&UserLimits>) -> Self {
        match limits {
            Some(limits) if session.status == Status::Running => Self {
                idle_stop_at: limits.idle_stop_at(session).map(timestamp),
                ends_at: limits.ends_at(session).map(timestamp),
            },
            _ => Self::default(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct SessionView<'a> {
    pub session_id: &'a str,
    pub user_id: &'a str,
    pub status: Status,
    pub version: &'a str,
    pub task_arn: Option<&'a str>,
    pub urls: BTreeMap<&'a str, &'a str>,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub stopped_at: Option<Timestamp>,
    pub last_activity_at: Option<Timestamp>,
    pub stop_reason: Option<Reason>,
    pub stop_code: Option<&'a str>,
    pub stopped_reason: Option<&'a str>,
    #[serde(flatten)]
    pub stop_times: StopTimes,
}

impl<'a> SessionView<'a> {
    /// The view of `session`; `limits` are its owner's, needed only while it runs.
    pub fn of(session: &'a Session, limits: Option<&UserLimits>) -> Self {
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
            created_at: session.created_at,
            started_at: session.started_at,
            stopped_at: session.stopped_at,
            last_activity_at: session.last_activity_at,
            stop_reason: session.stop_reason,
            stop_code: session.stop_code.as_deref(),
            stopped_reason: session.stopped_reason.as_deref(),
            stop_times: StopTimes::of(session, limits),
        }
    }

    pub fn json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// The answer of `POST /sessions/{id}/heartbeat`: whether this beat was written, and
/// when the session would now be stopped.
#[derive(Debug, Serialize)]
pub struct HeartbeatView<'a> {
    pub session_id: &'a str,
    pub status: Status,
    pub recorded: bool,
    pub last_activity_at: Option<Timestamp>,
    #[serde(flatten)]
    pub stop_times: StopTimes,
}

impl<'a> HeartbeatView<'a> {
    /// `session` as it is after the beat (its `last_activity_at` the one written, if
    /// `recorded`), its owner held to `limits`.
    pub fn of(session: &'a Session, recorded: bool, limits: &UserLimits) -> Self {
        Self {
            session_id: session.session_id.as_str(),
            status: session.status,
            recorded,
            last_activity_at: session.last_activity_at,
            stop_times: StopTimes::of(session, Some(limits)),
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
    use serde_json::json;
    use session_core::config::SessionLimits;
    use session_core::ports::User;
    use session_core::session::{SessionId, Urls, UserId, Version};

    #[test]
    fn the_view_has_the_seed_fields_and_never_the_task_tokens() {
        let mut session = Session::new(
            SessionId::parse("sess-1").unwrap(),
            UserId::parse("alice").unwrap(),
            Version::default(),
            "2026-11-26T00:00:00.000Z".parse().unwrap(),
        );
        session.ip_token = Some("secret-ip-token".into());
        session.stop_token = Some("secret-stop-token".into());
        session.execution_arn = Some("arn:aws:states:x".into());
        session.urls = Urls(BTreeMap::from([(
            "api".into(),
            "http://1.2.3.4:8000".into(),
        )]));
        session.status = Status::Running;
        let json = SessionView::of(&session, Some(&deployment())).json();
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
            UserId::parse("alice").unwrap(),
            Version::default(),
            "2026-11-26T00:00:00.000Z".parse().unwrap(),
        );
        session.urls = Urls(BTreeMap::from([(
            "api".into(),
            "http://1.2.3.4:8000".into(),
        )]));
        for status in [Status::Stopping, Status::Stopped, Status::Failed] {
            session.status = status;
            assert_eq!(
                SessionView::of(&session, Some(&deployment())).json()["urls"],
                serde_json::json!({})
            );
        }
    }

    /// The deployment's limits by default: 30 min idle, 8 h, heartbeats each minute.
    const LIMITS: SessionLimits = SessionLimits {
        idle_timeout_s: 1800,
        max_lifetime_s: 8 * 3600,
        heartbeat_interval_s: 60,
    };

    fn deployment() -> UserLimits {
        LIMITS.of_user(None)
    }

    /// A session of alice admitted at 10:00, running since 10:01.
    fn running(last_activity_at: Option<&str>) -> Session {
        let mut session = Session::new(
            SessionId::parse("sess-3").unwrap(),
            UserId::parse("alice").unwrap(),
            Version::default(),
            "2026-11-26T10:00:00.000Z".parse().unwrap(),
        );
        session.status = Status::Running;
        session.started_at = Some("2026-11-26T10:01:00.000Z".parse().unwrap());
        session.last_activity_at = last_activity_at.map(|t| t.parse().unwrap());
        session
    }

    fn stop_times(session: &Session, limits: &UserLimits) -> (Value, Value) {
        let json = SessionView::of(session, Some(limits)).json();
        (json["idle_stop_at"].clone(), json["ends_at"].clone())
    }

    #[test]
    fn a_running_session_stops_as_idle_the_idle_timeout_after_its_last_heartbeat() {
        let session = running(Some("2026-11-26T10:20:00.250Z"));
        assert_eq!(
            stop_times(&session, &deployment()),
            (
                json!("2026-11-26T10:50:00.250Z"),
                json!("2026-11-26T18:00:00.000Z")
            )
        );
    }

    #[test]
    fn a_running_session_without_a_heartbeat_stops_as_idle_counted_from_when_it_ran() {
        assert_eq!(
            stop_times(&running(None), &deployment()).0,
            json!("2026-11-26T10:31:00.000Z")
        );
    }

    #[test]
    fn the_users_own_limits_apply_and_their_idle_timeout_is_raised_to_twice_the_heartbeat() {
        let user = |idle_timeout_s, max_lifetime_s| User {
            user_id: "alice".into(),
            idle_timeout_s,
            max_lifetime_s,
            ..User::default()
        };
        let session = running(None);
        let own = LIMITS.of_user(Some(&user(Some(600), Some(3600))));
        assert_eq!(
            stop_times(&session, &own),
            (
                json!("2026-11-26T10:11:00.000Z"),
                json!("2026-11-26T11:00:00.000Z")
            )
        );
        // 30 s is shorter than two heartbeat intervals: the reaper waits 120 s.
        let short = LIMITS.of_user(Some(&user(Some(30), None)));
        assert_eq!(
            stop_times(&session, &short),
            (
                json!("2026-11-26T10:03:00.000Z"),
                json!("2026-11-26T18:00:00.000Z")
            )
        );
    }

    #[test]
    fn a_session_not_running_shows_no_stop_times_but_has_the_fields() {
        let mut session = running(Some("2026-11-26T10:20:00.000Z"));
        for status in [
            Status::Starting,
            Status::Provisioning,
            Status::Stopping,
            Status::Stopped,
            Status::Failed,
        ] {
            session.status = status;
            for limits in [Some(&deployment()), None] {
                let json = SessionView::of(&session, limits).json();
                for field in ["idle_stop_at", "ends_at"] {
                    assert_eq!(json.get(field), Some(&Value::Null), "{status} {field}");
                }
            }
        }
    }

    #[test]
    fn the_heartbeats_answer_counts_idleness_from_the_beat_it_wrote() {
        let beaten = running(Some("2026-11-26T11:00:00.000Z"));
        let json = HeartbeatView::of(&beaten, true, &deployment()).json();
        assert_eq!(
            json,
            json!({
                "session_id": "sess-3",
                "status": "running",
                "recorded": true,
                "last_activity_at": "2026-11-26T11:00:00.000Z",
                "idle_stop_at": "2026-11-26T11:30:00.000Z",
                "ends_at": "2026-11-26T18:00:00.000Z",
            })
        );
    }
}
