//! The reaper, run on a schedule: stops sessions that are idle or past their maximum
//! lifetime (by [`crate::limits`], the rule the api shows users), and reconciles what the events may have missed: tasks of ours with no
//! active session (orphans), sessions whose task or execution is gone, and sessions
//! stuck on their way in or out (all three lost). It reads only the active sessions,
//! so its cost grows with them, never with history, and it reads them and their users
//! in batches (a Scan of the active index, one BatchGetItem per 100 users), its tasks
//! in pages (ListTasks, DescribeTasks per 100): the AWS calls of a run that finds
//! nothing to do grow with the active sessions divided by 100.
//!
//! Each session is judged on its own: a failing call for one (a throttled
//! DescribeExecution, a StopTask) is logged with its session id and counted in
//! [`ReapReport::errors`], and the run goes on; the next run tries that one again.
//!
//! Step Functions is asked whether a session's execution still runs (DescribeExecution,
//! throttled per account and Region like every control-plane call) only where the
//! session's own state calls for it, never for every active session on every run:
//! - a session `starting`, `provisioning` or `stopping` for longer than
//!   [`execution_check_after_s`] (and created more than `orphan_grace_s` ago, since a
//!   young session's execution may not exist yet): its execution should have moved it
//!   on by then, and if that execution has ended nothing else ever will;
//! - a session whose stop the reaper requests (idle, max lifetime, task gone) through
//!   a task token that turns out to be closed: the execution that should carry the
//!   stop out may have ended.
//!
//! A `running` session whose execution ended otherwise (an operator stopped it) keeps
//! its task until one of these applies: it goes idle or reaches its maximum lifetime
//! (the reaper's stop finds the token closed), or its user stops it (it then stays
//! `stopping`, and is checked once that lasts).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::config::ReaperSettings;
use crate::error::Result;
use crate::limits::{seconds, UserLimits};
use crate::ports::{Change, Clock, Compute, SessionStore, TaskSummary, User, Workflow};
use crate::session::{Reason, Session, SessionId, Status, Timestamp, SESSION_ID_PREFIX};
use crate::steps::request_stop::{request_stop, StopRequestOutcome};
use crate::steps::stop::{stop, StopInput};

/// What one run did (the function's answer, and its metrics).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ReapReport {
    /// Items DynamoDB read to find the active sessions.
    pub sessions_read: u64,
    pub active_sessions: usize,
    /// Active sessions judged (acted on or found fine); the others are in `errors`.
    pub judged: usize,
    pub idle: Vec<String>,
    pub max_lifetime: Vec<String>,
    pub lost: Vec<String>,
    pub orphans: Vec<String>,
    /// Sessions and tasks this run could not judge or act on (an AWS call failed);
    /// they are tried again on the next run.
    pub errors: usize,
}

/// What one session's turn of a run did to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Idle,
    MaxLifetime,
    Lost,
}

/// How long a session may stay `starting`, `provisioning` or `stopping` before its
/// execution is looked up: a healthy execution moves it on within a few minutes
/// (Fargate's start, a task's stop timeout of at most 120 s), so past three minutes a
/// look is warranted; past the transition deadline the session is closed as stuck
/// anyway, so the look always comes first.
pub fn execution_check_after_s(settings: &ReaperSettings) -> u64 {
    const CHECK_AFTER_S: u64 = 3 * 60;
    CHECK_AFTER_S.min(settings.transition_deadline_s / 2)
}

/// Whether the session has been `starting`, `provisioning` or `stopping` for longer
/// than `after`: its execution may have ended without moving it on.
pub fn execution_in_doubt(session: &Session, now: DateTime<Utc>, after: Duration) -> bool {
    matches!(
        session.status,
        Status::Starting | Status::Provisioning | Status::Stopping
    ) && entered_status_at(session).is_some_and(|at| now - at > after)
}

pub struct Reaper<'a, S, C, W, K> {
    pub settings: &'a ReaperSettings,
    pub store: &'a S,
    pub compute: &'a C,
    pub workflow: &'a W,
    pub clock: &'a K,
}

