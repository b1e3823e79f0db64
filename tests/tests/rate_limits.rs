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

use session_tests::pump::{self, PumpSettings};
use session_tests::storm::{self, Leftovers};
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
    let users = storm::users(USERS);
    for user in &users {
        stack.put_user(user, true, None).await;
    }
    let all_ran = |sessions: &[session_core::session::Session]| {
        let failed: Vec<_> = sessions.iter().filter(|s| !storm::running(s)).collect();
        assert!(failed.is_empty(), "sessions did not run: {failed:?}");
    };

    // First sessions, under AWS's documented sizes: each user's task definition is
    // registered (once, however often the call was throttled) and cached.
    stack.set_rate_limits(Some(1.0));
    let begun = Instant::now();
    let first = storm::start_all(&stack, &users, "first", Duration::ZERO).await;
    all_ran(&storm::wait_for_all(&stack, &first.sessions, "running", WITHIN, storm::running).await);
    let counts = stack.rate_limit_counts();
    println!(
        "first sessions of {USERS} users: all running after {:.1} s, {} starts answered 503\n{counts}",
        begun.elapsed().as_secs_f64(),
        first.busy
    );
    assert_eq!(
        counts.allowed("ecs.RegisterTaskDefinition"),
        USERS as u64,
        "{counts}"
    );
    let left = storm::stop_all(&stack, &users, &first.sessions, WITHIN).await;
    assert_eq!(left, Leftovers::default(), "after the first sessions");

    // The storm: every returning user at once, every limit at STORM_SCALE.
    stack.set_rate_limits(Some(STORM_SCALE));
    let begun = Instant::now();
    let storm = storm::start_all(&stack, &users, "storm", Duration::ZERO).await;
    all_ran(&storm::wait_for_all(&stack, &storm.sessions, "running", WITHIN, storm::running).await);
    let counts = stack.rate_limit_counts();
    println!(
        "storm of {USERS} returning users at {STORM_SCALE} of AWS's limits: all running after \
         {:.1} s, {} starts answered 503\n{counts}",
        begun.elapsed().as_secs_f64(),
        storm.busy
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
    let left = storm::stop_all(&stack, &users, &storm.sessions, WITHIN).await;
    assert_eq!(left, Leftovers::default(), "after the storm");
    println!(
        "every session stopped after {:.1} s, no task running, no slot held\n{}",
        begun.elapsed().as_secs_f64(),
        stack.rate_limit_counts()
    );
    pump.abort();
}
