//! AWS's API rate limits, played by the emulator (`RATE_LIMITS` in
//! `tests/harness/moto_server.py`, each figure citing its page): a burst of users
//! larger than RunTask's burst all get a running session, every call AWS throttles is
//! retried until it passes, and then every session stops with nothing left behind.
//!
//! The storm is of returning users: AWS's RunTask limits bind only once a user's task
//! definition is registered (a first session registers one, and RegisterTaskDefinition
//! refills at one call a second, far below RunTask's 20). So each user first has one
//! session under AWS's documented sizes, stopped again, and then all start at once.
//!
//! Scaled buckets: at AWS's sizes, RunTask takes 20 calls a second, and two Launch
//! processes on this two-core machine cannot be relied on to outrun that. For the storm
//! every bucket size and refill rate is multiplied by [`STORM_SCALE`] (1/20), so RunTask
//! holds one call and refills one a second (Fargate's task launches: 5, one a second):
//! the 30 starts outrun it as long as a Launch takes under two seconds. The ratios
//! between all of AWS's limits stay as documented.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use session_core::session::{SessionId, Status};
use session_tests::pump::{self, PumpSettings};
use session_tests::{Stack, Tools};

/// Users in the burst: more than RunTask's burst of 20 calls (and than
/// RegisterTaskDefinition's 20 for their first sessions).
const USERS: usize = 30;
/// The factor of every bucket size and refill rate during the storm (see above).
const STORM_SCALE: f64 = 0.05;
/// How long a whole burst may take to run, or to stop; far beyond what it needs.
const WITHIN: Duration = Duration::from_secs(300);