/// When the session entered its current status. An item written before
/// `status_changed_at` existed is judged by the latest time it is known to have been
/// alive, never by its creation alone.
fn entered_status_at(session: &Session) -> Option<DateTime<Utc>> {
    session
        .status_changed_at
        .or_else(|| {
            [
                Some(session.created_at),
                session.started_at,
                session.last_activity_at,
            ]
            .into_iter()
            .flatten()
            .max()
        })
        .map(Timestamp::at)
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

/// What a run makes of one active session, from what it read: the rules alone, so
/// that their order and boundaries can be shown without AWS. Acting on it (stopping,
/// closing) is [`Reaper::run`]'s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// `starting`, `provisioning` or `stopping` for longer than
    /// [`execution_check_after_s`], and created more than `orphan_grace_s` ago: its
    /// execution should have moved it on. The execution is looked up; if it has ended
    /// the session is closed as lost, and if it still runs the session is judged
    /// again, knowing so ([`Execution::Running`]).
    ExecutionInDoubt,
    /// In a transitional status for longer than `transition_deadline_s`
    /// ([`stuck_in_transition`]): its execution runs but cannot move it on, so the
    /// session is closed as lost. Judged before the maximum lifetime: a session stuck
    /// `stopping` cannot be stopped again.
    Stuck,
    /// At or past its maximum lifetime ([`UserLimits::is_past_max_lifetime`]), whatever
    /// its status: stopped for it.
    MaxLifetime,
    /// Running, but its task is not among the cluster's running tasks: stopped as lost.
    TaskGone,
    /// Running and at or past its idle moment ([`UserLimits::is_idle`]): stopped as idle.
    Idle,
    /// Nothing calls for the reaper.
    Fine,
}

/// What a run knows of a session's execution: Step Functions is asked only about a
/// session in doubt, never about every active session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Execution {
    NotLookedUp,
    /// Looked up for a session in doubt, and still running.
    Running,
}

