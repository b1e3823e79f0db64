//! The reaper, run on a schedule: stops sessions that are idle or past their maximum
//! lifetime, and reconciles what the events may have missed: tasks of ours with no
//! active session (orphans) and sessions whose task or execution is gone (lost). It
//! reads only the active sessions, so its cost grows with them, never with history.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::config::ReaperSettings;
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
            let idle_timeout = seconds(
                user.and_then(|u| u.idle_timeout_s)
                    .unwrap_or(self.settings.idle_timeout_s),
            );
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
        let id = session.session_id.clone();
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
        self.store
            .apply(
                &id,
                Change::Stopped {
                    reason: Reason::Lost,
                    at: self.clock.now(),
                },
            )
            .await?;
        tracing::warn!(session_id = %id, "session lost: its execution ended");
        Ok(())
    }
}
