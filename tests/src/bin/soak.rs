//! `make soak`: minutes of mixed traffic against the local stack — many users starting
//! sessions, stopping them at random moments, heartbeats, reads, malformed and
//! oversized requests — while function processes are killed now and then, as
//! Lambda's execution environments die. Then every session is stopped and the stack
//! is checked: every session ended, no task runs, no slot is held, and every process
//! that died was replaced. Prints the figures; exits non-zero if any check fails.
//!
//! `SOAK_SECONDS` (default 120), `SOAK_USERS` (12), `SOAK_WORKERS` (6) and
//! `SOAK_SEED` (fixed by default, so that two runs send the same traffic) set it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{json, Value};
use session_tests::pump::{self, PumpSettings};
use session_tests::{Stack, StackOptions, FUNCTIONS};

/// Functions whose processes are killed. Not `api`: API Gateway answers a dead `api`
/// with a 500, which would hide a 5xx of ours.
const KILLED: [&str; 6] = [
    "authorize",
    "launch",
    "wait-for-ip",
    "record",
    "stop",
    "task-events",
];

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// SplitMix64: a small, seeded generator, so that the traffic is the same every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Default)]
struct Figures {
    statuses: BTreeMap<String, u64>,
    latencies_ms: Vec<f64>,
    started: u64,
    stops_asked: u64,
    heartbeats: u64,
    malformed: u64,
    kills: u64,
    server_errors: Vec<String>,
    /// Answers of the gateway to owners and to other users.
    gateway_statuses: BTreeMap<String, u64>,
    /// Another user let into a session: must stay empty.
    breaches: Vec<String>,
}

impl Figures {
    fn record(&mut self, what: &str, status: u16, took: Duration, body: &Value) {
        *self.statuses.entry(format!("{status}")).or_default() += 1;
        self.latencies_ms.push(took.as_secs_f64() * 1000.0);
        if status >= 500 {
            self.server_errors.push(format!("{what}: {status} {body}"));
        }
    }
}

fn user(n: u64) -> String {
    // Ids of the shapes identity providers give (ASCII: the HTTP client refuses
    // anything else in a header; raw UTF-8 is tested in tests/local_stack.rs).
    match n % 4 {
        0 => format!("soak-{n}"),
        1 => format!("auth0|soak{n}"),
        2 => format!("soak.{n}@example.com"),
        _ => format!("soak user {n}"),
    }
}

async fn worker(
    stack: Arc<Stack>,
    seed: u64,
    users: u64,
    until: Instant,
    figures: Arc<Mutex<Figures>>,
) {
    let mut rng = Rng(seed);
    let mut known: Vec<(String, String)> = Vec::new();
    while Instant::now() < until {
        let who = user(rng.below(users));
        let token = format!("dev:{who}");
        let roll = rng.below(100);
        let begun = Instant::now();
        let (what, status, body) = if roll < 25 {
            let version = if rng.below(5) == 0 { "1.0.0" } else { "latest" };
            let (status, body, _) = stack
                .http(
                    "POST",
                    "/sessions",
                    Some(&token),
                    Some(json!({ "version": version })),
                    &[],
                )
                .await;
            if status == 202 {
                if let Some(id) = body["session_id"].as_str() {
                    known.push((who.clone(), id.to_owned()));
                }
                figures.lock().unwrap().started += 1;
            }
            ("start", status, body)
        } else if roll < 40 && !known.is_empty() {
            let (owner, id) = known.swap_remove(rng.below(known.len() as u64) as usize);
            let (status, body, _) = stack
                .http(
                    "DELETE",
                    &format!("/sessions/{id}"),
                    Some(&format!("dev:{owner}")),
                    None,
                    &[],
                )
                .await;
            figures.lock().unwrap().stops_asked += 1;
            ("stop", status, body)
        } else if roll < 55 && !known.is_empty() {
            let (owner, id) = &known[rng.below(known.len() as u64) as usize];
            let (status, body, _) = stack
                .http(
                    "POST",
                    &format!("/sessions/{id}/heartbeat"),
                    Some(&format!("dev:{owner}")),
                    None,
                    &[],
                )
                .await;
            figures.lock().unwrap().heartbeats += 1;
            ("heartbeat", status, body)
        } else if roll < 65 {
            let (status, body, _) = stack
                .http("GET", "/sessions?limit=5", Some(&token), None, &[])
                .await;
            ("list", status, body)
        } else if roll < 75 && !known.is_empty() {
            // A session's api through the gateway, as its owner and as someone else.
            let (owner, id) = &known[rng.below(known.len() as u64) as usize];
            let stranger = user(rng.below(users));
            visit(&stack, owner, &stranger, id, &figures).await
        } else {
            figures.lock().unwrap().malformed += 1;
            let (what, status, body) = malformed(&stack, &mut rng, &token).await;
            (what, status, body)
        };
        // The gateway's answers are counted apart from the API's (see `visit`).
        if what != "visit" {
            figures
                .lock()
                .unwrap()
                .record(what, status, begun.elapsed(), &body);
        }
        tokio::time::sleep(Duration::from_millis(50 + rng.below(250))).await;
    }
}

