//! When a session's limits stop it: a running session is stopped as idle once it has
//! had no activity for its idle timeout, and any active session for its maximum
//! lifetime, counted from its admission. One rule for the reaper, which acts on it,
//! and the api, which shows it (`idle_stop_at`, `ends_at`), so a page cannot promise
//! a time the reaper does not keep.
//!
//! The reaper runs on a schedule: a session is stopped by its first run at or after
//! the moment, so up to one schedule period later.

use chrono::{DateTime, Duration, Utc};

use crate::config::{min_idle_timeout_s, SessionLimits};
use crate::ports::User;
use crate::session::{Session, Status};

/// The limits one user's sessions are held to: their own where their item sets one,
/// the deployment's otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserLimits {
    /// The idle timeout applied: never shorter than [`min_idle_timeout_s`].
    pub idle_timeout_s: u64,
    pub max_lifetime_s: u64,
    /// The user's own idle timeout, when it was shorter than that floor and raised to
    /// it: worth a warning, since the user item asks for what cannot be kept.
    pub raised_idle_timeout_s: Option<u64>,
}

impl SessionLimits {
    /// The limits of the sessions of `user` (`None`: no item, so the deployment's).
    /// A user's own idle timeout below twice the heartbeat interval would stop users
    /// who heartbeat, so it is raised to that.
    pub fn of_user(&self, user: Option<&User>) -> UserLimits {
        let asked = user
            .and_then(|u| u.idle_timeout_s)
            .unwrap_or(self.idle_timeout_s);
        let floor = min_idle_timeout_s(self.heartbeat_interval_s);
        UserLimits {
            idle_timeout_s: asked.max(floor),
            max_lifetime_s: user
                .and_then(|u| u.max_lifetime_s)
                .unwrap_or(self.max_lifetime_s),
            raised_idle_timeout_s: (asked < floor).then_some(asked),
        }
    }
}

impl UserLimits {
    /// From this moment on, the reaper stops `session` as idle unless activity comes
    /// first: its last activity (the latest heartbeat written, or its becoming
    /// `running` if none came since) plus the idle timeout. `None` unless the session
    /// is running (only a running session is stopped as idle) or when the moment is
    /// beyond what a timestamp can name.
    pub fn idle_stop_at(&self, session: &Session) -> Option<DateTime<Utc>> {
        if session.status != Status::Running {
            return None;
        }
        // Its admission only for an item that lacks both, which a running one never
        // does: the latest moment it is known to have been in use.
        let last_activity = [session.last_activity_at, session.started_at]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(session.created_at);
        last_activity
            .at()
            .checked_add_signed(seconds(self.idle_timeout_s))
    }

    /// From this moment on, the reaper stops `session` for its maximum lifetime: its
    /// admission (`created_at`) plus the maximum lifetime. `None` when the moment is
    /// beyond what a timestamp can name.
    pub fn ends_at(&self, session: &Session) -> Option<DateTime<Utc>> {
        session
            .created_at
            .at()
            .checked_add_signed(seconds(self.max_lifetime_s))
    }

    /// Whether the reaper stops `session` as idle at `now`.
    pub fn is_idle(&self, session: &Session, now: DateTime<Utc>) -> bool {
        self.idle_stop_at(session).is_some_and(|at| now >= at)
    }

    /// Whether the reaper stops `session` for its maximum lifetime at `now`.
    pub fn is_past_max_lifetime(&self, session: &Session, now: DateTime<Utc>) -> bool {
        self.ends_at(session).is_some_and(|at| now >= at)
    }
}