/// The reaper's verdict on `session` at `now`, held to `limits` (its user's), with
/// `running_tasks` the cluster's tasks listed before the sessions were read. The first
/// rule that applies wins, in the order of [`Verdict`]'s variants.
pub fn verdict(
    session: &Session,
    limits: &UserLimits,
    running_tasks: &BTreeSet<&str>,
    execution: Execution,
    now: DateTime<Utc>,
    settings: &ReaperSettings,
) -> Verdict {
    let created = session.created_at.at();
    // The API records a session (with its execution's ARN) just before it starts
    // the execution: a young session's execution may not exist yet.
    let settled = now - created > seconds(settings.orphan_grace_s);
    let check_after = seconds(execution_check_after_s(settings));
    if execution == Execution::NotLookedUp
        && settled
        && execution_in_doubt(session, now, check_after)
    {
        return Verdict::ExecutionInDoubt;
    }
    if stuck_in_transition(session, now, seconds(settings.transition_deadline_s)) {
        return Verdict::Stuck;
    }
    if limits.is_past_max_lifetime(session, now) {
        return Verdict::MaxLifetime;
    }
    if session.status != Status::Running {
        return Verdict::Fine;
    }
    if session
        .task_arn
        .as_deref()
        .is_some_and(|t| !running_tasks.contains(t))
    {
        return Verdict::TaskGone;
    }
    if limits.is_idle(session, now) {
        return Verdict::Idle;
    }
    Verdict::Fine
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
        let user_ids: BTreeSet<String> = active
            .sessions
            .iter()
            .map(|s| s.user_id.to_string())
            .collect();
        let users = self.store.users(&user_ids).await?;

        for session in &active.sessions {
            // Each session on its own: one failing AWS call (a throttled DescribeExecution,
            // a StopTask) must not leave the others unreaped; the next run tries again.
            let judged = self.judge(session, now, &running_tasks, &users).await;
            if judged.is_ok() {
                report.judged += 1;
            }
            match judged {
                Ok(Some(Outcome::Idle)) => report.idle.push(session.session_id.to_string()),
                Ok(Some(Outcome::MaxLifetime)) => {
                    report.max_lifetime.push(session.session_id.to_string())
                }
                Ok(Some(Outcome::Lost)) => report.lost.push(session.session_id.to_string()),
                Ok(None) => {}
                Err(err) => {
                    tracing::error!(
                        session_id = %session.session_id,
                        status = %session.status,
                        error = %err,
                        error_type = err.error_type(),
                        "could not reap a session"
                    );
                    report.errors += 1;
                }
            }
        }

        let active_ids: BTreeSet<&str> = active
            .sessions
            .iter()
            .map(|s| s.session_id.as_str())
            .collect();
        for task in &tasks {
            match self.judge_task(task, &active_ids, now).await {
                Ok(true) => report.orphans.push(task.task_arn.clone()),
                Ok(false) => {}
                Err(err) => {
                    tracing::error!(
                        task_arn = %task.task_arn,
                        error = %err,
                        error_type = err.error_type(),
                        "could not reap a task"
                    );
                    report.errors += 1;
                }
            }
        }
        Ok(report)
    }

    /// One session's turn: what it is stopped or closed for, if anything.
    async fn judge(
        &self,
        session: &Session,
        now: DateTime<Utc>,
        running_tasks: &BTreeSet<&str>,
        users: &BTreeMap<String, User>,
    ) -> Result<Option<Outcome>> {
        let limits = self
            .settings
            .limits
            .of_user(users.get(session.user_id.as_str()));
        let judged = match verdict(
            session,
            &limits,
            running_tasks,
            Execution::NotLookedUp,
            now,
            self.settings,
        ) {
            Verdict::ExecutionInDoubt if self.execution_ended(session).await? => {
                return Ok(self.close_lost(session).await?.then_some(Outcome::Lost));
            }
            Verdict::ExecutionInDoubt => verdict(
                session,
                &limits,
                running_tasks,
                Execution::Running,
                now,
                self.settings,
            ),
            judged => judged,
        };
        // Only a running session that got as far as the idle rule is held to the raised
        // timeout, so only it is worth the warning.
        if session.status == Status::Running && matches!(judged, Verdict::Idle | Verdict::Fine) {
            if let Some(asked) = limits.raised_idle_timeout_s {
                tracing::warn!(
                    session_id = %session.session_id,
                    idle_timeout_s = asked,
                    applied_s = limits.idle_timeout_s,
                    "the user's idle_timeout_s is shorter than twice the heartbeat interval: the longer one applies"
                );
            }
        }
        match judged {
            Verdict::Stuck => Ok(self.close_stuck(session).await?.then_some(Outcome::Lost)),
            Verdict::MaxLifetime => {
                self.stop_for(session, Reason::MaxLifetime, Outcome::MaxLifetime)
                    .await
            }
            Verdict::TaskGone => self.stop_for(session, Reason::Lost, Outcome::Lost).await,
            Verdict::Idle => self.stop_for(session, Reason::Idle, Outcome::Idle).await,
            // Judged again knowing its execution runs, a session is never in doubt twice.
            Verdict::ExecutionInDoubt | Verdict::Fine => Ok(None),
        }
    }

    /// Stops a task of ours that no active session owns. Returns whether it did.
    async fn judge_task(
        &self,
        task: &TaskSummary,
        active_ids: &BTreeSet<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let Some(id) = task
            .started_by
            .as_deref()
            .filter(|s| s.starts_with(SESSION_ID_PREFIX))
        else {
            return Ok(false);
        };
        let grace = seconds(self.settings.orphan_grace_s);
        if active_ids.contains(id) || task.created_at.is_some_and(|at| now - at < grace) {
            return Ok(false);
        }
        // The index is eventually consistent: confirm with a consistent read.
        let session = match SessionId::parse(id) {
            Ok(id) => self.store.session(&id).await?,
            Err(_) => None,
        };
        if session.is_some_and(|s| !s.status.is_terminal()) {
            return Ok(false);
        }
        self.compute
            .stop_task(&task.task_arn, "orphan: no active session")
            .await?;
        tracing::warn!(task_arn = %task.task_arn, started_by = id, "orphan task stopped");
        Ok(true)
    }

    /// Requests the stop. When the token it went through was already closed, the
    /// execution that should carry the stop out may have ended (an operator stopped
    /// it, it timed out): only then is the execution looked up, and if it has ended
    /// the session is closed here, since nothing else would ever end it.
    async fn stop_for(
        &self,
        session: &Session,
        reason: Reason,
        outcome: Outcome,
    ) -> Result<Option<Outcome>> {
        let requested = request_stop(
            &session.session_id,
            reason,
            self.store,
            self.workflow,
            self.clock,
        )
        .await?;
        let had_token = session.stop_token.is_some() || session.ip_token.is_some();
        match requested {
            StopRequestOutcome::Requested { resumed: false }
                if had_token && self.execution_ended(session).await? =>
            {
                Ok(self.close_lost(session).await?.then_some(Outcome::Lost))
            }
            StopRequestOutcome::Requested { .. } => Ok(Some(outcome)),
            _ => Ok(None),
        }
    }

    /// Whether the session's execution has ended (or never existed). A session without
    /// an execution ARN cannot be judged so, and is taken as still running.
    async fn execution_ended(&self, session: &Session) -> Result<bool> {
        match &session.execution_arn {
            Some(arn) => Ok(!self.workflow.execution_running(arn).await?),
            None => Ok(false),
        }
    }

    /// The execution is gone, so no state will ever run for this session again: stop
    /// its tasks, free its slot and end it here. Returns whether it ended it.
    async fn close_lost(&self, session: &Session) -> Result<bool> {
        let ended = Change::Stopped {
            reason: Reason::Lost,
            at: self.clock.now(),
        };
        let closed = self.close(&session.session_id, ended).await?;
        if closed {
            tracing::warn!(session_id = %session.session_id, "session lost: its execution ended");
        }
        Ok(closed)
    }

    /// The execution still runs but cannot move the session on: stop it first, so
    /// that it starts nothing more, then stop the tasks, free the slot and end the
    /// session. A Launch still in flight finds the session ended and stops its own
    /// task; one that slips in between is an orphan for a later run.
    async fn close_stuck(&self, session: &Session) -> Result<bool> {
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
        let closed = self.close(id, ended).await?;
        if closed {
            tracing::warn!(session_id = %id, status = %session.status, cause, "session lost: stuck");
        }
        Ok(closed)
    }

    /// Ends a session no execution will end: its tasks stopped, its slot freed once
    /// they have all STOPPED, then the final status written. While a task is still
    /// stopping the session stays as it is, slot held, and a later run ends it (its
    /// execution is gone by then, so it is lost). Returns whether it ended it.
    async fn close(&self, id: &SessionId, ended: Change) -> Result<bool> {
        let stopped = stop(
            StopInput {
                session_id: id.clone(),
                reason: None,
                request: None,
            },
            self.store,
            self.compute,
            self.clock,
        )
        .await?;
        if !stopped.tasks_stopped {
            tracing::info!(
                session_id = %id,
                tasks = ?stopped.awaiting_tasks,
                "the session ends once its tasks have stopped"
            );
            return Ok(false);
        }
        self.store.apply(id, ended).await?;
        Ok(true)
    }
}

