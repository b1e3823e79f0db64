//! `sessionctl`, the command-line client, as a user runs it: the built binary against
//! the stack's HTTP API with the development identity, judged by what it prints and
//! by the exit status a script would test.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;
use session_core::session::{Reason, SessionId, Status};
use session_tests::{Stack, Tools};

/// The binary, where the function binaries are (`cargo build --workspace` builds it).
fn binary() -> PathBuf {
    let bin = Tools::from_env().functions_dir.join("sessionctl");
    assert!(
        bin.exists(),
        "{} missing (run `cargo build --workspace`)",
        bin.display()
    );
    bin
}

/// `sessionctl` for `api_url` and `token`, given through the environment as a user's
/// shell would, polling fast so that the tests see every status.
fn sessionctl(api_url: &str, token: &str, args: &[&str]) -> Command {
    let mut command = Command::new(binary());
    command
        .env("SESSIONCTL_API_URL", api_url)
        .env("SESSIONCTL_TOKEN", token)
        .args(["--timeout", "30s", "--poll-interval", "200ms"])
        .args(["--wait-timeout", "5m"])
        .args(args)
        .stdin(Stdio::null());
    command
}

/// Runs a command to its end.
async fn run(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().expect("run sessionctl"))
        .await
        .expect("sessionctl thread")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// What a test needs to see of a run when it fails.
fn shown(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr)
    )
}

/// The statuses of the progress display (`<elapsed>  <status>` lines), in order.
fn progression(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(
            |line| match line.split_whitespace().collect::<Vec<_>>()[..] {
                [elapsed, status]
                    if elapsed.ends_with('s')
                        && elapsed.starts_with(|c: char| c.is_ascii_digit()) =>
                {
                    Some(status.to_owned())
                }
                _ => None,
            },
        )
        .collect()
}

/// The value of a `field  value` line of a session's table.
fn field<'a>(table: &'a str, name: &str) -> Option<&'a str> {
    table.lines().find_map(|line| {
        let (key, value) = line.split_once(char::is_whitespace)?;
        (key == name).then(|| value.trim())
    })
}

/// A `sessionctl` still running, its stderr readable while it runs; killed if the
/// test ends first.
struct Running {
    child: Child,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
    stdout: Arc<Mutex<String>>,
}

