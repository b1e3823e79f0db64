//! A storm of users starting sessions at once, as the 9 a.m. office does, driven
//! through the HTTP API as clients drive it: the rate limits' test
//! (`tests/tests/rate_limits.rs`) and the storm benchmark (`src/bin/storm-bench.rs`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use serde_json::json;
use session_core::session::{Session, SessionId, Status};

use crate::Stack;

/// How often a client whose start was answered 503 may ask again before the storm
/// counts as failed for it.
const MAX_BUSY_ANSWERS: usize = 20;

/// The storm's users, `storm-000`, `storm-001`, ...
pub fn users(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("storm-{i:03}")).collect()
}

/// What the users' starts came to.
pub struct Starts {
    /// Each user's session, in the users' order.
    pub sessions: Vec<SessionId>,
    /// Starts answered 503 (and asked again after their `Retry-After`).
    pub busy: usize,
    /// The time each API call took, 503 answers included.
    pub latencies: Vec<Duration>,
    /// When the first call was sent.
    pub begun: DateTime<Utc>,
}

/// Every user starts a session through the API, the users' first calls spread evenly
/// over `over` (all at once for zero), as a client does: a 503 is asked again after
/// its `Retry-After` (a second without one: API Gateway's own 503 when the function
/// took too long), under the same Idempotency-Key. Panics on any other answer than 202.
pub async fn start_all(stack: &Stack, users: &[String], round: &str, over: Duration) -> Starts {
    let begun = Utc::now();
    let spacing = over / users.len().max(1) as u32;
    let starts = users.iter().enumerate().map(|(i, user)| async move {
        let (token, key) = (format!("dev:{user}"), format!("{round}-{i}"));
        tokio::time::sleep(spacing * i as u32).await;
        let mut latencies = Vec::new();
        loop {
            let sent = Instant::now();
            let (status, body, headers) = stack
                .http(
                    "POST",
                    "/sessions",
                    Some(&token),
                    Some(json!({"version": "1.0.0"})),
                    &[("Idempotency-Key", &key)],
                )
                .await;
            latencies.push(sent.elapsed());
            if status == 503 {
                assert!(
                    latencies.len() < MAX_BUSY_ANSWERS,
                    "{user}: answered 503 {} times: {body}",
                    latencies.len()
                );
                let wait = headers
                    .get("retry-after")
                    .map_or(Some(1), |s| s.parse().ok())
                    .unwrap_or_else(|| panic!("{user}: a 503 with a bad Retry-After: {body}"));
                tokio::time::sleep(Duration::from_secs(wait)).await;
                continue;
            }
            assert_eq!(status, 202, "{user}: {body}");
            let id = body["session_id"].as_str().expect("a session id");
            return (SessionId::parse(id).expect("a valid id"), latencies);
        }
    });
    let mut starts_ = Starts {
        sessions: Vec::new(),
        busy: 0,
        latencies: Vec::new(),
        begun,
    };
    for (id, latencies) in join_all(starts).await {
        starts_.busy += latencies.len() - 1;
        starts_.latencies.extend(latencies);
        starts_.sessions.push(id);
    }
    starts_
}