#[cfg(test)]
mod verdict_tests {
    use super::*;
    use crate::config::SessionLimits;
    use crate::session::{UserId, Version};

    /// Executions are looked up after 180 s in a transitional status, sessions are
    /// stuck after 1200 s, idle after 1800 s and ended after eight hours.
    const SETTINGS: ReaperSettings = ReaperSettings {
        limits: SessionLimits {
            idle_timeout_s: 1800,
            max_lifetime_s: 8 * 3600,
            heartbeat_interval_s: 60,
        },
        orphan_grace_s: 120,
        transition_deadline_s: 1200,
    };
    const TRANSITIONAL: [Status; 3] = [Status::Starting, Status::Provisioning, Status::Stopping];
    const TASK: &str = "arn:task:1";

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
            + Duration::seconds(seconds)
    }

    fn just_before(moment: DateTime<Utc>) -> DateTime<Utc> {
        moment - Duration::milliseconds(1)
    }

    fn just_after(moment: DateTime<Utc>) -> DateTime<Utc> {
        moment + Duration::milliseconds(1)
    }

    /// A session admitted at second 0 that entered `status` at second `entered`.
    fn session(status: Status, entered: i64) -> Session {
        let mut session = Session::new(
            SessionId::parse("sess-1").unwrap(),
            UserId::parse("u").unwrap(),
            Version::default(),
            at(0),
        );
        session.status = status;
        session.status_changed_at = Some(at(entered).into());
        session
    }

    /// A session running task [`TASK`] since second 60, last active at `active`.
    fn running(active: i64) -> Session {
        let mut session = session(Status::Running, 60);
        session.started_at = Some(at(60).into());
        session.last_activity_at = Some(at(active).into());
        session.task_arn = Some(TASK.into());
        session
    }

    fn judge_with(
        session: &Session,
        execution: Execution,
        now: DateTime<Utc>,
        settings: &ReaperSettings,
    ) -> Verdict {
        let limits = settings.limits.of_user(None);
        verdict(
            session,
            &limits,
            &BTreeSet::from([TASK]),
            execution,
            now,
            settings,
        )
    }

    fn judge(session: &Session, now: DateTime<Utc>) -> Verdict {
        judge_with(session, Execution::NotLookedUp, now, &SETTINGS)
    }

    /// Judged after its execution was looked up and found running.
    fn judge_running(session: &Session, now: DateTime<Utc>) -> Verdict {
        judge_with(session, Execution::Running, now, &SETTINGS)
    }

    #[test]
    fn a_transitional_session_is_in_doubt_only_after_the_execution_check_delay() {
        for status in TRANSITIONAL {
            let s = session(status, 0);
            assert_eq!(judge(&s, just_before(at(180))), Verdict::Fine, "{status}");
            assert_eq!(judge(&s, at(180)), Verdict::Fine, "{status}: at the delay");
            assert_eq!(
                judge(&s, just_after(at(180))),
                Verdict::ExecutionInDoubt,
                "{status}"
            );
        }
    }

    #[test]
    fn a_session_younger_than_the_orphan_grace_is_never_in_doubt() {
        let settings = ReaperSettings {
            orphan_grace_s: 600,
            ..SETTINGS
        };
        let s = session(Status::Starting, 0);
        let judge = |now| judge_with(&s, Execution::NotLookedUp, now, &settings);
        assert_eq!(
            judge(at(300)),
            Verdict::Fine,
            "long in its status, but young"
        );
        assert_eq!(judge(at(600)), Verdict::Fine, "at the grace");
        assert_eq!(judge(just_after(at(600))), Verdict::ExecutionInDoubt);
    }

    #[test]
    fn running_and_ended_sessions_are_never_in_doubt_nor_stuck() {
        for status in [Status::Running, Status::Stopped, Status::Failed] {
            let mut s = session(status, 0);
            s.last_activity_at = Some(at(7 * 3600).into());
            assert_eq!(judge(&s, at(7 * 3600)), Verdict::Fine, "{status}");
        }
    }

    #[test]
    fn a_transitional_session_whose_execution_runs_is_stuck_only_after_the_deadline() {
        for status in TRANSITIONAL {
            let s = session(status, 0);
            assert_eq!(judge_running(&s, at(600)), Verdict::Fine, "{status}");
            assert_eq!(
                judge_running(&s, at(1200)),
                Verdict::Fine,
                "{status}: at the deadline"
            );
            assert_eq!(
                judge_running(&s, just_after(at(1200))),
                Verdict::Stuck,
                "{status}"
            );
            assert_eq!(
                judge(&s, just_after(at(1200))),
                Verdict::ExecutionInDoubt,
                "{status}: its execution is looked up first"
            );
        }
    }

    #[test]
    fn a_stuck_session_is_closed_rather_than_stopped_for_its_max_lifetime() {
        let s = session(Status::Stopping, 7 * 3600);
        assert_eq!(judge_running(&s, at(9 * 3600)), Verdict::Stuck);
    }

    #[test]
    fn any_active_session_is_stopped_at_its_max_lifetime_and_not_before() {
        let end = at(8 * 3600);
        for status in TRANSITIONAL {
            // Entered its status a minute before the end: neither stuck nor in doubt.
            let s = session(status, 8 * 3600 - 60);
            assert_eq!(judge(&s, just_before(end)), Verdict::Fine, "{status}");
            assert_eq!(judge(&s, end), Verdict::MaxLifetime, "{status}");
        }
        let busy = running(8 * 3600 - 60);
        assert_eq!(judge(&busy, just_before(end)), Verdict::Fine);
        assert_eq!(judge(&busy, end), Verdict::MaxLifetime);
    }

    #[test]
    fn the_max_lifetime_comes_before_a_lost_task_and_idleness() {
        let mut s = running(60);
        s.task_arn = Some("arn:task:gone".into());
        assert_eq!(judge(&s, at(8 * 3600)), Verdict::MaxLifetime);
    }

    #[test]
    fn a_running_session_whose_task_is_not_running_is_lost_and_that_comes_before_idleness() {
        let mut s = running(600);
        assert_eq!(judge(&s, at(900)), Verdict::Fine);
        s.task_arn = Some("arn:task:gone".into());
        assert_eq!(judge(&s, at(900)), Verdict::TaskGone);
        assert_eq!(judge(&s, at(600 + 1800)), Verdict::TaskGone, "idle as well");
        // A running session without a task ARN has nothing to look for.
        s.task_arn = None;
        assert_eq!(judge(&s, at(900)), Verdict::Fine);
    }

    #[test]
    fn only_a_running_session_is_lost_for_its_task() {
        for status in TRANSITIONAL {
            let mut s = session(status, 0);
            s.task_arn = Some("arn:task:gone".into());
            assert_eq!(judge(&s, at(60)), Verdict::Fine, "{status}");
        }
    }

    #[test]
    fn a_running_session_is_idle_at_its_idle_timeout_after_its_last_activity_and_not_before() {
        let s = running(600);
        let idle_at = at(600 + 1800);
        assert_eq!(judge(&s, just_before(idle_at)), Verdict::Fine);
        assert_eq!(judge(&s, idle_at), Verdict::Idle);
    }

    #[test]
    fn the_users_own_idle_timeout_decides_when_a_session_is_idle() {
        let user = User {
            user_id: "u".into(),
            idle_timeout_s: Some(600),
            ..User::default()
        };
        let limits = SETTINGS.limits.of_user(Some(&user));
        let s = running(600);
        let judge = |now| {
            verdict(
                &s,
                &limits,
                &BTreeSet::from([TASK]),
                Execution::NotLookedUp,
                now,
                &SETTINGS,
            )
        };
        assert_eq!(judge(just_before(at(1200))), Verdict::Fine);
        assert_eq!(judge(at(1200)), Verdict::Idle);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::testing::{minute, session_entered};

    const DEADLINE_S: i64 = 1200;

    fn stuck(session: &Session, now: DateTime<Utc>) -> bool {
        stuck_in_transition(session, now, Duration::seconds(DEADLINE_S))
    }

    #[test]
    fn a_session_past_the_deadline_in_a_transitional_status_is_stuck() {
        for status in [Status::Starting, Status::Provisioning, Status::Stopping] {
            assert!(stuck(&session_entered(status, 0), minute(21)), "{status}");
        }
    }

    #[test]
    fn a_session_inside_the_deadline_is_not_stuck() {
        for status in [Status::Starting, Status::Provisioning, Status::Stopping] {
            assert!(!stuck(&session_entered(status, 0), minute(19)), "{status}");
            assert!(
                !stuck(&session_entered(status, 0), minute(20)),
                "{status}: at the deadline exactly"
            );
        }
    }

    #[test]
    fn a_long_running_session_that_just_entered_stopping_is_not_stuck() {
        // Created eight hours ago, stopping for a minute.
        let mut session = session_entered(Status::Stopping, 8 * 60);
        session.started_at = Some(minute(2).into());
        assert!(!stuck(&session, minute(8 * 60 + 1)));
        assert!(stuck(&session, minute(8 * 60 + 21)));
    }

    #[test]
    fn running_and_ended_sessions_are_never_stuck_however_old() {
        for status in [Status::Running, Status::Stopped, Status::Failed] {
            assert!(
                !stuck(&session_entered(status, 0), minute(48 * 60)),
                "{status}"
            );
        }
    }

    #[test]
    fn a_session_written_before_status_changed_at_is_judged_by_its_latest_known_time() {
        let mut old = session_entered(Status::Stopping, 0);
        old.status_changed_at = None;
        old.started_at = Some(minute(60).into());
        old.last_activity_at = Some(minute(8 * 60).into());
        assert!(!stuck(&old, minute(8 * 60 + 1)));
        assert!(stuck(&old, minute(8 * 60 + 21)));
    }

    fn settings(transition_deadline_s: &str) -> ReaperSettings {
        let env = HashMap::from([(
            "TRANSITION_DEADLINE_S".to_owned(),
            transition_deadline_s.to_owned(),
        )]);
        ReaperSettings::from_source(&env).unwrap()
    }

    #[test]
    fn executions_are_looked_up_after_three_minutes_and_always_before_the_deadline() {
        assert_eq!(execution_check_after_s(&settings("1200")), 180);
        assert_eq!(execution_check_after_s(&settings("120")), 60);
        let after = Duration::seconds(180);
        for status in [Status::Starting, Status::Provisioning, Status::Stopping] {
            assert!(
                !execution_in_doubt(&session_entered(status, 0), minute(3), after),
                "{status}"
            );
            assert!(
                execution_in_doubt(&session_entered(status, 0), minute(4), after),
                "{status}"
            );
        }
    }

    #[test]
    fn running_and_ended_sessions_never_have_their_execution_looked_up_by_age() {
        for status in [Status::Running, Status::Stopped, Status::Failed] {
            assert!(
                !execution_in_doubt(
                    &session_entered(status, 0),
                    minute(48 * 60),
                    Duration::seconds(180)
                ),
                "{status}"
            );
        }
    }
}
