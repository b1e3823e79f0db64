//! `make local`: the product's main job on this machine, no AWS account. Starts the
//! AWS emulator on 127.0.0.1:4566 with the real state machine and the real functions,
//! seeds a demo user, and walks one session from request to stop, printing its
//! progress. With `--keep-running` the stack stays up until Ctrl-C.

use std::time::{Duration, Instant};

use serde_json::json;
use session_core::aws::{dynamodb::DynamoStore, sfn::SfnWorkflow};
use session_core::config::Tables;
use session_core::session::{Reason, Status};
use session_core::steps::request_stop::request_stop;
use session_tests::{Stack, StackOptions};

const MOTO_PORT: u16 = 4566;
const DEMO_USER: &str = "demo-user";

#[tokio::main]
async fn main() {
    let keep_running = std::env::args().any(|a| a == "--keep-running");
    let begun = Instant::now();
    println!(
        "starting the local stack: AWS emulator on 127.0.0.1:{MOTO_PORT}, functions, state machine"
    );
    let stack = Stack::start_with(StackOptions {
        moto_port: Some(MOTO_PORT),
        ..Default::default()
    })
    .await;
    println!(
        "  ready in {:.1}s; logs in {}",
        begun.elapsed().as_secs_f64(),
        stack.logs_dir().display()
    );
    stack.put_user(DEMO_USER, true, None).await;
    println!("seeded user {DEMO_USER:?} (authorized, 1 session at a time)");

    let requested = Instant::now();
    let (id, execution) = stack
        .start_session(json!({"user_id": DEMO_USER, "version": "1.0.0"}))
        .await;
    println!("requested session {id} (version 1.0.0)\n  execution {execution}");

    let last = std::cell::Cell::new(None);
    let shown = |status: Status| {
        if last.get() != Some(status) {
            println!("  [{:>5.1}s] {status}", requested.elapsed().as_secs_f64());
            last.set(Some(status));
        }
    };
    let session = stack
        .session_where(&id, "the task", |s| s.task_arn.is_some())
        .await;
    shown(session.status);
    // Fargate would now pull the images and start the task; the emulator gives the
    // task's network interface a public IP and ECS's RUNNING event reaches task-events.
    stack.bring_task_up(&id).await;
    let running = stack
        .eventually("the session to run", Duration::from_secs(60), || async {
            let s = stack.session(&id).await?;
            shown(s.status);
            (s.status == Status::Running).then_some(s)
        })
        .await;
    println!("session {id} is running:");
    for (key, url) in &running.urls.0 {
        println!("  {key:<9} {url}");
    }

    if keep_running {
        println!(
            "\nthe stack stays up (AWS endpoint http://127.0.0.1:{MOTO_PORT}); Ctrl-C stops it"
        );
        let _ = tokio::signal::ctrl_c().await;
        return;
    }

    // The user's stop, through the same code the API uses.
    stack.wait_for_state(&execution, "AwaitStop").await;
    stack
        .session_where(&id, "the stop token", |s| s.stop_token.is_some())
        .await;
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&stack.info.endpoint)
        .region(aws_config::Region::new(stack.info.region.clone()))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "testing", "testing", None, None, "demo",
        ))
        .load()
        .await;
    let tables = Tables {
        sessions: stack.info.sessions_table.clone(),
        users: stack.info.users_table.clone(),
        retention_days: 30,
    };
    let stop = request_stop(
        &id,
        Reason::User,
        &DynamoStore::connect(&sdk, tables),
        &SfnWorkflow::connect(&sdk),
    )
    .await
    .expect("request the stop");
    println!(
        "stop requested: {}",
        serde_json::to_string(&stop).unwrap_or_default()
    );
    let stopped = stack
        .eventually("the session to stop", Duration::from_secs(60), || async {
            let s = stack.session(&id).await?;
            shown(s.status);
            s.status.is_terminal().then_some(s)
        })
        .await;
    let status = stack.execution_ended(&execution).await;
    println!(
        "final: session {id} {} (reason {}), stopped_at {}, execution {}",
        stopped.status,
        stopped.stop_reason.map_or("-", Reason::as_str),
        stopped.stopped_at.as_deref().unwrap_or("-"),
        status.as_str()
    );
    let tasks = stack.running_tasks().await;
    println!("tasks still running: {}", tasks.len());
    if stopped.status != Status::Stopped || !tasks.is_empty() {
        std::process::exit(1);
    }
}
