//! The local stack survives what AWS survives: functions that live as long as the
//! stack and are replaced when they die, API Gateway's own limits in front of the
//! `api` function, and `make local-up` / `make local-down` that mean it.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use session_core::session::{SessionId, Status};
use session_tests::pump::{self, PumpSettings};
use session_tests::{repo_root, Stack, StackOptions, FUNCTIONS};

async fn start_via_api(stack: &Stack, token: &str) -> SessionId {
    let (status, body, _) = stack
        .http("POST", "/sessions", Some(token), Some(json!({})), &[])
        .await;
    assert_eq!(status, 202, "{body}");
    SessionId::parse(body["session_id"].as_str().expect("a session id")).expect("valid id")
}

async fn status_via_api(stack: &Stack, token: &str, id: &SessionId) -> Value {
    let (status, body, _) = stack
        .http("GET", &format!("/sessions/{id}"), Some(token), None, &[])
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stack_left_idle_for_three_minutes_still_starts_a_session_within_seconds() {
    let stack = Arc::new(Stack::start().await);
    let pump = pump::spawn(stack.clone(), PumpSettings::default());
    stack.put_user("idle-ida", true, None).await;

    // Past the minute after which the emulator this stack ran before ended every
    // function's poll, and past two of the reaper's scheduled runs.
    tokio::time::sleep(Duration::from_secs(180)).await;

    let asked = Instant::now();
    let id = start_via_api(&stack, "dev:idle-ida").await;
    let running = stack
        .eventually("the session to run", Duration::from_secs(30), || async {
            let body = status_via_api(&stack, "dev:idle-ida", &id).await;
            (body["status"] == "running").then_some(body)
        })
        .await;
    let took = asked.elapsed();
    assert!(running["urls"]["api"].is_string(), "{running}");
    assert!(took < Duration::from_secs(15), "running after {took:?}");
    // The functions lived through the idle minutes: none had to be replaced.
    assert!(
        stack.lambda.restarts().is_empty(),
        "{:?}",
        stack.lambda.restarts()
    );
    pump.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_function_process_killed_mid_invocation_is_replaced_and_its_session_ends_with_nothing_left(
) {
    let stack = Stack::start_with(StackOptions {
        // The RunTask in flight when Launch dies still starts its task, which no
        // session then owns: the reaper's orphan sweep must be free to stop it.
        env: vec![("ORPHAN_GRACE_S", "0".into())],
        ..Default::default()
    })
    .await;
    stack.put_user("crash-cal", true, Some(1)).await;
    stack.set_run_task_delay(Duration::from_secs(3));
    let (id, execution) = stack
        .start_session(json!({ "user_id": "crash-cal", "version": "latest" }))
        .await;
    let busy = stack
        .eventually("Launch inside RunTask", Duration::from_secs(30), || async {
            stack
                .run_task_entered()
                .then(|| stack.lambda.busy_instance("launch"))
                .flatten()
        })
        .await;
    let killed = stack.lambda.kill("launch", busy).expect("a launch process");

    // Back within seconds, as Lambda starts a new execution environment.
    stack
        .eventually("a new launch process", Duration::from_secs(5), || async {
            let pids = stack.lambda.pids("launch");
            (pids.len() == 2 && !pids.contains(&killed)).then_some(())
        })
        .await;
    let restarts = stack.lambda.restarts();
    assert_eq!(restarts.len(), 1, "{restarts:?}");
    assert_eq!(
        (restarts[0].function.as_str(), restarts[0].instance),
        ("launch", busy)
    );

    // The invocation failed as Lambda reports a runtime that exits; the state
    // machine's Catch compensated.
    stack.execution_ended(&execution).await;
    let session = stack
        .session_where(&id, "the session to end", |s| s.status.is_terminal())
        .await;
    assert_eq!(session.status, Status::Failed, "{session:?}");
    let history = stack
        .sfn
        .get_execution_history()
        .execution_arn(&execution)
        .max_results(1000)
        .send()
        .await
        .expect("history");
    let errors: Vec<&str> = history
        .events()
        .iter()
        .filter_map(|e| {
            e.task_failed_event_details()
                .and_then(|d| d.error())
                .or_else(|| {
                    e.lambda_function_failed_event_details()
                        .and_then(|d| d.error())
                })
        })
        .collect();
    assert!(errors.contains(&"Runtime.ExitError"), "{errors:?}");

    // The RunTask the dead Launch was inside still starts its task. Compensate stops it
    // if it came up in time; if not, it is an orphan and one reaper run stops it.
    stack.clear_faults();
    stack
        .eventually(
            "the task of the dead Launch",
            Duration::from_secs(30),
            || async { (!stack.all_tasks().await.is_empty()).then_some(()) },
        )
        .await;
    stack.reap().await;
    stack
        .eventually("no running task", Duration::from_secs(15), || async {
            stack.running_tasks().await.is_empty().then_some(())
        })
        .await;
    assert!(stack.active_slots("crash-cal").await.is_empty());
    // And the user can start again.
    let (again, _) = stack
        .start_session(json!({ "user_id": "crash-cal", "version": "latest" }))
        .await;
    stack
        .session_where(&again, "the new session's task", |s| s.task_arn.is_some())
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_past_api_gateways_limits_get_its_answer_and_the_stack_keeps_serving() {
    let stack = Stack::start().await;
    stack.put_user("lim-lou", true, None).await;
    let token = "Authorization: Bearer dev:lim-lou\r\n";
    let long = "a".repeat(100 * 1024);
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "100 KB path",
            format!("GET /sessions/{long} HTTP/1.1\r\nHost: x\r\n{token}\r\n").into_bytes(),
            414,
        ),
        (
            "100 KB query string",
            format!("GET /sessions?limit={long} HTTP/1.1\r\nHost: x\r\n{token}\r\n").into_bytes(),
            414,
        ),
        (
            "64 KB of headers",
            format!(
                "GET /sessions HTTP/1.1\r\nHost: x\r\n{token}{}\r\n",
                (0..64)
                    .map(|i| format!("x-filler-{i}: {}\r\n", "b".repeat(1024)))
                    .collect::<String>()
            )
            .into_bytes(),
            431,
        ),
        (
            "raw UTF-8 in the path",
            format!("GET /sessions/élève HTTP/1.1\r\nHost: x\r\n{token}\r\n").into_bytes(),
            400,
        ),
        (
            "not HTTP",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n".to_vec(),
            400,
        ),
    ];
    for (what, request, expected) in &cases {
        let (status, body) = stack.raw_http(request);
        assert_eq!(status, *expected, "{what}: {body}");
        let body: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{what}: {body}"));
        assert!(body["message"].is_string(), "{what}: {body}");
    }

    // Raw UTF-8 in a header is HTTP: the request is served, the user is "élève".
    stack.put_user("élève", true, None).await;
    let request = "GET /sessions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer dev:élève\r\n\r\n";
    let (status, body) = stack.raw_http(request.as_bytes());
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).expect("JSON");
    assert!(body["sessions"].is_array(), "{body}");

    // Behind API Gateway's limits, the function itself answers what it cannot build as
    // a request with a 400, never a crash.
    let mut event = session_tests::http_api::fixture();
    event["rawPath"] = json!(format!("/sessions/{long}"));
    let answer = stack.invoke("api", &event).await;
    assert_eq!(answer["statusCode"], 400, "{answer}");

    // The stack keeps serving, and no function process died.
    let (status, body, _) = stack
        .http("GET", "/sessions", Some("dev:lim-lou"), None, &[])
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        stack.lambda.restarts().is_empty(),
        "{:?}",
        stack.lambda.restarts()
    );
    for function in FUNCTIONS {
        assert_eq!(stack.lambda.pids(function).len(), 2, "{function}");
    }
}

