//! Session gateway benchmark (`make bench`, issue #10): what the gateway adds to a
//! request to a session's service, on the local stack.
//!
//! The same load generator — keep-alive HTTP/1.1 connections, one hyper client
//! connection per Tokio task — calls the fake session service (`task_services`)
//! directly, then through the real `gateway` binary (straight to the gateway's
//! listener, with the session host's sign-in cookie, got once through the local load
//! balancer and the login host as a browser gets it, and the session's Host: the load
//! balancer is not part of what is measured). Prints:
//!
//! - throughput at [`CONNECTIONS`] connections, closed loop (as fast as answers come),
//!   direct and through the gateway, with the gateway's CPU time per request;
//! - latency at a fixed, open-loop rate (half the gateway's measured maximum unless
//!   `GATEWAY_BENCH_RATE` says otherwise) spread evenly over the connections, so that
//!   it reflects the cost of a request and not queueing: p50/p90/p99 direct and through
//!   the gateway, and what the gateway adds, against the targets;
//! - the gateway process's resident memory before the load and its peak (`VmHWM`);
//! - the non-200 answers and connection errors of every phase (all should be 0);
//! - how many session look-ups reached the sessions table (the requests the AWS
//!   emulator logged meanwhile), to tell the cache's misses from the proxy's own cost.
//!
//! Phase length: `GATEWAY_BENCH_SECONDS` (default 10: each latency phase runs that
//! long, each throughput phase half of it). Gateway binary: `SESSION_FUNCTIONS_DIR`
//! (the release binaries under `make bench`). Nothing is random: the connections'
//! send times are evenly staggered.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, HOST};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use session_core::hosts::session_host;
use session_core::session::SessionId;
use session_tests::task_services::TaskServices;
use session_tests::{Stack, StackOptions, Tools};

/// Concurrent keep-alive connections of every phase (the figure).
const CONNECTIONS: usize = 200;
/// The targets for what the gateway adds.
const TARGET_ADDED_P50: Duration = Duration::from_millis(1);
const TARGET_ADDED_P99: Duration = Duration::from_millis(5);
/// Closed-loop warm-up of each side before anything is measured.
const WARM_UP: Duration = Duration::from_secs(2);
/// The open-loop rate, as a share of the gateway's closed-loop maximum.
const RATE_SHARE: f64 = 0.5;
/// A request not answered within this counts as a connection error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The fake session's task address: a loopback address outside the emulator's task
/// range (`127.{high}.{low}.0/24` of its port's two bytes; the port is an ephemeral
/// one, ≥ 32768, so `high` is never 77).
const UPSTREAM_IP: Ipv4Addr = Ipv4Addr::new(127, 77, 0, 2);
const USER: &str = "bench-user";
/// /proc's clock ticks per second (USER_HZ, 100 on Linux).
const USER_HZ: f64 = 100.0;

/// Where one side's requests go.
struct Target {
    name: &'static str,
    address: SocketAddr,
    host: HeaderValue,
    /// The session host's sign-in cookie (gateway only).
    cookie: Option<HeaderValue>,
}

impl Target {
    fn request(&self) -> Request<Empty<Bytes>> {
        let mut request = Request::get("/bench?q=1")
            .header(HOST, self.host.clone())
            .header("accept", "application/json");
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", cookie.clone());
        }
        request.body(Empty::new()).expect("a valid request")
    }
}

#[derive(Clone, Copy)]
enum Load {
    /// Each connection sends its next request as soon as the last is answered.
    Closed,
    /// `rate` requests per second in all, each connection sending on its own evenly
    /// spaced schedule, the connections' schedules evenly staggered.
    Open { rate: f64 },
}

#[derive(Default)]
struct Outcome {
    ok: u64,
    non_200: u64,
    connection_errors: u64,
    /// Open loop: requests sent after their time because the connection was still
    /// waiting for the previous answer (their latency counts from their time).
    late: u64,
    latencies: Vec<Duration>,
    elapsed: Duration,
    /// Requests the AWS emulator received meanwhile: the gateway's session look-ups.
    table_reads: Option<usize>,
}