/// `s` seconds, or the longest duration chrono holds.
pub(crate) fn seconds(s: u64) -> Duration {
    Duration::seconds(
        i64::try_from(s)
            .unwrap_or(i64::MAX / 1000)
            .min(i64::MAX / 1000),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{SessionId, Timestamp, UserId, Version};

    const LIMITS: SessionLimits = SessionLimits {
        idle_timeout_s: 1800,
        max_lifetime_s: 8 * 3600,
        heartbeat_interval_s: 60,
    };

    fn at(s: &str) -> DateTime<Utc> {
        s.parse::<Timestamp>().unwrap().at()
    }

    fn running(started_at: &str, last_activity_at: Option<&str>) -> Session {
        let mut session = Session::new(
            SessionId::parse("sess-1").unwrap(),
            UserId::parse("alice").unwrap(),
            Version::default(),
            at("2026-11-26T10:00:00.000Z"),
        );
        session.status = Status::Running;
        session.started_at = Some(at(started_at).into());
        session.last_activity_at = last_activity_at.map(|t| at(t).into());
        session
    }

    fn user(idle_timeout_s: Option<u64>, max_lifetime_s: Option<u64>) -> User {
        User {
            user_id: "alice".into(),
            idle_timeout_s,
            max_lifetime_s,
            ..User::default()
        }
    }

    #[test]
    fn a_running_session_stops_as_idle_its_timeout_after_its_last_activity_and_not_before() {
        let limits = LIMITS.of_user(None);
        let session = running("2026-11-26T10:01:00.000Z", Some("2026-11-26T10:20:00.500Z"));
        let stop_at = at("2026-11-26T10:50:00.500Z");
        assert_eq!(limits.idle_stop_at(&session), Some(stop_at));
        assert!(!limits.is_idle(&session, stop_at - Duration::milliseconds(1)));
        assert!(limits.is_idle(&session, stop_at));
    }

    #[test]
    fn without_a_heartbeat_a_session_is_idle_from_when_it_became_running() {
        let limits = LIMITS.of_user(None);
        let session = running("2026-11-26T10:01:00.000Z", None);
        assert_eq!(
            limits.idle_stop_at(&session),
            Some(at("2026-11-26T10:31:00.000Z"))
        );
        // A heartbeat recorded before it ran (an item written by an older version)
        // does not take it back.
        let early = running("2026-11-26T10:01:00.000Z", Some("2026-11-26T10:00:30.000Z"));
        assert_eq!(limits.idle_stop_at(&early), limits.idle_stop_at(&session));
    }

    #[test]
    fn a_users_own_limits_apply_and_an_idle_timeout_below_twice_the_heartbeat_is_raised() {
        let session = running("2026-11-26T10:01:00.000Z", None);
        let own = LIMITS.of_user(Some(&user(Some(600), Some(3600))));
        assert_eq!((own.idle_timeout_s, own.raised_idle_timeout_s), (600, None));
        assert_eq!(
            own.idle_stop_at(&session),
            Some(at("2026-11-26T10:11:00.000Z"))
        );
        assert_eq!(own.ends_at(&session), Some(at("2026-11-26T11:00:00.000Z")));

        let short = LIMITS.of_user(Some(&user(Some(30), None)));
        assert_eq!(
            (short.idle_timeout_s, short.raised_idle_timeout_s),
            (120, Some(30))
        );
        assert_eq!(
            short.idle_stop_at(&session),
            Some(at("2026-11-26T10:03:00.000Z"))
        );
        // An item without limits of its own gets the deployment's.
        assert_eq!(
            LIMITS.of_user(Some(&user(None, None))),
            LIMITS.of_user(None)
        );
    }

    #[test]
    fn only_a_running_session_stops_as_idle_and_any_is_past_its_max_lifetime_from_admission() {
        let limits = LIMITS.of_user(None);
        let mut session = running("2026-11-26T10:01:00.000Z", None);
        let end = at("2026-11-26T18:00:00.000Z");
        for status in [Status::Starting, Status::Provisioning, Status::Stopping] {
            session.status = status;
            assert_eq!(limits.idle_stop_at(&session), None, "{status}");
            assert!(!limits.is_idle(&session, end), "{status}");
            assert_eq!(limits.ends_at(&session), Some(end), "{status}");
            assert!(limits.is_past_max_lifetime(&session, end), "{status}");
            assert!(!limits.is_past_max_lifetime(&session, end - Duration::milliseconds(1)));
        }
    }

    #[test]
    fn limits_too_long_for_a_timestamp_never_stop_the_session() {
        let limits = LIMITS.of_user(Some(&user(Some(u64::MAX), Some(u64::MAX))));
        let session = running("2026-11-26T10:01:00.000Z", None);
        assert_eq!(limits.idle_stop_at(&session), None);
        assert_eq!(limits.ends_at(&session), None);
        assert!(!limits.is_idle(&session, DateTime::<Utc>::MAX_UTC));
        assert!(!limits.is_past_max_lifetime(&session, DateTime::<Utc>::MAX_UTC));
    }
}
