//! Cold-start figures for the release function binaries, next to a Python 3 + boto3
//! baseline doing the same start-up work.
//!
//! Cold start is the time from spawning a process to its first request to the Lambda
//! Runtime API (`GET /2018-06-01/runtime/invocation/next`): by then its configuration is
//! read and its AWS clients are built. A listener on 127.0.0.1 plays the Runtime API and
//! each process is killed as soon as its request line arrives.
//!
//! This prints figures and asserts none: timings depend on the machine, so it fails only
//! when something could not be measured (a binary missing, a process that never polls).
//!
//! ```text
//! cargo build --release -p authorize -p launch -p wait-for-ip -p record -p stop -p task-events -p reaper
//! cargo bench -p coldstart-bench --bench coldstart
//! ```
//!
//! Environment: `COLDSTART_RUNS` (default 30), `SESSION_RELEASE_DIR` (default
//! `$CARGO_TARGET_DIR/release`, else `target/release`), `SESSION_TOOLS_DIR` (default
//! `~/.cache/session-provisioner`, holding `venv/`).

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Each function with the AWS clients its `main` builds, as boto3 service names, so that
/// the baseline does the same work.
const FUNCTIONS: [(&str, &[&str]); 8] = [
    ("api", &["dynamodb", "stepfunctions", "ecr"]),
    ("authorize", &["dynamodb", "ecr"]),
    ("launch", &["dynamodb", "ecs", "efs"]),
    ("wait-for-ip", &["dynamodb", "ec2", "stepfunctions"]),
    ("record", &["dynamodb", "stepfunctions", "events"]),
    ("stop", &["dynamodb", "ecs"]),
    ("task-events", &["dynamodb", "ec2", "stepfunctions"]),
    ("reaper", &["dynamodb", "ecs", "stepfunctions"]),
];

/// Runs not counted, so that every counted run finds the binaries, the Python modules
/// and their bytecode in the page cache.
const WARM_UP_RUNS: usize = 2;
const DEFAULT_RUNS: usize = 30;
const POLL_DEADLINE: Duration = Duration::from_secs(10);
/// The p50 speed-up over the Python controller the issue asks for.
const TARGET_SPEEDUP: f64 = 10.0;

const NEXT_INVOCATION: &str = "GET /2018-06-01/runtime/invocation/next ";

/// The environment Lambda gives a function, plus every setting the functions require.
/// The values are dummies: nothing but the Runtime API is contacted before the first poll.
const ENV: &[(&str, &str)] = &[
    ("AWS_LAMBDA_FUNCTION_VERSION", "1"),
    ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
    ("AWS_REGION", "us-east-1"),
    // boto3 reads only this one; Lambda sets both.
    ("AWS_DEFAULT_REGION", "us-east-1"),
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
    ("SESSIONS_TABLE", "sessions"),
    ("USERS_TABLE", "users"),
    ("CLUSTER", "sessions"),
    ("SUBNETS", "subnet-0123456789abcdef0"),
    ("SECURITY_GROUPS", "sg-0123456789abcdef0"),
    (
        "EXECUTION_ROLE_ARN",
        "arn:aws:iam::123456789012:role/execution",
    ),
    ("TASK_ROLE_PATH", "/sessions/users/"),
    (
        "TASK_ROLE_BOUNDARY_ARN",
        "arn:aws:iam::123456789012:policy/sessions/sessions-task-boundary",
    ),
    (
        "TASK_ROLE_POLICY_ARN",
        "arn:aws:iam::123456789012:policy/sessions/sessions-task-user-data",
    ),
    ("EFS_FILE_SYSTEM_ID", "fs-0123456789abcdef0"),
    (
        "ECR_REGISTRY",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com",
    ),
    ("TASK_LOG_GROUP", "/sessions/tasks"),
    ("EVENT_BUS", "sessions"),
    ("ACCESS_MODE", "gateway"),
    ("SESSION_DOMAIN", "sessions.example.com"),
    (
        "STATE_MACHINE_ARN",
        "arn:aws:states:us-east-1:123456789012:stateMachine:session-lifecycle",
    ),
    ("CURSOR_KEY", "coldstart-dummy-cursor-key-0123456789abcdef"),
];

