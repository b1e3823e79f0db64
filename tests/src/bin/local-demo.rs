//! `make local`: the product's main job on this machine, no AWS account. Starts the
//! AWS emulator on 127.0.0.1:4566 (the real state machine, the real functions), the
//! HTTP API on 127.0.0.1:9000 and the pump that plays Fargate and EventBridge, seeds a
//! demo user, and walks one session through the API: start, progress until running,
//! URLs, heartbeat, stop, final state.
//!
//! `--keep-running` (`make local-up`) leaves the stack up until SIGINT or SIGTERM
//! (`make local-down`); `--pid-file PATH` records this process for `local-down`.
//!
//! `LOCAL_RATE_LIMITS=1` puts AWS's API rate limits in front of the product's calls
//! (`session_tests::rate_limits`); a number other than 1 scales every bucket size and
//! refill rate by it (`0.1`: a tenth).

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use session_tests::pump::{self, PumpSettings};
use session_tests::{Stack, StackOptions};

const MOTO_PORT: u16 = 4566;
const API_PORT: u16 = 9000;
/// The session gateway, behind the local stand-in for the load balancer: session URLs
/// are `http://{service}--{session_id}.localhost:9080`.
const LOAD_BALANCER_PORT: u16 = 9080;
const DEMO_USER: &str = "demo-user";
const TOKEN: &str = "dev:demo-user";

fn arg_value(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// `LOCAL_RATE_LIMITS`: unset, empty or 0 is off, else the scale of AWS's figures.
fn rate_limits_from_env() -> Result<Option<f64>, String> {
    let raw = std::env::var("LOCAL_RATE_LIMITS").unwrap_or_default();
    if raw.trim().is_empty() {
        return Ok(None);
    }
    match raw.trim().parse::<f64>() {
        Ok(0.0) => Ok(None),
        Ok(scale) if scale > 0.0 && scale.is_finite() => Ok(Some(scale)),
        _ => Err(format!(
            "LOCAL_RATE_LIMITS must be 1 (AWS's rate limits), a positive scale of them, \
             or 0 (off); got {raw:?}"
        )),
    }
}

/// Both ports must be free before anything starts.
fn check_ports() -> Result<(), String> {
    for (port, what) in [(MOTO_PORT, "the AWS emulator"), (API_PORT, "the HTTP API")] {
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            return Err(format!(
                "port {port} on 127.0.0.1 (for {what}) is already in use: \
                 stop what listens there first (`make local-down` if it is a local stack)"
            ));
        }
    }
    Ok(())
}