impl Running {
    fn spawn(mut command: Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sessionctl");
        let (stdout, stderr) = (Arc::default(), Arc::default());
        let readers = vec![
            drain(child.stdout.take().expect("stdout"), Arc::clone(&stdout)),
            drain(child.stderr.take().expect("stderr"), Arc::clone(&stderr)),
        ];
        Self {
            child,
            stderr,
            readers,
            stdout,
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits for the exit; returns (exit code, stdout, stderr).
    async fn finish(mut self, within: Duration) -> (Option<i32>, String, String) {
        let deadline = tokio::time::Instant::now() + within;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("sessionctl status") {
                break status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "sessionctl still runs after {within:?}; stderr so far:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        for reader in self.readers.drain(..) {
            reader.join().expect("reader thread");
        }
        let stdout = self.stdout.lock().unwrap().clone();
        (status.code(), stdout, self.stderr())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn drain(mut pipe: impl Read + Send + 'static, into: Arc<Mutex<String>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buffer = [0u8; 1024];
        while let Ok(n) = pipe.read(&mut buffer) {
            if n == 0 {
                break;
            }
            into.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buffer[..n]));
        }
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn start_wait_shows_the_progress_until_running_then_the_session_is_used_and_stopped() {
    let stack = Stack::start().await;
    stack.put_user("alice", true, None).await;
    let api = stack.api_gateway.url();

    let start = Running::spawn(sessionctl(
        &api,
        "dev:alice",
        &["start", "--version", "1.0.0", "--wait"],
    ));
    // The task comes up only once sessionctl has shown the session provisioning, so the
    // progress it shows is the session's real path, each step of it.
    stack
        .eventually(
            "sessionctl to show the session provisioning",
            Duration::from_secs(60),
            || async {
                progression(&start.stderr())
                    .iter()
                    .any(|s| s == "provisioning")
                    .then_some(())
            },
        )
        .await;
    let (status, listed, _) = stack
        .http("GET", "/sessions", Some("dev:alice"), None, &[])
        .await;
    assert_eq!(status, 200, "{listed}");
    let id = SessionId::parse(listed["sessions"][0]["session_id"].as_str().expect("an id"))
        .expect("a session id");
    let (_, ip) = stack.bring_task_up(&id).await;

    let (code, stdout, stderr) = start.finish(Duration::from_secs(120)).await;
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(
        progression(&stderr),
        ["starting", "provisioning", "running"],
        "{stderr}"
    );
    assert!(stderr.contains(id.as_str()), "{stderr}");
    assert_eq!(field(&stdout, "session_id"), Some(id.as_str()), "{stdout}");
    assert_eq!(field(&stdout, "status"), Some("running"), "{stdout}");
    for (name, port) in [("api", 8000), ("frontend", 3000), ("suv_ui", 3030)] {
        let url = format!("http://{ip}:{port}");
        assert_eq!(
            field(&stdout, &format!("urls.{name}")),
            Some(url.as_str()),
            "{stdout}"
        );
    }

    // A second start at the limit of one is a conflict that names the active session.
    let again = run(sessionctl(
        &api,
        "dev:alice",
        &["start", "--version", "1.0.0"],
    ))
    .await;
    assert_eq!(again.status.code(), Some(5), "{}", shown(&again));
    let refusal = text(&again.stderr);
    assert!(refusal.contains("session_limit_reached"), "{refusal}");
    assert!(refusal.contains("active sessions:"), "{refusal}");
    assert!(
        refusal
            .lines()
            .any(|l| l.split_whitespace().take(2).eq([id.as_str(), "running"])),
        "the active session and its status are not listed:\n{refusal}"
    );
    assert!(again.stdout.is_empty(), "{}", shown(&again));

    let status = run(sessionctl(&api, "dev:alice", &["status", id.as_str()])).await;
    assert_eq!(status.status.code(), Some(0), "{}", shown(&status));
    let table = text(&status.stdout);
    assert_eq!(field(&table, "status"), Some("running"), "{table}");
    assert_eq!(
        field(&table, "urls.api"),
        Some(format!("http://{ip}:8000").as_str())
    );

    let heartbeat = run(sessionctl(&api, "dev:alice", &["heartbeat", id.as_str()])).await;
    assert_eq!(heartbeat.status.code(), Some(0), "{}", shown(&heartbeat));
    assert!(
        text(&heartbeat.stdout).starts_with(&format!("heartbeat recorded for session {id}")),
        "{}",
        shown(&heartbeat)
    );
    let recorded = stack.session(&id).await.expect("the session");
    assert!(recorded.last_activity_at.is_some(), "{recorded:?}");

    let list = run(sessionctl(&api, "dev:alice", &["list", "--output", "json"])).await;
    assert_eq!(list.status.code(), Some(0), "{}", shown(&list));
    let listed: Value = serde_json::from_slice(&list.stdout).expect("list prints JSON");
    let sessions = listed["sessions"].as_array().expect("a sessions array");
    assert_eq!(sessions.len(), 1, "{listed}");
    assert_eq!(sessions[0]["session_id"], id.as_str());
    assert_eq!(sessions[0]["status"], "running");
    assert_eq!(sessions[0]["urls"]["suv_ui"], format!("http://{ip}:3030"));
    assert!(listed["next_token"].is_null(), "{listed}");

    let stop = run(sessionctl(
        &api,
        "dev:alice",
        &["stop", id.as_str(), "--wait"],
    ))
    .await;
    assert_eq!(stop.status.code(), Some(0), "{}", shown(&stop));
    assert_eq!(
        progression(&text(&stop.stderr)),
        ["stopping", "stopped"],
        "{}",
        shown(&stop)
    );
    let table = text(&stop.stdout);
    assert_eq!(field(&table, "status"), Some("stopped"), "{table}");
    assert_eq!(field(&table, "stop_reason"), Some("user"), "{table}");
    let ended = stack.session(&id).await.expect("the session");
    assert_eq!(
        (ended.status, ended.stop_reason),
        (Status::Stopped, Some(Reason::User))
    );
    for task in stack.running_tasks().await {
        assert_ne!(task.started_by(), Some(id.as_str()), "its task still runs");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_exit_with_their_documented_status_and_the_apis_reason() {
    let stack = Stack::start().await;
    stack.put_user("alice", true, None).await;
    let api = stack.api_gateway.url();

    // Not a development token: the gateway answers 401, as API Gateway's authorizer.
    let secret = "eyJhbGciOiJub25lIn0.s3cr3t";
    let unauthorized = run(sessionctl(&api, secret, &["list"])).await;
    assert_eq!(
        unauthorized.status.code(),
        Some(3),
        "{}",
        shown(&unauthorized)
    );
    let message = text(&unauthorized.stderr);
    assert!(message.contains("401"), "{message}");
    assert!(message.contains("SESSIONCTL_TOKEN"), "{message}");
    assert!(
        !shown(&unauthorized).contains("s3cr3t"),
        "the token was printed: {}",
        shown(&unauthorized)
    );

    let unknown = "sess-0123456789abcdef0123456789abcdef";
    let missing = run(sessionctl(&api, "dev:alice", &["status", unknown])).await;
    assert_eq!(missing.status.code(), Some(4), "{}", shown(&missing));
    let message = text(&missing.stderr);
    assert!(message.contains("session_not_found"), "{message}");
    assert!(message.contains(unknown), "{message}");
    assert!(missing.stdout.is_empty(), "{}", shown(&missing));

    // With --output json a script reads the API's error code from stderr.
    let missing = run(sessionctl(
        &api,
        "dev:alice",
        &["stop", unknown, "--output", "json"],
    ))
    .await;
    assert_eq!(missing.status.code(), Some(4), "{}", shown(&missing));
    let error: Value = serde_json::from_slice(&missing.stderr).expect("a JSON error");
    assert_eq!(error["error"]["code"], "session_not_found", "{error}");
    assert_eq!(error["error"]["exit_code"], 4, "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_api_url_where_nothing_listens_exits_8_naming_the_url() {
    let closed = session_tests::ClosedPort::new();
    let api = format!("http://127.0.0.1:{}", closed.port);
    let unreachable = run(sessionctl(&api, "dev:alice", &["start", "--wait"])).await;
    assert_eq!(
        unreachable.status.code(),
        Some(8),
        "{}",
        shown(&unreachable)
    );
    let message = text(&unreachable.stderr);
    assert!(
        message.contains(&format!("could not reach the API at {api}/sessions")),
        "{message}"
    );
    assert!(unreachable.stdout.is_empty(), "{}", shown(&unreachable));
}

#[tokio::test(flavor = "multi_thread")]
async fn versions_lists_the_stacks_release_with_latest_marked() {
    // Every repository of the stack holds one image tagged 1.0.0 and latest.
    let stack = Stack::start().await;
    let api = stack.api_gateway.url();

    let table = run(sessionctl(&api, "dev:alice", &["versions"])).await;
    assert_eq!(table.status.code(), Some(0), "{}", shown(&table));
    let rows: Vec<Vec<String>> = text(&table.stdout)
        .lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect();
    assert_eq!(rows.len(), 2, "{}", shown(&table));
    assert_eq!(rows[0], ["VERSION", "PUSHED_AT", "LATEST"]);
    assert_eq!(
        (rows[1][0].as_str(), rows[1][2].as_str()),
        ("1.0.0", "yes"),
        "{}",
        shown(&table)
    );

    let json = run(sessionctl(&api, "dev:alice", &["versions", "-o", "json"])).await;
    assert_eq!(json.status.code(), Some(0), "{}", shown(&json));
    let answer: Value = serde_json::from_slice(&json.stdout).expect("versions prints JSON");
    assert_eq!(answer["listed"], true, "{answer}");
    assert_eq!(answer["versions"][0]["version"], "1.0.0", "{answer}");
    assert_eq!(answer["versions"][0]["pushed_at"], rows[1][1].as_str());
    assert_eq!(answer["versions"].as_array().map(Vec::len), Some(1));
}
