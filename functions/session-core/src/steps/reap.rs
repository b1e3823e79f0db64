//! The reaper, run on a schedule: stops sessions that are idle or past their maximum
//! lifetime, and reconciles what the events may have missed: tasks of ours with no
//! active session (orphans), sessions whose task or execution is gone, and sessions
//! stuck on their way in or out (all three lost). It reads only the active sessions,
//! so its cost grows with them, never with history.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::config::{min_idle_timeout_s, ReaperSettings};
use crate::error::Result;
use crate::ports::{Change, Clock, Compute, SessionStore, User, Workflow};
use crate::session::{Reason, Session, SessionId, Status, SESSION_ID_PREFIX};
use crate::steps::request_stop::{request_stop, StopRequest};
use crate::steps::stop::{stop, StopInput};

/// What one run did (the function's answer, and its metrics).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ReapReport {
    /// Items DynamoDB read to find the active sessions.
    pub sessions_read: u64,
    pub active_sessions: usize,
    pub idle: Vec<String>,
    pub max_lifetime: Vec<String>,
    pub lost: Vec<String>,
    pub orphans: Vec<String>,
}

pub struct Reaper<'a, S, C, W, K> {
    pub settings: &'a ReaperSettings,
    pub store: &'a S,
    pub compute: &'a C,
    pub workflow: &'a W,
    pub clock: &'a K,
}

fn parse_time(raw: Option<&str>) -> Option<DateTime<Utc>> {
    raw.and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn seconds(s: u64) -> Duration {
    Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 1000))
}

/// When the session entered its current status. An item written before
/// `status_changed_at` existed is judged by the latest time it is known to have been
/// alive, never by its creation alone.
fn entered_status_at(session: &Session) -> Option<DateTime<Utc>> {
    parse_time(session.status_changed_at.as_deref()).or_else(|| {
        [
            Some(session.created_at.as_str()),
            session.started_at.as_deref(),
            session.last_activity_at.as_deref(),
        ]
        .into_iter()
        .filter_map(parse_time)
        .max()
    })
}

/// Whether the session has been `starting`, `provisioning` or `stopping` for longer
/// than `deadline`. A session only passes through these: the state machine leaves
/// each within minutes, so one that stays has an execution that can no longer
/// progress (an invocation that never returns, a task event that never comes).
pub fn stuck_in_transition(session: &Session, now: DateTime<Utc>, deadline: Duration) -> bool {
    matches!(
        session.status,
        Status::Starting | Status::Provisioning | Status::Stopping
    ) && entered_status_at(session).is_some_and(|at| now - at > deadline)
}