/// What the Python controller did before it could take its first event. It then blocks,
/// as a runtime waiting for an event does, so it is still running when it is killed.
const PYTHON_COLD_START: &str = r#"
import os, socket, sys
import boto3
session = boto3.session.Session()
clients = [session.client(name) for name in sys.argv[1].split(",")]
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].rsplit(":", 1)
runtime = socket.create_connection((host, int(port)))
runtime.sendall(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: " + host.encode() + b"\r\n\r\n")
runtime.recv(1)
"#;

fn main() -> ExitCode {
    // `cargo test --all-targets` runs benches too, without `--bench`; the figures need a
    // release build and minutes of runs, so they are only taken when benchmarking.
    if !std::env::args().any(|a| a == "--bench") {
        println!("coldstart: not run as a benchmark; use `make bench`");
        return ExitCode::SUCCESS;
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("coldstart: could not measure: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let runs = match std::env::var("COLDSTART_RUNS") {
        Err(_) => DEFAULT_RUNS,
        Ok(raw) => raw
            .trim()
            .parse()
            .ok()
            .filter(|&n: &usize| n > 0)
            .ok_or_else(|| format!("COLDSTART_RUNS={raw:?} is not a positive number"))?,
    };
    let release_dir = release_dir();
    let python = tools_dir().join("venv/bin/python");
    let binaries: Vec<PathBuf> = FUNCTIONS.iter().map(|(f, _)| release_dir.join(f)).collect();
    let missing: Vec<String> = binaries
        .iter()
        .chain([&python])
        .filter(|p| !p.is_file())
        .map(|p| format!("\n  {}", p.display()))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "missing:{}\n(build with `cargo build --release -p authorize -p launch -p wait-for-ip \
             -p record -p stop -p task-events -p reaper` or `make release`; the venv comes from `tools/install.sh`)",
            missing.concat()
        ));
    }
    let python_version = python_version(&python)?;

    println!("== Cold start: process spawn -> first GET /2018-06-01/runtime/invocation/next");
    println!("   {runs} runs per function and runtime, after {WARM_UP_RUNS} warm-up runs; Rust and Python runs alternate");
    println!("   rust:   {}", release_dir.display());
    println!("   python: {} ({python_version})", python.display());
    println!();
    println!(
        "{:<12} {:<7} {:>9} {:>9} {:>9} {:>9}",
        "function", "runtime", "min ms", "p50 ms", "p90 ms", "mean ms"
    );

    let api = RuntimeApi::start().map_err(|e| format!("cannot listen on 127.0.0.1: {e}"))?;
    let mut results = Vec::new();
    for ((function, clients), binary) in FUNCTIONS.iter().zip(&binaries) {
        let mut rust = Command::new(binary);
        let mut boto = Command::new(&python);
        boto.arg("-c").arg(PYTHON_COLD_START).arg(clients.join(","));
        for cmd in [&mut rust, &mut boto] {
            cmd.env_clear()
                .envs(ENV.iter().copied())
                .env("AWS_LAMBDA_FUNCTION_NAME", function)
                .env("AWS_LAMBDA_RUNTIME_API", api.addr.to_string());
        }
        let (mut rust_samples, mut python_samples) =
            (Vec::with_capacity(runs), Vec::with_capacity(runs));
        for run in 0..WARM_UP_RUNS + runs {
            let r = api
                .cold_start(&mut rust)
                .map_err(|e| format!("{function} (rust): {e}"))?;
            let p = api
                .cold_start(&mut boto)
                .map_err(|e| format!("{function} (python): {e}"))?;
            if run >= WARM_UP_RUNS {
                rust_samples.push(r);
                python_samples.push(p);
            }
        }
        let (rust, python) = (Stats::of(rust_samples), Stats::of(python_samples));
        for (runtime, s) in [("rust", &rust), ("python", &python)] {
            println!(
                "{function:<12} {runtime:<7} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                ms(s.min),
                ms(s.p50),
                ms(s.p90),
                ms(s.mean)
            );
        }
        results.push((*function, rust, python));
    }

    println!();
    println!("== Cold start, Rust vs Python (ratio = Python p50 / Rust p50)");
    println!(
        "{:<12} {:>12} {:>12} {:>9} {:>12} {:>12}",
        "function", "rust p50 ms", "python p50", "ratio", "rust p90 ms", "python p90"
    );
    let mut short = Vec::new();
    for (function, rust, python) in &results {
        let ratio = ms(python.p50) / ms(rust.p50);
        println!(
            "{function:<12} {:>12.2} {:>12.2} {:>8.1}x {:>12.2} {:>12.2}",
            ms(rust.p50),
            ms(python.p50),
            ratio,
            ms(rust.p90),
            ms(python.p90)
        );
        if ratio < TARGET_SPEEDUP {
            short.push(format!("{function} {ratio:.1}x"));
        }
    }
    if short.is_empty() {
        println!("TARGET MET: every function starts at least {TARGET_SPEEDUP}x faster than its Python baseline at p50");
    } else {
        println!(
            "TARGET NOT MET: not every function starts {TARGET_SPEEDUP}x faster than its Python baseline at p50 ({})",
            short.join(", ")
        );
    }

    println!();
    println!("== Release binary sizes");
    println!("{:<12} {:>12} {:>9}", "function", "bytes", "MiB");
    for ((function, _), binary) in FUNCTIONS.iter().zip(&binaries) {
        let bytes = std::fs::metadata(binary)
            .map_err(|e| format!("{}: {e}", binary.display()))?
            .len();
        println!(
            "{function:<12} {bytes:>12} {:>9.2}",
            bytes as f64 / (1024.0 * 1024.0)
        );
    }
    Ok(())
}