/// GETs the session's api URL through the load balancer and the gateway as its owner
/// (200 while it runs, the plain 404 otherwise, 502 if its task just died) and as
/// another user (never anything but the 404).
async fn visit(
    stack: &Stack,
    owner: &str,
    stranger: &str,
    id: &str,
    figures: &Mutex<Figures>,
) -> (&'static str, u16, Value) {
    let gateway = stack
        .gateway
        .as_ref()
        .expect("the soak runs behind the gateway");
    let domain = &stack.function_env()["SESSION_DOMAIN"];
    let Ok(session_id) = session_core::session::SessionId::parse(id) else {
        return ("visit", 400, json!({"error": "not a session id"}));
    };
    let url = format!(
        "http://{}",
        session_core::hosts::session_host("api", &session_id, domain)
    );
    let (status, body) = gateway
        .request("GET", &url, Some(&format!("dev:{owner}")), &[])
        .await;
    *figures
        .lock()
        .unwrap()
        .gateway_statuses
        .entry(format!("owner {status}"))
        .or_default() += 1;
    if stranger != owner {
        let (theirs, body) = gateway
            .request("GET", &url, Some(&format!("dev:{stranger}")), &[])
            .await;
        let mut figures = figures.lock().unwrap();
        *figures
            .gateway_statuses
            .entry(format!("stranger {theirs}"))
            .or_default() += 1;
        if theirs != 404 {
            figures.breaches.push(format!(
                "{stranger} got {theirs} from {owner}'s session {id}: {body}"
            ));
        }
    }
    // 502 is the gateway's honest answer when the task's services went away under a
    // session still recorded running (its STOPPED event on its way); anything else
    // of 5xx is ours.
    if status >= 500 && status != 502 {
        let mut figures = figures.lock().unwrap();
        figures.server_errors.push(format!(
            "gateway: {status} for {owner}'s session {id}: {body}"
        ));
    }
    ("visit", status, json!({ "body": body }))
}

async fn malformed(stack: &Stack, rng: &mut Rng, token: &str) -> (&'static str, u16, Value) {
    let raw = |request: String| {
        let (status, body) = stack.raw_http(request.as_bytes());
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    };
    match rng.below(7) {
        0 => {
            let (s, b, _) = stack
                .http(
                    "POST",
                    "/sessions",
                    Some(token),
                    Some(json!("not an object")),
                    &[],
                )
                .await;
            ("bad body", s, b)
        }
        1 => {
            let (s, b, _) = stack
                .http(
                    "POST",
                    "/sessions",
                    Some(token),
                    Some(json!({"version": "../x"})),
                    &[],
                )
                .await;
            ("bad version", s, b)
        }
        2 => {
            let (s, b, _) = stack
                .http(
                    "GET",
                    "/sessions/sess-0000000000000000",
                    Some(token),
                    None,
                    &[],
                )
                .await;
            ("unknown session", s, b)
        }
        3 => {
            let (s, b, _) = stack
                .http("POST", "/sessions", None, Some(json!({})), &[])
                .await;
            ("no identity", s, b)
        }
        4 => {
            let (s, b) = raw(format!(
                "GET /sessions/{} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n",
                "a".repeat(100 * 1024)
            ));
            ("100 KB path", s, b)
        }
        5 => {
            let (s, b) = raw(format!(
                "GET /sessions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nx-big: {}\r\n\r\n",
                "b".repeat(64 * 1024)
            ));
            ("64 KB header", s, b)
        }
        _ => {
            let (s, b) = raw(format!(
                "GET /sessions/ünï HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
            ));
            ("raw UTF-8 path", s, b)
        }
    }
}

