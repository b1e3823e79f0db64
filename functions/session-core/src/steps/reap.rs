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
use crate::limits::{parse_time, seconds};
use crate::ports::{Change, Clock, Compute, SessionStore, TaskSummary, User, Workflow};
use crate::session::{Reason, Session, SessionId, Status, SESSION_ID_PREFIX};
use crate::steps::request_stop::{request_stop, StopRequest};
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
enum Verdict {
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
        .as_deref()
        .and_then(parse_time)
        .or_else(|| {
            [
                Some(session.created_at.as_str()),
                session.started_at.as_deref(),
                session.last_activity_at.as_deref(),
            ]
            .into_iter()
            .flatten()
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
        let running_tasks: BTreeSet<&str> = tasks.iter().map(|t| t.task_arn.as_str()).collect();
        let user_ids: BTreeSet<String> =
            active.sessions.iter().map(|s| s.user_id.clone()).collect();
        let users = self.store.users(&user_ids).await?;

        for session in &active.sessions {
            // Each session on its own: one failing AWS call (a throttled DescribeExecution,
            // a StopTask) must not leave the others unreaped; the next run tries again.
            let judged = self.judge(session, now, &running_tasks, &users).await;
            if judged.is_ok() {
                report.judged += 1;
            }
            match judged {
                Ok(Some(Verdict::Idle)) => report.idle.push(session.session_id.to_string()),
                Ok(Some(Verdict::MaxLifetime)) => {
                    report.max_lifetime.push(session.session_id.to_string())
                }
                Ok(Some(Verdict::Lost)) => report.lost.push(session.session_id.to_string()),
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
    ) -> Result<Option<Verdict>> {
        let user = users.get(&session.user_id);
        let id = &session.session_id;

        let created = parse_time(&session.created_at).unwrap_or(now);
        // The API records a session (with its execution's ARN) just before it starts
        // the execution: a young session's execution may not exist yet.
        let settled = now - created > seconds(self.settings.orphan_grace_s);
        let check_after = seconds(execution_check_after_s(self.settings));
        if settled
            && execution_in_doubt(session, now, check_after)
            && self.execution_ended(session).await?
        {
            return Ok(self.close_lost(session).await?.then_some(Verdict::Lost));
        }
        // Before max lifetime: a session stuck `stopping` cannot be stopped again.
        let deadline = seconds(self.settings.transition_deadline_s);
        if stuck_in_transition(session, now, deadline) {
            return Ok(self.close_stuck(session).await?.then_some(Verdict::Lost));
        }
        let limits = self.settings.limits.of_user(user);
        if limits.is_past_max_lifetime(session, now) {
            return self
                .stop_for(session, Reason::MaxLifetime, Verdict::MaxLifetime)
                .await;
        }
        if session.status != Status::Running {
            return Ok(None);
        }
        if session
            .task_arn
            .as_deref()
            .is_some_and(|t| !running_tasks.contains(t))
        {
            return self.stop_for(session, Reason::Lost, Verdict::Lost).await;
        }
        if let Some(asked) = limits.raised_idle_timeout_s {
            tracing::warn!(
                session_id = %id,
                idle_timeout_s = asked,
                applied_s = limits.idle_timeout_s,
                "the user's idle_timeout_s is shorter than twice the heartbeat interval: the longer one applies"
            );
        }
        if limits.is_idle(session, now) {
            return self.stop_for(session, Reason::Idle, Verdict::Idle).await;
        }
        Ok(None)
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
        verdict: Verdict,
    ) -> Result<Option<Verdict>> {
        let requested =
            request_stop(&session.session_id, reason, self.store, self.workflow).await?;
        let had_token = session.stop_token.is_some() || session.ip_token.is_some();
        match requested {
            StopRequest::Requested { resumed: false }
                if had_token && self.execution_ended(session).await? =>
            {
                Ok(self.close_lost(session).await?.then_some(Verdict::Lost))
            }
            StopRequest::Requested { .. } => Ok(Some(verdict)),
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
mod tests {
    use std::collections::HashMap;

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
                !execution_in_doubt(&session(status, 0), at(3), after),
                "{status}"
            );
            assert!(
                execution_in_doubt(&session(status, 0), at(4), after),
                "{status}"
            );
        }
    }

    #[test]
    fn running_and_ended_sessions_never_have_their_execution_looked_up_by_age() {
        for status in [Status::Running, Status::Stopped, Status::Failed] {
            assert!(
                !execution_in_doubt(&session(status, 0), at(48 * 60), Duration::seconds(180)),
                "{status}"
            );
        }
    }

    mod run {
        use aws_sdk_dynamodb::operation::batch_get_item::BatchGetItemOutput;
        use aws_sdk_dynamodb::operation::scan::ScanOutput;
        use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
        use aws_sdk_dynamodb::types::AttributeValue;
        use aws_sdk_ecs::operation::list_tasks::ListTasksOutput;
        use aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput;
        use aws_sdk_sfn::operation::send_task_success::{
            SendTaskSuccessError, SendTaskSuccessOutput,
        };
        use aws_sdk_sfn::types::error::TaskTimedOut;
        use aws_sdk_sfn::types::ExecutionStatus;
        use aws_smithy_mocks::{mock, mock_client, RuleMode};
        use aws_smithy_runtime_api::http::Response;
        use aws_smithy_types::body::SdkBody;

        use super::*;
        use crate::aws::dynamodb::DynamoStore;
        use crate::aws::ecs::EcsCompute;
        use crate::aws::sfn::SfnWorkflow;
        use crate::config::Tables;

        struct FixedClock(DateTime<Utc>);

        impl Clock for FixedClock {
            fn now(&self) -> DateTime<Utc> {
                self.0
            }
        }

        /// A session of user `u` created at minute 0 with execution `arn:exec:{name}`.
        fn active(name: &str, status: Status, entered: i64) -> Session {
            let mut s = session(status, entered);
            s.session_id = SessionId::parse(&format!("sess-{name}")).unwrap();
            s.execution_arn = Some(format!("arn:exec:{name}"));
            s
        }

        fn item(session: &Session) -> HashMap<String, AttributeValue> {
            serde_dynamo::to_item(session).unwrap()
        }

        fn described(
            arn: &'static str,
        ) -> impl Fn(&aws_sdk_sfn::operation::describe_execution::DescribeExecutionInput) -> bool
        {
            move |r| r.execution_arn() == Some(arn)
        }

        /// At minute 60: A runs and is active, B runs idle (its stop goes through), E runs
        /// idle but its AwaitStop token is closed, C has been provisioning and D starting
        /// for ten minutes. C's DescribeExecution is throttled.
        #[tokio::test]
        async fn one_throttled_describe_execution_leaves_the_other_sessions_reaped_and_only_doubtful_ones_are_described(
        ) {
            let mut a = active("a", Status::Running, 1);
            a.started_at = Some(timestamp(at(1)));
            a.last_activity_at = Some(timestamp(at(59)));
            a.stop_token = Some("tok-a".into());
            let mut b = active("b", Status::Running, 1);
            b.started_at = Some(timestamp(at(1)));
            b.stop_token = Some("tok-b".into());
            let mut e = b.clone();
            e.session_id = SessionId::parse("sess-e").unwrap();
            e.execution_arn = Some("arn:exec:e".into());
            e.stop_token = Some("tok-e".into());
            let c = active("c", Status::Provisioning, 50);
            let d = active("d", Status::Starting, 50);
            let sessions = [a, b.clone(), c, d, e.clone()];

            let scan = mock!(aws_sdk_dynamodb::Client::scan).then_output(move || {
                ScanOutput::builder()
                    .set_items(Some(sessions.iter().map(item).collect()))
                    .scanned_count(5)
                    .build()
            });
            let user = mock!(aws_sdk_dynamodb::Client::batch_get_item)
                .match_requests(|r| {
                    r.request_items()
                        .and_then(|items| items.get("users"))
                        .is_some_and(|k| k.keys().len() == 1)
                })
                .then_output(|| {
                    BatchGetItemOutput::builder()
                        .responses(
                            "users",
                            vec![HashMap::from([
                                ("user_id".to_owned(), AttributeValue::S("u".into())),
                                ("authorized".to_owned(), AttributeValue::Bool(true)),
                            ])],
                        )
                        .build()
                });
            let stopping = move |mut s: Session| {
                s.status = Status::Stopping;
                s.stop_reason = Some(Reason::Idle);
                UpdateItemOutput::builder()
                    .set_attributes(Some(item(&s)))
                    .build()
            };
            let stop_b = mock!(aws_sdk_dynamodb::Client::update_item)
                .match_requests(|r| {
                    r.key().and_then(|k| k.get("session_id"))
                        == Some(&AttributeValue::S("sess-b".into()))
                })
                .then_output(move || stopping(b.clone()));
            let stop_e = mock!(aws_sdk_dynamodb::Client::update_item)
                .match_requests(|r| {
                    r.key().and_then(|k| k.get("session_id"))
                        == Some(&AttributeValue::S("sess-e".into()))
                })
                .then_output(move || stopping(e.clone()));
            let list = mock!(aws_sdk_ecs::Client::list_tasks)
                .then_output(|| ListTasksOutput::builder().build());
            let resume_b = mock!(aws_sdk_sfn::Client::send_task_success)
                .match_requests(|r| r.task_token() == Some("tok-b"))
                .then_output(|| SendTaskSuccessOutput::builder().build());
            let resume_e = mock!(aws_sdk_sfn::Client::send_task_success)
                .match_requests(|r| r.task_token() == Some("tok-e"))
                .then_error(|| SendTaskSuccessError::TaskTimedOut(TaskTimedOut::builder().build()));
            let running = |arn: &str| {
                DescribeExecutionOutput::builder()
                    .execution_arn(arn)
                    .state_machine_arn("arn:sm")
                    .status(ExecutionStatus::Running)
                    .start_date(aws_smithy_types::DateTime::from_secs(0))
                    .build()
                    .unwrap()
            };
            let throttled = mock!(aws_sdk_sfn::Client::describe_execution)
                .match_requests(described("arn:exec:c"))
                .then_http_response(|| {
                    Response::new(
                        400.try_into().unwrap(),
                        SdkBody::from(
                            r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#,
                        ),
                    )
                });
            let describe_d = mock!(aws_sdk_sfn::Client::describe_execution)
                .match_requests(described("arn:exec:d"))
                .then_output(move || running("arn:exec:d"));
            let describe_e = mock!(aws_sdk_sfn::Client::describe_execution)
                .match_requests(described("arn:exec:e"))
                .then_output(move || running("arn:exec:e"));
            let describe_others =
                mock!(aws_sdk_sfn::Client::describe_execution).then_output(move || running("?"));

            let settings = settings("1200");
            let store = DynamoStore::new(
                mock_client!(
                    aws_sdk_dynamodb,
                    RuleMode::MatchAny,
                    [&scan, &user, &stop_b, &stop_e]
                ),
                Tables {
                    sessions: "sessions".into(),
                    users: "users".into(),
                    retention_days: 30,
                },
            );
            let compute = EcsCompute::new(mock_client!(aws_sdk_ecs, [&list]), "c".into(), None);
            let workflow = SfnWorkflow::new(mock_client!(
                aws_sdk_sfn,
                RuleMode::MatchAny,
                [
                    &resume_b,
                    &resume_e,
                    &throttled,
                    &describe_d,
                    &describe_e,
                    &describe_others
                ]
            ));
            let reaper = Reaper {
                settings: &settings,
                store: &store,
                compute: &compute,
                workflow: &workflow,
                clock: &FixedClock(at(60)),
            };

            let report = reaper.run().await.unwrap();
            assert_eq!(report.idle, vec!["sess-b".to_owned(), "sess-e".to_owned()]);
            assert!(report.lost.is_empty(), "{report:?}");
            assert_eq!(report.errors, 1, "C's lookup failed, and only it");
            assert_eq!(report.judged, 4, "{report:?}");
            assert_eq!(
                user.num_calls(),
                1,
                "one read for the one user of five sessions"
            );
            assert!(throttled.num_calls() >= 1);
            assert_eq!(
                describe_d.num_calls(),
                1,
                "D has been starting for ten minutes"
            );
            assert_eq!(describe_e.num_calls(), 1, "E's stop found its token closed");
            assert_eq!(
                describe_others.num_calls(),
                0,
                "A and B say nothing that calls for a look at their executions"
            );
            assert_eq!((resume_b.num_calls(), resume_e.num_calls()), (1, 1));
        }
    }
}
