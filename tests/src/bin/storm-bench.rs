//! The 9 a.m. storm (`make bench`): `STORM_SESSIONS` users (default 300) start a
//! session each through the API within a few seconds (`STORM_ARRIVALS_S`, default 5), under AWS's API rate limits played by the
//! emulator (`RATE_LIMITS` in `tests/harness/moto_server.py`). Prints the time until
//! all are running beside the floor the limits imply, the throttling errors met and
//! retried, the sessions failed, the API's latency during the storm; then stops them
//! all and prints what was left behind. Exits non-zero if a session failed or anything
//! leaked; the time against the floor is a figure, not a verdict.
//!
//! Two rounds. The users are returning ones, as at 9 a.m.: a first round, with no rate
//! limits, gives each user what a first session creates once (the task definition,
//! registered at one call a second sustained, and the access point), and measures this
//! machine's own pace. Then the storm, with every bucket's size and refill rate
//! multiplied by `STORM_SCALE`: RunTask at AWS's 20 a second would only measure how
//! fast this two-core machine runs the stack, so the limits are scaled down until they,
//! not the machine, bind (the ratios between AWS's limits stay as documented).
//!
//! Functions: `SESSION_FUNCTIONS_DIR` (the release binaries under `make bench`).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use session_tests::pump::{self, PumpSettings};
use session_tests::storm::{self, percentile};
use session_tests::{Stack, StackOptions};