/// The sessions once each is `done` or has `failed`, read with one Scan of the table
/// a second (not a read per session: the emulator serves the storm meanwhile). Panics
/// after `within`, saying which are neither.
pub async fn wait_for_all(
    stack: &Stack,
    sessions: &[SessionId],
    what: &str,
    within: Duration,
    done: fn(&Session) -> bool,
) -> Vec<Session> {
    let deadline = Instant::now() + within;
    loop {
        let mut all = stack.all_sessions().await;
        let (finished, pending): (Vec<_>, Vec<_>) = sessions
            .iter()
            .map(|id| (id, all.remove(id)))
            .partition(|(_, s)| {
                s.as_ref()
                    .is_some_and(|s| done(s) || s.status == Status::Failed)
            });
        if pending.is_empty() {
            return finished.into_iter().filter_map(|(_, s)| s).collect();
        }
        if Instant::now() > deadline {
            stack.dump_logs();
            let pending: Vec<_> = pending
                .iter()
                .map(|(id, s)| (id.as_str(), s.as_ref().map(|s| s.status)))
                .collect();
            panic!(
                "after {within:?}, {} sessions are not {what}: {pending:?}",
                pending.len()
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A running session, its WaitForIp done (AwaitStop holds its stop token).
pub fn running(session: &Session) -> bool {
    session.status == Status::Running && session.stop_token.is_some()
}

pub fn stopped(session: &Session) -> bool {
    session.status == Status::Stopped
}

/// How long after `begun` the session was recorded running.
pub fn time_to_running(session: &Session, begun: DateTime<Utc>) -> Option<Duration> {
    (session.started_at?.at() - begun).to_std().ok()
}

/// What a stop of every session left behind; all zero when nothing leaked.
#[derive(Debug, Default, PartialEq)]
pub struct Leftovers {
    /// Tasks of the cluster not STOPPED.
    pub tasks: usize,
    /// Sessions that ended otherwise than `stopped` (`failed`).
    pub sessions: usize,
    /// Slots users still hold.
    pub slots: usize,
}

/// Every user stops their session through the API (a 503 is asked again a second
/// later; a session that already ended answers 200); once every session has ended,
/// what is left behind.
pub async fn stop_all(
    stack: &Stack,
    users: &[String],
    sessions: &[SessionId],
    within: Duration,
) -> Leftovers {
    let stops = users.iter().zip(sessions).map(|(user, id)| async move {
        let token = format!("dev:{user}");
        for _ in 0..MAX_BUSY_ANSWERS {
            let (status, body, _) = stack
                .http(
                    "DELETE",
                    &format!("/sessions/{id}"),
                    Some(&token),
                    None,
                    &[],
                )
                .await;
            match status {
                503 => tokio::time::sleep(Duration::from_secs(1)).await,
                200 | 202 => return,
                _ => panic!("stopping {id} answered {status}: {body}"),
            }
        }
        panic!("stopping {id} answered 503 {MAX_BUSY_ANSWERS} times");
    });
    join_all(stops).await;
    let ended = wait_for_all(stack, sessions, "ended", within, |s| s.status.is_terminal()).await;
    // A task stops after its session is recorded stopped only if something leaked:
    // give ECS's own stop (the emulator's delay) its time, then count.
    let deadline = Instant::now() + within;
    let tasks = loop {
        let running = stack
            .all_tasks()
            .await
            .iter()
            .filter(|t| t.last_status() != Some("STOPPED"))
            .count();
        if running == 0 || Instant::now() > deadline {
            break running;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let mut slots = 0;
    for user in users {
        slots += stack.active_slots(user).await.len();
    }
    Leftovers {
        tasks,
        sessions: ended.iter().filter(|s| !stopped(s)).count(),
        slots,
    }
}

impl Stack {
    /// Every session in the table, by id (one paginated Scan, consistent).
    pub async fn all_sessions(&self) -> BTreeMap<SessionId, Session> {
        let mut sessions = BTreeMap::new();
        let mut start: Option<std::collections::HashMap<String, AttributeValue>> = None;
        loop {
            let page = self
                .ddb
                .scan()
                .table_name(&self.info.sessions_table)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .expect("scan the sessions");
            for item in page.items() {
                let session: Session =
                    serde_dynamo::from_item(item.clone()).expect("a stored session parses");
                sessions.insert(session.session_id.clone(), session);
            }
            start = page.last_evaluated_key().cloned();
            if start.is_none() {
                return sessions;
            }
        }
    }
}

/// CPU time spent since it was created, by one process and by the whole machine
/// (Linux's `/proc`, in clock ticks of 1/100 s: `USER_HZ`, 100 on every Linux ABI).
pub struct CpuMeter {
    pid: Option<u32>,
    process: u64,
    busy: u64,
    total: u64,
    since: Instant,
}

/// What a [`CpuMeter`] measured.
#[derive(Debug)]
pub struct CpuUse {
    /// The process's CPU time over the wall time: 1.0 is one core all the time.
    pub process_cores: f64,
    /// The share of all the machine's cores that were busy, 0..=1.
    pub machine_busy: f64,
}

impl CpuMeter {
    pub fn start(pid: Option<u32>) -> Self {
        let (busy, total) = machine_ticks();
        Self {
            pid,
            process: pid.map_or(0, process_ticks),
            busy,
            total,
            since: Instant::now(),
        }
    }

    pub fn read(&self) -> CpuUse {
        let (busy, total) = machine_ticks();
        let process = self.pid.map_or(0, process_ticks) - self.process;
        CpuUse {
            process_cores: process as f64 / 100.0 / self.since.elapsed().as_secs_f64(),
            machine_busy: (busy - self.busy) as f64 / (total - self.total).max(1) as f64,
        }
    }
}

/// A process's user and system time (`/proc/{pid}/stat` fields 14 and 15, counted
/// after the command name, which may hold spaces).
fn process_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = after_name
        .split(' ')
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    fields.get(11).zip(fields.get(12)).map_or(0, |(u, s)| u + s)
}

/// The machine's busy and total ticks over all cores (`/proc/stat`'s `cpu` line; idle
/// and iowait are not busy).
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let total = ticks.iter().sum();
    let idle = ticks.get(3).unwrap_or(&0) + ticks.get(4).unwrap_or(&0);
    (total - idle, total)
}

/// The `p`-quantile (0..=1) of `values`, nearest rank; zero for none.
pub fn percentile(values: &[Duration], p: f64) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    match sorted.len() {
        0 => Duration::ZERO,
        n => sorted[((n as f64 - 1.0) * p).round() as usize],
    }
}