async fn api(
    stack: &Stack,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<(u16, Value), String> {
    let (status, body, _) = stack.http(method, path, Some(TOKEN), body, &[]).await;
    if status >= 400 {
        return Err(format!("{method} {path} answered {status}: {body}"));
    }
    Ok((status, body))
}

/// Polls the session through the API, printing each new status, until `done` holds.
async fn follow(
    stack: &Stack,
    id: &str,
    since: Instant,
    last: &mut String,
    done: impl Fn(&Value) -> bool,
) -> Result<Value, String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, session) = api(stack, "GET", &format!("/sessions/{id}"), None).await?;
        let status = session["status"].as_str().unwrap_or_default().to_owned();
        if status != *last {
            println!("  [{:>5.1}s] {status}", since.elapsed().as_secs_f64());
            *last = status;
        }
        if done(&session) {
            return Ok(session);
        }
        if Instant::now() > deadline {
            return Err(format!("session {id} is still {last} after 120 s"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn demo(stack: &Stack) -> Result<(), String> {
    let since = Instant::now();
    println!("\n$ POST /sessions {{\"version\": \"1.0.0\"}}   (as {DEMO_USER})");
    let (status, started) = api(
        stack,
        "POST",
        "/sessions",
        Some(json!({"version": "1.0.0"})),
    )
    .await?;
    let id = started["session_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    println!("  {status}: session {id}, status {}", started["status"]);

    let mut last = String::new();
    let running = follow(stack, &id, since, &mut last, |s| {
        s["status"] == "running" || s["status"] == "failed" || s["status"] == "stopped"
    })
    .await?;
    if running["status"] != "running" {
        return Err(format!("the session did not run: {running}"));
    }
    println!("session {id} is running (task {}):", running["task_arn"]);
    for (key, url) in running["urls"].as_object().into_iter().flatten() {
        println!("  {key:<9} {}", url.as_str().unwrap_or_default());
    }
    if let (Some(gateway), Some(api_url)) = (&stack.gateway, running["urls"]["api"].as_str()) {
        println!("\n$ GET {api_url}   (through the session gateway, as {DEMO_USER})");
        let (status, body) = gateway.request("GET", api_url, Some(TOKEN), &[]).await;
        println!("  {status}: {body}");
        if status != 200 {
            return Err(format!(
                "the session's api answered {status} through the gateway"
            ));
        }
    }

    println!("\n$ POST /sessions/{id}/heartbeat");
    let (status, beat) = api(stack, "POST", &format!("/sessions/{id}/heartbeat"), None).await?;
    println!(
        "  {status}: recorded {}, last_activity_at {}",
        beat["recorded"], beat["last_activity_at"]
    );

    println!("\n$ DELETE /sessions/{id}");
    let (status, stopping) = api(stack, "DELETE", &format!("/sessions/{id}"), None).await?;
    println!("  {status}: {}", stopping["message"]);
    let ended = follow(stack, &id, since, &mut last, |s| {
        s["status"] == "stopped" || s["status"] == "failed"
    })
    .await?;
    println!(
        "\nfinal: session {id} {} (reason {}), created {}, running since {}, stopped {}",
        ended["status"],
        ended["stop_reason"],
        ended["created_at"],
        ended["started_at"],
        ended["stopped_at"]
    );
    let left = stack.running_tasks().await.len();
    println!("tasks still running: {left}");
    if ended["status"] != "stopped" || left != 0 {
        return Err("the session did not end cleanly".into());
    }
    Ok(())
}

/// The stack is ready when its HTTP API answers a real request through the `api`
/// function, not when its sockets listen.
async fn ready(stack: &Stack) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body, _) = stack
            .http("GET", "/sessions?limit=1", Some(TOKEN), None, &[])
            .await;
        if status == 200 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the HTTP API did not answer GET /sessions within 60 s (last: {status} {body})"
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_for_shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[tokio::main]
async fn main() {
    let keep_running = std::env::args().any(|a| a == "--keep-running");
    if let Err(message) = check_ports() {
        eprintln!("error: {message}");
        std::process::exit(1);
    }
    let rate_limits = rate_limits_from_env().unwrap_or_else(|message| {
        eprintln!("error: {message}");
        std::process::exit(1);
    });
    let begun = Instant::now();
    println!(
        "starting the local stack: AWS emulator on 127.0.0.1:{MOTO_PORT}, HTTP API on \
         127.0.0.1:{API_PORT}, session gateway on 127.0.0.1:{LOAD_BALANCER_PORT}, functions, \
         state machine"
    );
    let stack = Arc::new(
        Stack::start_with(StackOptions {
            moto_port: Some(MOTO_PORT),
            api_port: Some(API_PORT),
            gateway: true,
            load_balancer_port: Some(LOAD_BALANCER_PORT),
            ..Default::default()
        })
        .await,
    );
    let pump = pump::spawn(stack.clone(), PumpSettings::default());
    stack.put_user(DEMO_USER, true, None).await;
    if let Err(message) = ready(&stack).await {
        eprintln!("error: {message}");
        pump.abort();
        std::process::exit(1);
    }
    println!(
        "  ready in {:.1}s; seeded user {DEMO_USER:?} (token {TOKEN:?}); logs in {}",
        begun.elapsed().as_secs_f64(),
        stack.logs_dir().display()
    );
    if let Some(scale) = rate_limits {
        stack.set_rate_limits(Some(scale));
        println!(
            "  AWS's API rate limits are on (their documented sizes x {scale}); what they \
             let through and throttle: {}",
            stack.rate_limit_counts_path().display()
        );
    }

    let outcome = if keep_running {
        if let Some(path) = arg_value("--pid-file") {
            if let Err(e) = std::fs::write(&path, std::process::id().to_string()) {
                eprintln!("error: cannot write the pid file {path}: {e}");
            }
        }
        println!(
            "the web console: http://login.localhost:{LOAD_BALANCER_PORT}/ (sign in with any \
             user name, e.g. {DEMO_USER})"
        );
        println!(
            "the stack is up: API http://127.0.0.1:{API_PORT} (Authorization: Bearer \
             {TOKEN}), session URLs http://{{service}}--{{session_id}}.localhost:{LOAD_BALANCER_PORT} \
             (signed in at http://login.localhost:{LOAD_BALANCER_PORT} with the same \
             token: the README's curl steps), AWS endpoint http://127.0.0.1:{MOTO_PORT}; stop it with \
             `make local-down` or Ctrl-C"
        );
        wait_for_shutdown().await;
        println!("stopping the local stack");
        Ok(())
    } else {
        demo(&stack).await
    };

    // The pump may be waiting on an invocation: end it rather than wait, so that the
    // stack is dropped (every process it started is stopped) at once.
    pump.abort();
    let _ = pump.await;
    drop(stack);
    if let Some(path) = arg_value("--pid-file") {
        let _ = std::fs::remove_file(path);
    }
    if let Err(message) = outcome {
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}