/// The factor of AWS's bucket sizes and refill rates during the storm: RunTask holds
/// two calls and refills two a second, below the 2.2 to 2.7 sessions a second this
/// two-core machine runs with no limits at all (see the module's comment). A storm of
/// 300 at 0.1 is one of 3,000 at AWS's rates (the state machine's retry waits are not
/// scaled); at 0.05, one of 6,000, past what its retries absorb (docs/capacity.md).
const DEFAULT_SCALE: f64 = 0.1;
/// Processes of each function: Lambda would run hundreds of the API's at once; here
/// more than the stack's two keep its calls from queueing behind each other.
const INSTANCES: usize = 16;
/// How long a round may take to run or to stop before the benchmark gives up.
const WITHIN: Duration = Duration::from_secs(900);
/// The target: all running within this multiple of the floor.
const TARGET_RATIO: f64 = 1.5;
/// Task addresses: more live tasks than a loopback /24 holds. High bytes 254 are the
/// port-named /24s of ports 65024 and up, which no stack holds (never ephemeral).
const TASK_NETWORK: &str = "127.254.0.0/22";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() -> ExitCode {
    let n: usize = env_or("STORM_SESSIONS", 300);
    let scale: f64 = env_or("STORM_SCALE", DEFAULT_SCALE);
    let arrivals = Duration::from_secs(env_or("STORM_ARRIVALS_S", 5));
    let stack = Arc::new(
        Stack::start_with(StackOptions {
            task_network: Some(TASK_NETWORK.to_owned()),
            gateway: true,
            instances: Some(env_or("STORM_INSTANCES", INSTANCES)),
            ..Default::default()
        })
        .await,
    );
    let pump = pump::spawn(
        stack.clone(),
        PumpSettings {
            reap_every: Duration::from_secs(24 * 60 * 60),
            // The pump lists and describes every task of the cluster each time it looks:
            // with hundreds of tasks, every 100 ms would keep the emulator busy with the
            // harness's own reads.
            poll_every: Duration::from_millis(500),
            ..Default::default()
        },
    );
    let users = storm::users(n);
    for user in &users {
        stack.put_user(user, true, None).await;
    }
    let mut healthy = true;

    // Round one, no limits: every user's first session, at this machine's pace.
    let cpu = storm::CpuMeter::start(stack.moto_pid());
    let first = storm::start_all(&stack, &users, "first", arrivals).await;
    let ran = storm::wait_for_all(&stack, &first.sessions, "running", WITHIN, storm::running).await;
    let pace = ran
        .iter()
        .filter_map(|s| storm::time_to_running(s, first.begun))
        .max()
        .unwrap_or_default();
    let used = cpu.read();
    println!(
        "storm benchmark, {n} users, their first calls spread over {} s, local stack\n\
         first sessions, no rate limits: all running after {:.1} s ({:.1} sessions/s: this \
         machine's pace), {} failed; the emulator used {:.2} cores (one Python process), \
         the machine {:.0} % of its cores; API p50 {}, p99 {} ({} calls, {} answered 503)",
        arrivals.as_secs(),
        pace.as_secs_f64(),
        n as f64 / pace.as_secs_f64(),
        ran.iter().filter(|s| !storm::running(s)).count(),
        used.process_cores,
        used.machine_busy * 100.0,
        ms(percentile(&first.latencies, 0.5)),
        ms(percentile(&first.latencies, 0.99)),
        first.latencies.len(),
        first.busy
    );
    let left = storm::stop_all(&stack, &users, &first.sessions, WITHIN).await;
    if left != storm::Leftovers::default() {
        println!("  after the first sessions: {left:?}");
        healthy = false;
    }

    // The storm.
    stack.set_rate_limits(Some(scale));
    let cpu = storm::CpuMeter::start(stack.moto_pid());
    let storm = storm::start_all(&stack, &users, "storm", arrivals).await;
    let ran = storm::wait_for_all(&stack, &storm.sessions, "running", WITHIN, storm::running).await;
    let counts = stack.rate_limit_counts();
    let failed = ran.iter().filter(|s| !storm::running(s)).count();
    let all_running = ran
        .iter()
        .filter_map(|s| storm::time_to_running(s, storm.begun))
        .max()
        .unwrap_or_default();
    // Each session needs one RunTask call and one Fargate task launch: past each
    // bucket's burst, the rest wait for its refill.
    let (bound, floor) = ["ecs.RunTask", "fargate.TaskLaunch"]
        .iter()
        .map(|name| {
            let b = &counts.buckets[*name];
            (*name, ((n as f64 - b.burst).max(0.0) / b.refill).max(0.0))
        })
        .fold(("", 0.0), |a, b| if b.1 > a.1 { b } else { a });
    let ratio = all_running.as_secs_f64() / floor;
    println!(
        "storm at {scale} of AWS's limits: all running after {:.1} s; floor {floor:.1} s \
         ({bound}: ({n} - burst {}) / {} a second); {ratio:.2}x the floor (target <= \
         {TARGET_RATIO}x: {})",
        all_running.as_secs_f64(),
        counts.buckets[bound].burst,
        counts.buckets[bound].refill,
        if ratio <= TARGET_RATIO {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "  sessions failed: {failed}; throttling errors met and retried: {} ({} of them \
         RunTask); starts answered 503 and asked again: {}",
        counts.total_throttled(),
        counts.throttled("ecs.RunTask"),
        storm.busy
    );
    println!(
        "  API during the storm, {} calls (POST /sessions): p50 {}, p99 {}, max {}",
        storm.latencies.len(),
        ms(percentile(&storm.latencies, 0.5)),
        ms(percentile(&storm.latencies, 0.99)),
        ms(percentile(&storm.latencies, 1.0))
    );
    let used = cpu.read();
    println!(
        "  the emulator used {:.2} cores, the machine {:.0} % of its cores",
        used.process_cores,
        used.machine_busy * 100.0
    );
    print!("{counts}");
    healthy &= failed == 0;

    // Every user stops, under AWS's documented limits: a stop reads the cluster (it
    // waits for the session's tasks to have stopped), and at the storm's scale those
    // reads, not the stops, would be all this measured.
    stack.set_rate_limits(Some(1.0));
    let stopping = std::time::Instant::now();
    let left = storm::stop_all(&stack, &users, &storm.sessions, WITHIN).await;
    let counts = stack.rate_limit_counts();
    println!(
        "stopped all under AWS's limits after {:.1} s: orphaned tasks {}, sessions \
         ended otherwise than stopped {}, slots held {}; ECS cluster reads per session stopped: {:.1}",
        stopping.elapsed().as_secs_f64(),
        left.tasks,
        left.sessions,
        left.slots,
        counts.allowed("ecs.ClusterResourceRead") as f64 / n as f64
    );
    print!("{counts}");
    healthy &= left == storm::Leftovers::default();
    pump.abort();
    if healthy {
        ExitCode::SUCCESS
    } else {
        println!("FAILED: a session failed or something was left behind");
        ExitCode::FAILURE
    }
}