fn release_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SESSION_RELEASE_DIR") {
        return dir.into();
    }
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
        .join("release")
}

fn tools_dir() -> PathBuf {
    std::env::var_os("SESSION_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/session-provisioner")
        })
}

fn python_version(python: &Path) -> Result<String, String> {
    let out = Command::new(python)
        .args(["-c", "import sys, boto3; print(f'Python {sys.version.split()[0]}, boto3 {boto3.__version__}')"])
        .output()
        .map_err(|e| format!("{}: {e}", python.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} cannot import boto3: {}",
            python.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Stands in for the Lambda Runtime API, only far enough to see each request line.
struct RuntimeApi {
    addr: SocketAddr,
    requests: Receiver<Request>,
}

struct Request {
    arrived: Instant,
    line: String,
    /// Held open until its process is killed: a closed connection would make the runtime
    /// retry, and the retry would be taken for the next run's request.
    _connection: TcpStream,
}

impl RuntimeApi {
    fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let (tx, requests) = mpsc::channel();
        // A thread of its own, so that the arrival is stamped as soon as the line is read
        // while the main thread is busy watching the process.
        std::thread::spawn(move || {
            for connection in listener.incoming().flatten() {
                // A client that connects and never writes must not stall the next runs.
                if connection.set_read_timeout(Some(POLL_DEADLINE)).is_err() {
                    continue;
                }
                let mut reader = BufReader::new(connection);
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let request = Request {
                    arrived: Instant::now(),
                    line,
                    _connection: reader.into_inner(),
                };
                if tx.send(request).is_err() {
                    return;
                }
            }
        });
        Ok(Self { addr, requests })
    }

    /// Spawns `cmd`, waits for its first request, kills it and returns how long the
    /// request took to come.
    fn cold_start(&self, cmd: &mut Command) -> Result<Duration, String> {
        let spawned = Instant::now();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot spawn: {e}"))?;
        let polled = loop {
            // The short timeout only bounds how soon an early exit is noticed; the arrival
            // time is stamped by the listener thread.
            match self.requests.recv_timeout(Duration::from_millis(20)) {
                Ok(request) if request.line.starts_with(NEXT_INVOCATION) => {
                    break Ok(request.arrived - spawned)
                }
                Ok(request) => {
                    break Err(format!(
                        "unexpected first request {:?}",
                        request.line.trim_end()
                    ))
                }
                Err(RecvTimeoutError::Disconnected) => break Err("the listener stopped".to_owned()),
                Err(RecvTimeoutError::Timeout) => {}
            }
            match child.try_wait() {
                Ok(Some(status)) => break Err(format!("exited ({status}) before polling")),
                Ok(None) if spawned.elapsed() >= POLL_DEADLINE => {
                    break Err(format!("did not poll within {} s", POLL_DEADLINE.as_secs()))
                }
                Ok(None) => {}
                Err(e) => break Err(format!("cannot watch the process: {e}")),
            }
        };
        // Killing an already exited process fails harmlessly; the wait reaps it either way.
        let _ = child.kill();
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        child
            .wait()
            .map_err(|e| format!("cannot reap the process: {e}"))?;
        polled.map_err(|e| {
            if stderr.trim().is_empty() {
                e
            } else {
                format!("{e}; stderr:\n{}", stderr.trim_end())
            }
        })
    }
}

struct Stats {
    min: Duration,
    p50: Duration,
    p90: Duration,
    mean: Duration,
}

impl Stats {
    fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        let n = samples.len();
        // Nearest rank: the smallest sample that at least `p` of the samples do not exceed.
        let percentile = |p: f64| samples[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
        Self {
            min: samples[0],
            p50: percentile(0.5),
            p90: percentile(0.9),
            mean: samples.iter().sum::<Duration>() / n as u32,
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