#[test]
fn the_emulators_token_buckets_throttle_exactly_past_their_burst_and_answer_as_aws_does() {
    let tools = Tools::from_env();
    let script = session_tests::repo_root().join("tests/harness/test_rate_limits.py");
    let out = std::process::Command::new(&tools.python)
        .arg(&script)
        .output()
        .expect("run the rate limits' unit tests");
    assert!(
        out.status.success(),
        "{} failed:\n{}{}",
        script.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn user(i: usize) -> String {
    format!("storm-{i:02}")
}

/// Every user starts a session at once through the API, as a client does: an answer
/// 503 is tried again after its Retry-After, under the same Idempotency-Key. Returns
/// the sessions, and how many starts were answered 503.
async fn start_all(stack: &Stack, round: &str) -> (Vec<SessionId>, usize) {
    let starts = (0..USERS).map(|i| async move {
        let (token, key) = (format!("dev:{}", user(i)), format!("{round}-{i}"));
        let mut busy = 0;
        loop {
            let (status, body, headers) = stack
                .http(
                    "POST",
                    "/sessions",
                    Some(&token),
                    Some(json!({"version": "1.0.0"})),
                    &[("Idempotency-Key", &key)],
                )
                .await;
            if status == 503 {
                busy += 1;
                assert!(busy < 20, "{}: answered 503 {busy} times: {body}", user(i));
                let wait = headers
                    .get("retry-after")
                    .and_then(|s| s.parse().ok())
                    .expect("a 503 says when to retry");
                tokio::time::sleep(Duration::from_secs(wait)).await;
                continue;
            }
            assert_eq!(status, 202, "{}: {body}", user(i));
            let id = body["session_id"].as_str().expect("a session id");
            return (SessionId::parse(id).expect("a valid id"), busy);
        }
    });
    let started = futures::future::join_all(starts).await;
    let busy = started.iter().map(|(_, b)| b).sum();
    (started.into_iter().map(|(id, _)| id).collect(), busy)
}

/// Polls every session, once a second, until `done` holds for all; fails at once if
/// one is `failed`, or after [`WITHIN`].
async fn wait_for_all(
    stack: &Stack,
    sessions: &[SessionId],
    what: &str,
    done: fn(&session_core::session::Session) -> bool,
) {
    let deadline = Instant::now() + WITHIN;
    loop {
        let mut pending = Vec::new();
        for id in sessions {
            match stack.session(id).await {
                Some(s) if s.status == Status::Failed => panic!("{id} failed: {s:?}"),
                Some(s) if done(&s) => {}
                other => pending.push((id, other.map(|s| s.status))),
            }
        }
        if pending.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            stack.dump_logs();
            panic!(
                "after {WITHIN:?}, {} sessions are not {what}: {pending:?}",
                pending.len()
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Every user stops their session through the API; then every session is `stopped`,
/// no task of the cluster runs and no user holds a slot.
async fn stop_all(stack: &Stack, sessions: &[SessionId]) {
    let stops = sessions.iter().enumerate().map(|(i, id)| async move {
        let token = format!("dev:{}", user(i));
        for _ in 0..20 {
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
                202 => return,
                _ => panic!("stopping {id} answered {status}: {body}"),
            }
        }
        panic!("stopping {id} answered 503 20 times");
    });
    futures::future::join_all(stops).await;
    wait_for_all(stack, sessions, "stopped", |s| s.status == Status::Stopped).await;
    stack
        .eventually("every task stopped", WITHIN, || async {
            let tasks = stack.all_tasks().await;
            tasks
                .iter()
                .all(|t| t.last_status() == Some("STOPPED"))
                .then_some(tasks.len())
        })
        .await;
    for i in 0..USERS {
        assert_eq!(
            stack.active_slots(&user(i)).await,
            Vec::<String>::new(),
            "{}",
            user(i)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_larger_than_the_run_task_burst_all_runs_with_every_throttled_call_retried() {
    let stack = Arc::new(Stack::start().await);
    let pump = pump::spawn(
        stack.clone(),
        PumpSettings {
            reap_every: Duration::from_secs(24 * 60 * 60),
            ..Default::default()
        },
    );
    for i in 0..USERS {
        stack.put_user(&user(i), true, None).await;
    }

    // First sessions, under AWS's documented sizes: each user's task definition is
    // registered (once, however often the call was throttled) and cached.
    stack.set_rate_limits(Some(1.0));
    let begun = Instant::now();
    let (first, busy) = start_all(&stack, "first").await;
    wait_for_all(&stack, &first, "running", |s| {
        s.status == Status::Running && s.stop_token.is_some()
    })
    .await;
    let counts = stack.rate_limit_counts();
    println!(
        "first sessions of {USERS} users: all running after {:.1} s, {busy} starts answered 503\n{counts}",
        begun.elapsed().as_secs_f64()
    );
    assert_eq!(
        counts.allowed("ecs.RegisterTaskDefinition"),
        USERS as u64,
        "{counts}"
    );
    stop_all(&stack, &first).await;

    // The storm: every returning user at once, every limit at STORM_SCALE.
    stack.set_rate_limits(Some(STORM_SCALE));
    let begun = Instant::now();
    let (storm, busy) = start_all(&stack, "storm").await;
    wait_for_all(&stack, &storm, "running", |s| {
        s.status == Status::Running && s.stop_token.is_some()
    })
    .await;
    let counts = stack.rate_limit_counts();
    println!(
        "storm of {USERS} returning users at {STORM_SCALE} of AWS's limits: all running after \
         {:.1} s, {busy} starts answered 503\n{counts}",
        begun.elapsed().as_secs_f64()
    );
    assert_eq!(counts.scale, STORM_SCALE);
    assert!(
        counts.buckets["ecs.RunTask"].burst < USERS as f64,
        "the burst must outnumber RunTask's bucket: {counts}"
    );
    assert!(
        counts.throttled("ecs.RunTask") > 0,
        "RunTask was never throttled: {counts}"
    );
    // Every session's RunTask went through exactly once, after its throttled attempts:
    // each throttle was retried, none started a second task.
    assert_eq!(counts.allowed("ecs.RunTask"), USERS as u64, "{counts}");
    assert_eq!(
        counts.allowed("fargate.TaskLaunch"),
        USERS as u64,
        "{counts}"
    );
    assert_eq!(counts.allowed("ecs.RegisterTaskDefinition"), 0, "{counts}");

    // The storm over, the sessions stop under AWS's documented sizes.
    stack.set_rate_limits(Some(1.0));
    let begun = Instant::now();
    stop_all(&stack, &storm).await;
    println!(
        "every session stopped after {:.1} s, no task running, no slot held\n{}",
        begun.elapsed().as_secs_f64(),
        stack.rate_limit_counts()
    );
    pump.abort();
}