impl Outcome {
    fn merge(&mut self, other: Outcome) {
        self.ok += other.ok;
        self.non_200 += other.non_200;
        self.connection_errors += other.connection_errors;
        self.late += other.late;
        self.latencies.extend(other.latencies);
        self.elapsed += other.elapsed;
        self.table_reads = match (self.table_reads, other.table_reads) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
    }

    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    /// Session look-ups that reached the sessions table, per second.
    fn table_reads(&self) -> String {
        self.table_reads.map_or("?".to_owned(), |n| {
            format!("{:.0}/s", n as f64 / self.elapsed.as_secs_f64())
        })
    }

    fn errors(&self) -> String {
        format!(
            "{} non-200, {} connection errors",
            self.non_200, self.connection_errors
        )
    }
}

async fn connect(address: SocketAddr) -> Option<SendRequest<Empty<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(address).await.ok()?;
    stream.set_nodelay(true).ok()?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(connection);
    Some(sender)
}

/// One request on `sender`: true if answered 200 (the whole body read), false for any
/// other status, an error if the connection failed.
async fn send(sender: &mut SendRequest<Empty<Bytes>>, target: &Target) -> Result<bool, ()> {
    let exchange = async {
        sender.ready().await.map_err(|_| ())?;
        let response = sender
            .send_request(target.request())
            .await
            .map_err(|_| ())?;
        let status = response.status();
        response.into_body().collect().await.map_err(|_| ())?;
        Ok(status == StatusCode::OK)
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .unwrap_or(Err(()))
}

/// Runs `load` on [`CONNECTIONS`] connections to `target` for `duration`. The
/// connections are opened before the clock starts.
async fn run(target: &Arc<Target>, load: Load, duration: Duration) -> Outcome {
    let mut senders = Vec::with_capacity(CONNECTIONS);
    let mut failed = 0;
    for _ in 0..CONNECTIONS {
        match connect(target.address).await {
            Some(sender) => senders.push(Some(sender)),
            None => {
                failed += 1;
                senders.push(None);
            }
        }
    }
    let start = Instant::now() + Duration::from_millis(20);
    let deadline = start + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for (index, sender) in senders.into_iter().enumerate() {
        let target = Arc::clone(target);
        tasks.spawn(connection_load(
            target, sender, load, index, start, deadline,
        ));
    }
    let mut outcome = Outcome {
        connection_errors: failed,
        ..Outcome::default()
    };
    while let Some(done) = tasks.join_next().await {
        outcome.merge(done.expect("a load task"));
    }
    outcome.elapsed = duration;
    outcome
}

/// [`run`], counting the requests the AWS emulator logs meanwhile.
async fn measured(
    target: &Arc<Target>,
    load: Load,
    duration: Duration,
    emulator: Option<&Path>,
) -> Outcome {
    let before = emulator_requests(emulator);
    let mut outcome = run(target, load, duration).await;
    outcome.table_reads = before
        .zip(emulator_requests(emulator))
        .map(|(before, after)| after.saturating_sub(before));
    outcome
}

async fn connection_load(
    target: Arc<Target>,
    mut sender: Option<SendRequest<Empty<Bytes>>>,
    load: Load,
    index: usize,
    start: Instant,
    deadline: Instant,
) -> Outcome {
    let mut outcome = Outcome::default();
    let (interval, offset) = match load {
        Load::Closed => (Duration::ZERO, Duration::ZERO),
        Load::Open { rate } => {
            let interval = Duration::from_secs_f64(CONNECTIONS as f64 / rate);
            (
                interval,
                interval.mul_f64(index as f64 / CONNECTIONS as f64),
            )
        }
    };
    tokio::time::sleep_until(start.into()).await;
    let mut previous_done = start;
    for n in 0u32.. {
        let began = match load {
            Load::Closed => Instant::now(),
            Load::Open { .. } => {
                let due = start + offset + interval * n;
                if due >= deadline {
                    break;
                }
                tokio::time::sleep_until(due.into()).await;
                // Late because the last answer came after this one's time: that wait
                // is the server's, and counts. Late because the timer woke late (it
                // ticks in milliseconds): that is the generator's, and does not.
                if previous_done > due {
                    outcome.late += 1;
                    due
                } else {
                    Instant::now()
                }
            }
        };
        if began >= deadline {
            break;
        }
        if sender.as_ref().is_none_or(SendRequest::is_closed) {
            sender = connect(target.address).await;
        }
        let Some(connection) = sender.as_mut() else {
            outcome.connection_errors += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
            previous_done = Instant::now();
            continue;
        };
        let answered = send(connection, &target).await;
        previous_done = Instant::now();
        match answered {
            // Closed loop: what the deadline cut is not part of the rate.
            Ok(_) if matches!(load, Load::Closed) && previous_done > deadline => break,
            Ok(true) => {
                outcome.ok += 1;
                outcome.latencies.push(previous_done - began);
            }
            Ok(false) => outcome.non_200 += 1,
            Err(()) => {
                outcome.connection_errors += 1;
                sender = None;
            }
        }
    }
    outcome
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

fn signed_ms(later: Duration, earlier: Duration) -> (String, Duration) {
    if later >= earlier {
        (ms(later - earlier), later - earlier)
    } else {
        (format!("-{}", ms(earlier - later)), Duration::ZERO)
    }
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}

/// `VmRSS`, `VmHWM`… of a process, in KiB.
fn memory_kib(pid: u32) -> HashMap<String, u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            let kib = value.trim().strip_suffix(" kB")?.trim().parse().ok()?;
            Some((name.to_owned(), kib))
        })
        .collect()
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// User + system CPU time a process has used so far.
fn cpu_time(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
    Duration::from_secs_f64((ticks(11) + ticks(12)) as f64 / USER_HZ)
}

