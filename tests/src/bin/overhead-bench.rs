//! Orchestration benchmark on the local stack (`make bench`): how long the product
//! takes from the task's RUNNING event to the session being `running` with its URLs,
//! and how many Step Functions state transitions one whole lifecycle costs, beside
//! what a polling design would cost for the same session.
//!
//! Runs: `OVERHEAD_RUNS` (default 20). Functions: `SESSION_FUNCTIONS_DIR` (the release
//! binaries under `make bench`).

use std::time::{Duration, Instant};

use aws_sdk_sfn::types::HistoryEventType;
use serde_json::json;
use session_core::session::{SessionId, Status};
use session_tests::{Stack, StackOptions};

/// The targets.
const TARGET_P50: Duration = Duration::from_secs(1);
const TARGET_TRANSITIONS: usize = 12;

/// The polling design this replaces: a Wait → DescribeTasks → Choice loop until the
/// task runs, and the same loop until it stops.
const POLL_INTERVAL_S: u64 = 10;
/// Typical Fargate start (image pull + start) and stop (stop timeout 120 s, usually
/// far less) for a four-container task.
const FARGATE_START_S: u64 = 60;
const FARGATE_STOP_S: u64 = 30;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

async fn transitions(stack: &Stack, execution: &str) -> usize {
    let mut entered = 0;
    let mut token = None;
    loop {
        let page = stack
            .sfn
            .get_execution_history()
            .execution_arn(execution)
            .set_next_token(token)
            .send()
            .await
            .expect("execution history");
        entered += page
            .events()
            .iter()
            .filter(|e| {
                matches!(
                    e.r#type(),
                    HistoryEventType::TaskStateEntered
                        | HistoryEventType::PassStateEntered
                        | HistoryEventType::ChoiceStateEntered
                        | HistoryEventType::WaitStateEntered
                        | HistoryEventType::SucceedStateEntered
                        | HistoryEventType::FailStateEntered
                        | HistoryEventType::ParallelStateEntered
                        | HistoryEventType::MapStateEntered
                )
            })
            .count();
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            return entered;
        }
    }
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::var("OVERHEAD_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let stack = Stack::start_with(StackOptions::default()).await;
    stack.put_user("bench", true, None).await;
    // As on Fargate, a task asked to stop runs on a while (its containers exit), so
    // each lifecycle goes through AwaitTasksStopped as it does in AWS.
    stack.set_stop_task_delay(Duration::from_millis(500));
    let mut overheads = Vec::with_capacity(runs);
    let mut lifecycle_transitions = Vec::with_capacity(runs);

    for _ in 0..runs {
        let (status, started, _) = stack
            .http("POST", "/sessions", Some("dev:bench"), Some(json!({})), &[])
            .await;
        assert_eq!(status, 202, "{started}");
        let id = SessionId::parse(started["session_id"].as_str().unwrap()).unwrap();
        let session = stack
            .session_where(&id, "its task waiting for its IP", |s| {
                s.task_arn.is_some() && s.ip_token.is_some()
            })
            .await;
        let task_arn = session.task_arn.unwrap();
        let execution = session.execution_arn.unwrap();
        // Fargate's part (outside our control): the ENI's public IP, then the event.
        stack.give_public_ip(&task_arn).await;
        let event = stack.healthy_running_event(&task_arn, 3).await;

        let sent = Instant::now();
        stack.invoke("task-events", &event).await;
        loop {
            let now = stack.session(&id).await.unwrap();
            if now.status == Status::Running && now.urls.get("api").is_some() {
                break;
            }
            assert!(sent.elapsed() < Duration::from_secs(30), "never running");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        overheads.push(sent.elapsed());

        stack.wait_for_state(&execution, "AwaitStop").await;
        stack
            .session_where(&id, "its stop token", |s| s.stop_token.is_some())
            .await;
        let (status, _, _) = stack
            .http(
                "DELETE",
                &format!("/sessions/{id}"),
                Some("dev:bench"),
                None,
                &[],
            )
            .await;
        assert_eq!(status, 202);
        stack.wait_for_state(&execution, "AwaitTasksStopped").await;
        let stopped = Instant::now();
        while stack.task(&task_arn).await.last_status() != Some("STOPPED") {
            assert!(stopped.elapsed() < Duration::from_secs(30), "never stopped");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let event = stack.task_event(&task_arn, "STOPPED", 5).await;
        stack.invoke("task-events", &event).await;
        stack.execution_ended(&execution).await;
        lifecycle_transitions.push(transitions(&stack, &execution).await);
    }

    overheads.sort();
    let p50 = percentile(&overheads, 0.5);
    println!("orchestration overhead, task RUNNING event -> session running with URLs ({runs} runs, local stack):");
    println!(
        "  p50 {} ms  p90 {} ms  min {} ms  max {} ms   (target p50 < {} ms: {})",
        ms(p50),
        ms(percentile(&overheads, 0.9)),
        ms(overheads[0]),
        ms(overheads[overheads.len() - 1]),
        TARGET_P50.as_millis(),
        if p50 < TARGET_P50 { "met" } else { "NOT met" }
    );
    let ours = *lifecycle_transitions.iter().max().unwrap();
    let polls_start = FARGATE_START_S.div_ceil(POLL_INTERVAL_S);
    let polls_stop = FARGATE_STOP_S.div_ceil(POLL_INTERVAL_S);
    // Authorize, Launch, 3 states per poll until running, Record, the wait for a stop
    // request, Stop, 3 per poll until stopped, Record. (Ours: Authorize, Launch,
    // WaitForIp, RecordRunning, AwaitStop, Stop, TasksStopped, AwaitTasksStopped, Stop,
    // TasksStopped, RecordStopped.)
    let polling = 2 + 3 * polls_start + 1 + 1 + 1 + 3 * polls_stop + 1;
    println!("state transitions of one lifecycle, start to stop:");
    println!(
        "  this design (callbacks + events): {ours} (every run: {:?}; target <= {TARGET_TRANSITIONS}: {})",
        lifecycle_transitions
            .iter()
            .collect::<std::collections::BTreeSet<_>>(),
        if ours <= TARGET_TRANSITIONS {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "  a polling design (Wait/Describe/Choice every {POLL_INTERVAL_S} s, {FARGATE_START_S} s start, {FARGATE_STOP_S} s stop): {polling}"
    );
    println!(
        "  at $0.025 per 1,000 transitions: {:.4} vs {:.4} dollars per 1,000 sessions",
        ours as f64 * 0.025,
        polling as f64 * 0.025
    );
}