impl<S: SessionStore, C: Compute, W: Workflow, K: Clock> Reaper<'_, S, C, W, K> {
    pub async fn run(&self) -> Result<ReapReport> {
        // Tasks are listed before sessions are read: a task launched after this list
        // belongs to a session the read below may not see, and must not be judged.
        let tasks = self.compute.running_tasks().await?;
        let active = self.store.active_sessions().await?;
        let now = self.clock.now();
        let mut report = ReapReport {
            sessions_read: active.items_read,
            active_sessions: active.sessions.len(),
            ..Default::default()
        };
        let deadline = seconds(self.settings.transition_deadline_s);
        let running_tasks: BTreeSet<&str> = tasks.iter().map(|t| t.task_arn.as_str()).collect();
        let mut users: HashMap<String, Option<User>> = HashMap::new();

        for session in &active.sessions {
            if !users.contains_key(&session.user_id) {
                let user = self.store.user(&session.user_id).await?;
                users.insert(session.user_id.clone(), user);
            }
            let user = users[&session.user_id].as_ref();
            let id = &session.session_id;

            let created = parse_time(Some(&session.created_at)).unwrap_or(now);
            // The API records a session (with its execution's ARN) just before it starts
            // the execution: a young session's execution may not exist yet.
            let settled = now - created > seconds(self.settings.orphan_grace_s);
            if let Some(arn) = session.execution_arn.as_ref().filter(|_| settled) {
                if !self.workflow.execution_running(arn).await? {
                    self.close_lost(session).await?;
                    report.lost.push(id.to_string());
                    continue;
                }
            }
            // Before max lifetime: a session stuck `stopping` cannot be stopped again.
            if stuck_in_transition(session, now, deadline) {
                // On its own: one session's failing AWS call must not keep the others
                // stuck; the next run tries it again.
                match self.close_stuck(session).await {
                    Ok(()) => report.lost.push(id.to_string()),
                    Err(err) => tracing::error!(
                        session_id = %id,
                        status = %session.status,
                        error = %err,
                        "could not close a stuck session"
                    ),
                }
                continue;
            }
            let max_lifetime = seconds(
                user.and_then(|u| u.max_lifetime_s)
                    .unwrap_or(self.settings.max_lifetime_s),
            );
            if now - created > max_lifetime {
                if self.stop(id, Reason::MaxLifetime).await? {
                    report.max_lifetime.push(id.to_string());
                }
                continue;
            }
            if session.status != Status::Running {
                continue;
            }
            if session
                .task_arn
                .as_deref()
                .is_some_and(|t| !running_tasks.contains(t))
            {
                if self.stop(id, Reason::Lost).await? {
                    report.lost.push(id.to_string());
                }
                continue;
            }
            let configured = user
                .and_then(|u| u.idle_timeout_s)
                .unwrap_or(self.settings.idle_timeout_s);
            let floor = min_idle_timeout_s(self.settings.heartbeat_interval_s);
            if configured < floor {
                tracing::warn!(
                    session_id = %id,
                    idle_timeout_s = configured,
                    applied_s = floor,
                    "the user's idle_timeout_s is shorter than twice the heartbeat interval: the longer one applies"
                );
            }
            let idle_timeout = seconds(configured.max(floor));
            let last_activity = [
                session.last_activity_at.as_deref(),
                session.started_at.as_deref(),
            ]
            .into_iter()
            .filter_map(|t| parse_time(t))
            .max()
            .unwrap_or(created);
            if now - last_activity > idle_timeout && self.stop(id, Reason::Idle).await? {
                report.idle.push(id.to_string());
            }
        }

        let active_ids: BTreeSet<&str> = active
            .sessions
            .iter()
            .map(|s| s.session_id.as_str())
            .collect();
        let grace = seconds(self.settings.orphan_grace_s);
        for task in &tasks {
            let Some(id) = task
                .started_by
                .as_deref()
                .filter(|s| s.starts_with(SESSION_ID_PREFIX))
            else {
                continue;
            };
            if active_ids.contains(id) || task.created_at.is_some_and(|at| now - at < grace) {
                continue;
            }
            // The index is eventually consistent: confirm with a consistent read.
            let session = match SessionId::parse(id) {
                Ok(id) => self.store.session(&id).await?,
                Err(_) => None,
            };
            if session.is_some_and(|s| !s.status.is_terminal()) {
                continue;
            }
            self.compute
                .stop_task(&task.task_arn, "orphan: no active session")
                .await?;
            tracing::warn!(task_arn = %task.task_arn, started_by = id, "orphan task stopped");
            report.orphans.push(task.task_arn.clone());
        }
        Ok(report)
    }

    async fn stop(&self, id: &SessionId, reason: Reason) -> Result<bool> {
        let outcome = request_stop(id, reason, self.store, self.workflow).await?;
        Ok(matches!(outcome, StopRequest::Requested { .. }))
    }

    /// The execution is gone, so no state will ever run for this session again: stop
    /// its tasks, free its slot and end it here.
    async fn close_lost(&self, session: &Session) -> Result<()> {
        let ended = Change::Stopped {
            reason: Reason::Lost,
            at: self.clock.now(),
        };
        self.close(&session.session_id, ended).await?;
        tracing::warn!(session_id = %session.session_id, "session lost: its execution ended");
        Ok(())
    }

    /// The execution still runs but cannot move the session on: stop it first, so
    /// that it starts nothing more, then stop the tasks, free the slot and end the
    /// session. A Launch still in flight finds the session ended and stops its own
    /// task; one that slips in between is an orphan for a later run.
    async fn close_stuck(&self, session: &Session) -> Result<()> {
        let id = &session.session_id;
        let cause = format!(
            "no progress while {} for more than {} s",
            session.status, self.settings.transition_deadline_s
        );
        if let Some(arn) = &session.execution_arn {
            self.workflow.stop_execution(arn, &cause).await?;
        }
        let ended = Change::Failed {
            reason: Reason::Lost,
            cause: cause.clone(),
            at: self.clock.now(),
        };
        self.close(id, ended).await?;
        tracing::warn!(session_id = %id, status = %session.status, cause, "session lost: stuck");
        Ok(())
    }

    /// Ends a session no execution will end: its tasks stopped, its slot freed, then
    /// the final status written.
    async fn close(&self, id: &SessionId, ended: Change) -> Result<()> {
        stop(
            StopInput {
                session_id: id.clone(),
                reason: None,
                request: None,
            },
            self.store,
            self.compute,
        )
        .await?;
        self.store.apply(id, ended).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{timestamp, Version};

    const DEADLINE_S: i64 = 1200;

    fn at(minutes: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
            + Duration::minutes(minutes)
    }

    /// A session created at minute 0 that entered `status` at minute `entered`.
    fn session(status: Status, entered: i64) -> Session {
        let mut session = Session::new(
            SessionId::parse("sess-1").unwrap(),
            "u".into(),
            Version::default(),
            timestamp(at(0)),
        );
        session.status = status;
        session.status_changed_at = Some(timestamp(at(entered)));
        session
    }

    fn stuck(session: &Session, now: DateTime<Utc>) -> bool {
        stuck_in_transition(session, now, Duration::seconds(DEADLINE_S))
    }

    #[test]
    fn a_session_past_the_deadline_in_a_transitional_status_is_stuck() {
        for status in [Status::Starting, Status::Provisioning, Status::Stopping] {
            assert!(stuck(&session(status, 0), at(21)), "{status}");
        }
    }

    #[test]
    fn a_session_inside_the_deadline_is_not_stuck() {
        for status in [Status::Starting, Status::Provisioning, Status::Stopping] {
            assert!(!stuck(&session(status, 0), at(19)), "{status}");
            assert!(
                !stuck(&session(status, 0), at(20)),
                "{status}: at the deadline exactly"
            );
        }
    }

    #[test]
    fn a_long_running_session_that_just_entered_stopping_is_not_stuck() {
        // Created eight hours ago, stopping for a minute.
        let mut session = session(Status::Stopping, 8 * 60);
        session.started_at = Some(timestamp(at(2)));
        assert!(!stuck(&session, at(8 * 60 + 1)));
        assert!(stuck(&session, at(8 * 60 + 21)));
    }

    #[test]
    fn running_and_ended_sessions_are_never_stuck_however_old() {
        for status in [Status::Running, Status::Stopped, Status::Failed] {
            assert!(!stuck(&session(status, 0), at(48 * 60)), "{status}");
        }
    }

    #[test]
    fn a_session_written_before_status_changed_at_is_judged_by_its_latest_known_time() {
        let mut old = session(Status::Stopping, 0);
        old.status_changed_at = None;
        old.started_at = Some(timestamp(at(60)));
        old.last_activity_at = Some(timestamp(at(8 * 60)));
        assert!(!stuck(&old, at(8 * 60 + 1)));
        assert!(stuck(&old, at(8 * 60 + 21)));
    }
}