/// Kills a random function process every few seconds, busy or idle.
async fn chaos(stack: Arc<Stack>, seed: u64, until: Instant, figures: Arc<Mutex<Figures>>) {
    let mut rng = Rng(seed ^ 0xc4a0);
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_secs(8 + rng.below(8))).await;
        let function = KILLED[rng.below(KILLED.len() as u64) as usize];
        let instance = stack
            .lambda
            .busy_instance(function)
            .unwrap_or(rng.below(2) as usize);
        if stack.lambda.kill(function, instance).is_some() {
            figures.lock().unwrap().kills += 1;
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let seconds = setting("SOAK_SECONDS", 120);
    let users = setting("SOAK_USERS", 12);
    let workers = setting("SOAK_WORKERS", 6);
    let seed = setting("SOAK_SEED", 0x50a4);
    println!(
        "soak: {seconds} s of traffic, {users} users, {workers} workers, seed {seed}; \
         function processes killed every 8-16 s"
    );
    let stack = Arc::new(
        Stack::start_with(StackOptions {
            // Short enough for the checks after the traffic to see the reaper's work.
            env: vec![
                ("HEARTBEAT_INTERVAL_S", "5".into()),
                ("ORPHAN_GRACE_S", "10".into()),
                ("TRANSITION_DEADLINE_S", "60".into()),
            ],
            gateway: true,
            ..Default::default()
        })
        .await,
    );
    let pump = pump::spawn(
        stack.clone(),
        PumpSettings {
            reap_every: Duration::from_secs(10),
            ..Default::default()
        },
    );
    for n in 0..users {
        stack
            .put_user(&user(n), true, Some(1 + (n % 2) as u32))
            .await;
        if n % 3 == 0 {
            // Some users go idle quickly, so that the reaper stops sessions too.
            stack
                .set_user(&user(n), "idle_timeout_s", AttributeValue::N("20".into()))
                .await;
        }
    }

    let figures = Arc::new(Mutex::new(Figures::default()));
    let begun = Instant::now();
    let until = begun + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for w in 0..workers {
        tasks.push(tokio::spawn(worker(
            stack.clone(),
            seed.wrapping_add(w),
            users,
            until,
            figures.clone(),
        )));
    }
    tasks.push(tokio::spawn(chaos(
        stack.clone(),
        seed,
        until,
        figures.clone(),
    )));
    for task in tasks {
        task.await.expect("a soak task");
    }

    // Stop whatever is still active, as its owner, then let the stack settle.
    let drain_begun = Instant::now();
    for session in stack.all_sessions().await.into_values() {
        if !session.status.is_terminal() {
            let (id, owner) = (&session.session_id, &session.user_id);
            stack
                .http(
                    "DELETE",
                    &format!("/sessions/{id}"),
                    Some(&format!("dev:{owner}")),
                    None,
                    &[],
                )
                .await;
        }
    }
    let settle_until = Instant::now() + Duration::from_secs(150);
    let mut sessions = stack.all_sessions().await;
    while Instant::now() < settle_until {
        sessions = stack.all_sessions().await;
        let open = sessions
            .values()
            .filter(|s| !s.status.is_terminal())
            .count();
        if open == 0 && stack.running_tasks().await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let drained = drain_begun.elapsed();
    let stuck: Vec<_> = sessions
        .values()
        .filter(|s| !s.status.is_terminal())
        .map(|s| (s.session_id.as_str(), s.status))
        .collect();
    let running_tasks = stack.running_tasks().await.len();
    let mut held_slots = 0;
    for n in 0..users {
        held_slots += stack.active_slots(&user(n)).await.len();
    }
    let restarts = stack.lambda.restarts();
    let not_restored: Vec<&str> = FUNCTIONS
        .iter()
        .copied()
        .filter(|f| stack.lambda.pids(f).len() != 2)
        .collect();
    pump.abort();
    let _ = pump.await;

    let figures = figures.lock().unwrap();
    let mut latencies = figures.latencies_ms.clone();
    latencies.sort_by(f64::total_cmp);
    let ended: BTreeMap<String, usize> = sessions.values().fold(BTreeMap::new(), |mut m, s| {
        *m.entry(s.status.to_string()).or_default() += 1;
        m
    });
    println!("requests by status:      {:?}", figures.statuses);
    println!(
        "requests:                {} in {:.0} s; API p50 {:.1} ms, p99 {:.1} ms",
        latencies.len(),
        seconds,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );
    println!(
        "sessions started:        {} ({} stops asked, {} heartbeats, {} malformed requests)",
        figures.started, figures.stops_asked, figures.heartbeats, figures.malformed
    );
    println!(
        "sessions by final status: {ended:?} (settled {:.1} s after the traffic)",
        drained.as_secs_f64()
    );
    println!(
        "processes killed:        {}; exited and replaced: {}",
        figures.kills,
        restarts.len()
    );
    println!("stuck sessions:          {}", stuck.len());
    println!("running tasks:           {running_tasks}");
    println!("held slots:              {held_slots}");
    println!("gateway answers:         {:?}", figures.gateway_statuses);
    println!("other users let in:      {}", figures.breaches.len());
    println!("5xx answers:             {}", figures.server_errors.len());

    let mut failures = Vec::new();
    if !stuck.is_empty() {
        failures.push(format!("stuck sessions: {stuck:?}"));
    }
    if running_tasks > 0 {
        failures.push(format!("{running_tasks} tasks still run"));
    }
    if held_slots > 0 {
        failures.push(format!("{held_slots} slots still held"));
    }
    if !figures.breaches.is_empty() {
        failures.push(format!(
            "other users let into sessions: {:?}",
            figures.breaches
        ));
    }
    if figures.gateway_statuses.keys().all(|k| k != "owner 200") {
        failures.push("no owner ever reached a running session through the gateway".into());
    }
    if !figures.server_errors.is_empty() {
        failures.push(format!("5xx answers: {:?}", figures.server_errors));
    }
    if !not_restored.is_empty() {
        failures.push(format!(
            "functions without all their processes: {not_restored:?}"
        ));
    }
    if restarts.len() as u64 != figures.kills {
        failures.push(format!(
            "{} processes killed but {} exits seen: {restarts:?}",
            figures.kills,
            restarts.len()
        ));
    }
    drop(figures);
    // The last reference: every process of the stack stops here, before any exit.
    drop(stack);
    if failures.is_empty() {
        println!("soak: every session ended, no task runs, no slot is held, every dead process was replaced, no user reached another's session");
    } else {
        for failure in &failures {
            eprintln!("soak FAILED: {failure}");
        }
        std::process::exit(1);
    }
}