fn local_stack(command: &str) -> std::process::Output {
    Command::new("bash")
        .arg(repo_root().join("tools/local-stack.sh"))
        .arg(command)
        .output()
        .expect("run tools/local-stack.sh")
}

fn stack_processes() -> Vec<String> {
    let out = Command::new("pgrep")
        .args([
            "-f",
            "local-demo --keep-running|moto_server.py --host 127.0.0.1 --port 4566",
        ])
        .output()
        .expect("pgrep");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The process group of the stack `make local-up` started (its pid file).
fn local_stack_group() -> String {
    let tools = std::env::var_os("SESSION_TOOLS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var_os("HOME").expect("HOME"))
                .join(".cache/session-provisioner")
        });
    std::fs::read_to_string(tools.join("local/stack.pid"))
        .expect("the local stack's pid file")
        .trim()
        .to_owned()
}

/// The processes of a function binary in a process group.
fn processes_of(group: &str, function: &str) -> Vec<String> {
    let out = Command::new("pgrep")
        .args(["-g", group, "-x", function])
        .output()
        .expect("pgrep");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn local_up_answers_at_once_and_local_down_ends_every_process_even_with_a_function_hung() {
    // The stack of `make local-up`, on its fixed ports.
    let up = local_stack("up");
    assert!(
        up.status.success(),
        "{}{}",
        String::from_utf8_lossy(&up.stdout),
        String::from_utf8_lossy(&up.stderr)
    );
    let client: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let started = client
        .post("http://127.0.0.1:9000/sessions")
        .header("authorization", "Bearer dev:demo-user")
        .send_json(json!({}))
        .expect("the API answers");
    let status = started.status().as_u16();
    assert_eq!(status, 202, "the first start right after up");

    // A function that hangs (paused: it neither answers nor dies): the pump's next
    // invocation of it never ends by itself.
    let group = local_stack_group();
    let hung = processes_of(&group, "task-events");
    assert!(!hung.is_empty(), "task-events processes of the local stack");
    for pid in &hung {
        Command::new("kill")
            .args(["-STOP", pid])
            .status()
            .expect("kill -STOP");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    let down = local_stack("down");
    assert!(
        down.status.success(),
        "{}{}",
        String::from_utf8_lossy(&down.stdout),
        String::from_utf8_lossy(&down.stderr)
    );
    assert_eq!(stack_processes(), Vec::<String>::new());
    assert_eq!(processes_of(&group, "task-events"), Vec::<String>::new());

    // And the next `up` finds its ports free.
    let again = local_stack("up");
    let again_ok = again.status.success();
    let down = local_stack("down");
    assert!(
        again_ok,
        "{}{}",
        String::from_utf8_lossy(&again.stdout),
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(down.status.success());
}