/// Requests the emulator has logged so far (one line each, `"POST / HTTP/1.1" 200`).
/// While the benchmark runs, nothing but the gateway's session look-ups calls it.
fn emulator_requests(log: Option<&Path>) -> Option<usize> {
    let text = std::fs::read(log?).ok()?;
    Some(
        text.split(|b| *b == b'\n')
            .filter(|line| line.windows(10).any(|w| w == b" HTTP/1.1\""))
            .count(),
    )
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

#[tokio::main]
async fn main() {
    let seconds: f64 = std::env::var("GATEWAY_BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|s: &f64| *s > 0.0)
        .unwrap_or(10.0);
    let fixed_rate: Option<f64> = std::env::var("GATEWAY_BENCH_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|r: &f64| *r > 0.0);
    let latency_phase = Duration::from_secs_f64(seconds);
    let throughput_phase = latency_phase / 2;
    let began = Instant::now();

    let stack = Stack::start_with(StackOptions {
        gateway: true,
        ..StackOptions::default()
    })
    .await;
    let gateway = stack.gateway.as_ref().expect("the stack's gateway");
    let pid = gateway.pid().expect("the gateway process runs");
    let binary = Tools::from_env().functions_dir.join("gateway");

    // The session's one service, and its item in the sessions table, as the lifecycle
    // leaves a running session.
    let services = TaskServices::start(IpAddr::V4(UPSTREAM_IP), &[("api".to_owned(), 0)])
        .await
        .unwrap_or_else(|e| panic!("the fake service on {UPSTREAM_IP}: {e}"));
    let upstream_port = services.ports[0];
    let session_id = SessionId::generate();
    stack
        .ddb
        .put_item()
        .table_name(&stack.info.sessions_table)
        .item("session_id", AttributeValue::S(session_id.to_string()))
        .item("user_id", AttributeValue::S(USER.into()))
        .item("status", AttributeValue::S("running".into()))
        .item("private_ip", AttributeValue::S(UPSTREAM_IP.to_string()))
        .item(
            "service_ports",
            AttributeValue::M(HashMap::from([(
                "api".to_owned(),
                AttributeValue::N(upstream_port.to_string()),
            )])),
        )
        .send()
        .await
        .expect("put the session item");

    let domain = &stack.function_env()["SESSION_DOMAIN"];
    let host = session_host("api", &session_id, domain);
    // Signed in once, as a browser is; the cookie outlasts the run (SIGN_IN_TTL_S).
    let cookie = gateway.sign_in(&format!("dev:{USER}"), &host).await;
    let direct = Arc::new(Target {
        name: "direct",
        address: SocketAddr::new(IpAddr::V4(UPSTREAM_IP), upstream_port),
        host: HeaderValue::from_str(&format!("{UPSTREAM_IP}:{upstream_port}")).unwrap(),
        cookie: None,
    });
    let through = Arc::new(Target {
        name: "through gateway",
        address: gateway.address,
        host: HeaderValue::from_str(&host).unwrap(),
        cookie: Some(HeaderValue::from_str(&cookie).expect("a header value")),
    });

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "session gateway, on the local stack: {} ({CONNECTIONS} keep-alive HTTP/1.1 connections, GET of the fake service's JSON echo)",
        binary.display()
    );
    println!(
        "  this machine: available_parallelism = {cores}, load average {} at the start; the load generator, the fake service and the gateway share these cores, so every figure below is what the gateway does while competing for them (a lower bound for a gateway task alone)",
        load_average()
    );

    // One request each way first: the route works, and how big the answers are.
    for target in [&direct, &through] {
        let mut sender = connect(target.address)
            .await
            .unwrap_or_else(|| panic!("connect to {}", target.address));
        let response = sender
            .send_request(target.request())
            .await
            .expect("an answer");
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            status,
            StatusCode::OK,
            "{}: {}",
            target.name,
            String::from_utf8_lossy(&body)
        );
        println!("  (a {} answer: {} bytes of JSON)", target.name, body.len());
    }
    let before = memory_kib(pid);
    let emulator = Some(stack.logs_dir().join("moto.log"));
    let emulator = emulator.as_deref();

    for target in [&direct, &through] {
        let warm = run(target, Load::Closed, WARM_UP).await;
        if warm.non_200 + warm.connection_errors > 0 {
            println!("  warm-up {}: {}", target.name, warm.errors());
        }
    }

    println!(
        "throughput, closed loop ({} s each, after a {} s warm-up each):",
        throughput_phase.as_secs_f64(),
        WARM_UP.as_secs()
    );
    let mut throughput = Vec::new();
    for target in [&direct, &through] {
        let (gateway_cpu, own_cpu) = (cpu_time(&pid.to_string()), cpu_time("self"));
        let outcome = measured(target, Load::Closed, throughput_phase, emulator).await;
        let gateway_cpu = cpu_time(&pid.to_string()) - gateway_cpu;
        let own_cpu = cpu_time("self") - own_cpu;
        let per_request = |cpu: Duration| cpu.as_secs_f64() * 1e6 / outcome.ok.max(1) as f64;
        let cpu = if target.cookie.is_some() {
            format!(
                "; CPU per request: gateway {:.0} µs, load generator + fake service {:.0} µs; sessions-table reads {}",
                per_request(gateway_cpu),
                per_request(own_cpu),
                outcome.table_reads()
            )
        } else {
            format!(
                "; CPU per request: load generator + fake service {:.0} µs",
                per_request(own_cpu)
            )
        };
        println!(
            "  {:<16} {:>8.0} req/s   errors: {}{cpu}",
            target.name,
            outcome.rate(),
            outcome.errors(),
        );
        throughput.push(outcome);
    }
    let gateway_max = throughput[1].rate();
    println!(
        "  requests per second through the gateway on this machine: {gateway_max:.0} ({:.0}% of direct)",
        100.0 * gateway_max / throughput[0].rate().max(1.0)
    );

    let rate = fixed_rate.unwrap_or((gateway_max * RATE_SHARE).max(CONNECTIONS as f64));
    let rounds = 2u32;
    let mut latency: Vec<Outcome> = vec![Outcome::default(), Outcome::default()];
    // Alternating halves (direct, gateway, direct, gateway), so that a drift of the
    // machine's background load weighs on both sides alike.
    for _ in 0..rounds {
        for (side, target) in [&direct, &through].into_iter().enumerate() {
            let outcome = measured(
                target,
                Load::Open { rate },
                latency_phase / rounds,
                emulator,
            )
            .await;
            latency[side].merge(outcome);
        }
    }
    println!(
        "latency at a fixed rate of {rate:.0} req/s ({}), open loop, {} s per side in {rounds} alternating halves:",
        if fixed_rate.is_some() {
            "GATEWAY_BENCH_RATE".to_owned()
        } else {
            format!(
                "{:.0}% of the gateway's closed-loop maximum",
                RATE_SHARE * 100.0
            )
        },
        latency_phase.as_secs_f64()
    );
    println!(
        "  {:<16} {:>8} {:>8} {:>8} {:>8} {:>8}   {:>8}  late  errors",
        "", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "req/s"
    );
    let mut quantiles = Vec::new();
    for (outcome, target) in latency.iter_mut().zip([&direct, &through]) {
        outcome.latencies.sort();
        let sorted = &outcome.latencies;
        let q: Vec<Duration> = [0.5, 0.9, 0.99, 0.999, 1.0]
            .iter()
            .map(|p| percentile(sorted, *p))
            .collect();
        println!(
            "  {:<16} {:>8} {:>8} {:>8} {:>8} {:>8}   {:>8.0}  {:>4}  {}",
            target.name,
            ms(q[0]),
            ms(q[1]),
            ms(q[2]),
            ms(q[3]),
            ms(q[4]),
            outcome.rate(),
            outcome.late,
            outcome.errors()
        );
        quantiles.push(q);
    }
    let (direct_q, gateway_q) = (&quantiles[0], &quantiles[1]);
    let added: Vec<(String, Duration)> = (0..5)
        .map(|i| signed_ms(gateway_q[i], direct_q[i]))
        .collect();
    println!(
        "  {:<16} {:>8} {:>8} {:>8} {:>8} {:>8}   (each percentile through the gateway minus the same percentile direct)",
        "added", added[0].0, added[1].0, added[2].0, added[3].0, added[4].0
    );
    println!(
        "  added p50 {} ms (target < {} ms: {}); added p99 {} ms (target < {} ms: {})",
        added[0].0,
        TARGET_ADDED_P50.as_millis(),
        met(added[0].1 < TARGET_ADDED_P50),
        added[2].0,
        TARGET_ADDED_P99.as_millis(),
        met(added[2].1 < TARGET_ADDED_P99)
    );

    println!(
        "  sessions-table reads through the gateway: {} (the gateway keeps look-ups 1 s: ~1/s if concurrent misses shared one read; each read is a GetItem on the AWS emulator, whose wait lands on the requests that made it)",
        latency[1].table_reads()
    );

    let after = memory_kib(pid);
    let kib = |m: &HashMap<String, u64>, k: &str| m.get(k).copied().unwrap_or(0);
    println!(
        "gateway memory (pid {pid}): resident before the load {}; peak resident (VmHWM) after the load {}; resident after {}",
        mib(kib(&before, "VmRSS")),
        mib(kib(&after, "VmHWM")),
        mib(kib(&after, "VmRSS"))
    );
    let errors: u64 = throughput
        .iter()
        .chain(&latency)
        .map(|o| o.non_200 + o.connection_errors)
        .sum();
    println!("errors over all measured phases: {errors} (non-200 answers and connection errors)");
    println!(
        "gateway benchmark took {:.1} s end to end (stack start included)",
        began.elapsed().as_secs_f64()
    );
}
