//! The local stand-in for the Lambda service: the Invoke API that moto's Step Functions
//! and the harness call, the Runtime API that the real function binaries poll, and a
//! supervisor that keeps each function's processes alive as Lambda keeps its execution
//! environments.
//!
//! Why not `cargo lambda watch`, which this harness ran before: its `--timeout` is a
//! timeout layer over every route, the runtime's long poll for its next invocation
//! included, so a function idle for that long got a 408 without a request id and
//! `lambda_runtime` panicked (`missing lambda-runtime-aws-request-id header`); without
//! `--timeout` a hung invocation waits for ever; and a process that dies takes the
//! invocation it held with it, unanswered. Lambda does none of that. Here:
//! - the poll for the next invocation never times out;
//! - an invocation running past its function's timeout kills the process and fails
//!   as `Sandbox.Timedout`, as on `provided.al2023`;
//! - a process that exits fails the invocation it held as `Runtime.ExitError` and is
//!   replaced by a new one (with a growing delay while it keeps failing at start);
//! - function errors answer as the Invoke API does: 200 and `X-Amz-Function-Error`.
//!
//! Each process polls under its own path (`/rt/{function}/{instance}/{generation}`),
//! so an invocation is only ever handed to the process that is alive for it.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;
use tokio::sync::{oneshot, Notify};

/// Synchronous invocation payloads, request and response: Lambda's 6 MB.
const MAX_PAYLOAD: usize = 6 * 1024 * 1024;
/// How often the supervisor looks at the processes.
const SUPERVISE_EVERY: Duration = Duration::from_millis(50);
/// A process that dies sooner than this after its start is restarted after a delay
/// that doubles up to [`MAX_RESTART_DELAY`], so a function that cannot start does not
/// spin.
const QUICK_EXIT: Duration = Duration::from_secs(2);
const FIRST_RESTART_DELAY: Duration = Duration::from_millis(200);
const MAX_RESTART_DELAY: Duration = Duration::from_secs(5);

/// How to run one function.
#[derive(Clone, Debug)]
pub struct FunctionSpec {
    pub binary: PathBuf,
    pub env: Vec<(String, String)>,
    /// Concurrent processes (Lambda's execution environments) of the function.
    pub instances: usize,
}

/// What an invocation came to.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Response(Bytes),
    /// A function error: the runtime's `{"errorType", "errorMessage"}` document.
    Error(Bytes),
}

impl Outcome {
    fn error(error_type: &str, message: String) -> Self {
        Self::Error(Bytes::from(
            json!({ "errorType": error_type, "errorMessage": message }).to_string(),
        ))
    }
}

/// Why an invocation got no outcome.
#[derive(Clone, Debug, PartialEq)]
pub enum InvokeError {
    NoSuchFunction(String),
    /// The caller's own wait ran out (the invocation may still run, as on Lambda).
    TimedOut,
    /// The service was stopped before the invocation ended.
    Stopped,
}

impl std::fmt::Display for InvokeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoSuchFunction(name) => write!(f, "Function not found: {name}"),
            Self::TimedOut => f.write_str("the invocation did not end in time"),
            Self::Stopped => f.write_str("the Lambda service stopped"),
        }
    }
}

/// A process of a function that exited, and why (the figures of the soak run).
#[derive(Clone, Debug)]
pub struct Restart {
    pub function: String,
    pub instance: usize,
    pub why: String,
}

struct Invocation {
    request_id: String,
    payload: Bytes,
    reply: oneshot::Sender<Outcome>,
}

struct InFlight {
    request_id: String,
    deadline: Instant,
    reply: oneshot::Sender<Outcome>,
}

struct Instance {
    /// Grows with every process started for this slot; a poll names the generation
    /// it belongs to.
    generation: u64,
    child: Option<Child>,
    started: Instant,
    in_flight: Option<InFlight>,
    /// Set when the supervisor killed the process for running past its timeout.
    timed_out: bool,
    restart_at: Option<Instant>,
    restart_delay: Duration,
}

#[derive(Default)]
struct FunctionState {
    spec: Option<FunctionSpec>,
    queue: VecDeque<Invocation>,
    instances: Vec<Instance>,
}

struct Function {
    name: String,
    timeout: Duration,
    state: Mutex<FunctionState>,
    arrived: Notify,
}

struct Shared {
    port: u16,
    logs: PathBuf,
    functions: HashMap<String, Function>,
    stopping: AtomicBool,
    requests: AtomicU64,
    restarts: Mutex<Vec<Restart>>,
}

/// Invokes functions of a running [`Lambda`].
#[derive(Clone)]
pub struct Invoker(Arc<Shared>);

impl Invoker {
    /// Invokes a function synchronously, as the Invoke API does, waiting at most
    /// `within` for its outcome.
    pub async fn invoke(
        &self,
        name: &str,
        payload: Bytes,
        within: Duration,
    ) -> Result<Outcome, InvokeError> {
        match tokio::time::timeout(within, invoke(&self.0, name, payload)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(InvokeError::TimedOut),
        }
    }
}

/// The running service. Dropping it stops every process it started.
pub struct Lambda {
    pub port: u16,
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Lambda {
    /// Serves on 127.0.0.1 (a free port) the functions named, each with its timeout.
    /// No process runs until [`Lambda::deploy`]; invocations wait in its queue.
    pub fn start(
        functions: impl IntoIterator<Item = (String, Duration)>,
        logs: PathBuf,
    ) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("lambda")
            .enable_all()
            .build()?;
        // Bound here, served on the service's own runtime: the caller may be inside
        // another runtime, where blocking on this one is not allowed.
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        std::fs::create_dir_all(&logs)?;
        let shared = Arc::new(Shared {
            port,
            logs,
            functions: functions
                .into_iter()
                .map(|(name, timeout)| {
                    let function = Function {
                        name: name.clone(),
                        timeout,
                        state: Mutex::default(),
                        arrived: Notify::new(),
                    };
                    (name, function)
                })
                .collect(),
            stopping: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            restarts: Mutex::default(),
        });
        runtime.spawn(serve(listener, shared.clone()));
        runtime.spawn(supervise(shared.clone()));
        Ok(Self {
            port,
            shared,
            runtime: Some(runtime),
        })
    }

    /// Starts the processes of a function.
    pub fn deploy(&self, name: &str, spec: FunctionSpec) {
        let function = self
            .shared
            .functions
            .get(name)
            .unwrap_or_else(|| panic!("no function {name}"));
        let mut state = function.state.lock().unwrap();
        for index in 0..spec.instances {
            let child = spawn(&self.shared, function, &spec, index, 0);
            state.instances.push(Instance {
                generation: 0,
                child: Some(child),
                started: Instant::now(),
                in_flight: None,
                timed_out: false,
                restart_at: None,
                restart_delay: FIRST_RESTART_DELAY,
            });
        }
        state.spec = Some(spec);
    }

    /// A handle that invokes the functions in process (API Gateway's and the
    /// harness's way in), usable from any tokio runtime.
    pub fn invoker(&self) -> Invoker {
        Invoker(self.shared.clone())
    }

    /// Kills a function's process as a crash would (SIGKILL). Returns its pid.
    pub fn kill(&self, name: &str, instance: usize) -> Option<u32> {
        let function = self.shared.functions.get(name)?;
        let mut state = function.state.lock().unwrap();
        let child = state.instances.get_mut(instance)?.child.as_mut()?;
        let pid = child.id();
        child.kill().ok()?;
        Some(pid)
    }

    /// The pid of each of a function's processes now alive.
    pub fn pids(&self, name: &str) -> Vec<u32> {
        let Some(function) = self.shared.functions.get(name) else {
            return Vec::new();
        };
        let mut state = function.state.lock().unwrap();
        state
            .instances
            .iter_mut()
            .filter_map(|i| i.child.as_mut())
            .filter_map(|c| matches!(c.try_wait(), Ok(None)).then(|| c.id()))
            .collect()
    }

    /// The process slot of the function that is running an invocation now, if any.
    pub fn busy_instance(&self, name: &str) -> Option<usize> {
        let function = self.shared.functions.get(name)?;
        let state = function.state.lock().unwrap();
        state.instances.iter().position(|i| i.in_flight.is_some())
    }

    /// Every process that exited so far, and why.
    pub fn restarts(&self) -> Vec<Restart> {
        self.shared.restarts.lock().unwrap().clone()
    }

    /// Stops every process, failing what they held.
    pub fn stop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        for function in self.shared.functions.values() {
            let mut state = function.state.lock().unwrap();
            for instance in &mut state.instances {
                if let Some(child) = instance.child.as_mut() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                instance.child = None;
                instance.in_flight = None;
            }
            state.queue.clear();
            drop(state);
            function.arrived.notify_waiters();
        }
        if let Some(runtime) = self.runtime.take() {
            // Not waiting: this may run inside another runtime (a test's).
            runtime.shutdown_background();
        }
    }
}

impl Drop for Lambda {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn(
    shared: &Shared,
    function: &Function,
    spec: &FunctionSpec,
    index: usize,
    generation: u64,
) -> Child {
    let log = |suffix: &str| -> Stdio {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(
                shared
                    .logs
                    .join(format!("{}.{index}{suffix}.log", function.name)),
            )
            .map(Stdio::from)
            .unwrap_or_else(|_| Stdio::null())
    };
    let runtime_api = format!(
        "http://127.0.0.1:{}/rt/{}/{index}/{generation}",
        shared.port, function.name
    );
    Command::new(&spec.binary)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("AWS_LAMBDA_RUNTIME_API", runtime_api)
        .env("AWS_LAMBDA_FUNCTION_NAME", &function.name)
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_LOG_LEVEL", "info")
        .stdin(Stdio::null())
        .stdout(log(""))
        .stderr(log(".err"))
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", spec.binary.display()))
}

async fn invoke(shared: &Shared, name: &str, payload: Bytes) -> Result<Outcome, InvokeError> {
    let function = shared
        .functions
        .get(name)
        .ok_or_else(|| InvokeError::NoSuchFunction(name.to_owned()))?;
    if shared.stopping.load(Ordering::SeqCst) {
        return Err(InvokeError::Stopped);
    }
    let (reply, outcome) = oneshot::channel();
    let request_id = request_id(shared);
    function.state.lock().unwrap().queue.push_back(Invocation {
        request_id,
        payload,
        reply,
    });
    function.arrived.notify_waiters();
    outcome.await.map_err(|_| InvokeError::Stopped)
}

fn request_id(shared: &Shared) -> String {
    let n = shared.requests.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        (nanos >> 32) as u32,
        (nanos >> 16) as u16,
        (nanos & 0xfff) as u16,
        (n >> 48) & 0xfff,
        n & 0xffff_ffff_ffff
    )
}

/// Looks after every process: ends invocations that ran past their timeout, and
/// replaces processes that exited, failing what they held.
async fn supervise(shared: Arc<Shared>) {
    loop {
        tokio::time::sleep(SUPERVISE_EVERY).await;
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        for function in shared.functions.values() {
            supervise_function(&shared, function);
        }
    }
}

fn supervise_function(shared: &Shared, function: &Function) {
    let now = Instant::now();
    let mut state = function.state.lock().unwrap();
    let Some(spec) = state.spec.clone() else {
        return;
    };
    let mut replaced = false;
    for (index, instance) in state.instances.iter_mut().enumerate() {
        if instance
            .in_flight
            .as_ref()
            .is_some_and(|f| now > f.deadline)
        {
            let held = instance.in_flight.take().expect("checked above");
            // Lambda ends the environment of a timed-out invocation.
            if let Some(child) = instance.child.as_mut() {
                let _ = child.kill();
            }
            instance.timed_out = true;
            let _ = held.reply.send(Outcome::error(
                "Sandbox.Timedout",
                format!(
                    "RequestId: {} Error: Task timed out after {:.2} seconds",
                    held.request_id,
                    function.timeout.as_secs_f64()
                ),
            ));
        }
        if let Some(child) = instance.child.as_mut() {
            let Ok(Some(status)) = child.try_wait() else {
                continue;
            };
            instance.child = None;
            let why = if instance.timed_out {
                "killed after its invocation timed out".to_owned()
            } else {
                format!("exited: {status}")
            };
            instance.timed_out = false;
            if let Some(held) = instance.in_flight.take() {
                let _ = held.reply.send(Outcome::error(
                    "Runtime.ExitError",
                    format!(
                        "RequestId: {} Error: Runtime exited with error: {status}",
                        held.request_id
                    ),
                ));
            }
            let lived = now - instance.started;
            instance.restart_delay = if lived < QUICK_EXIT {
                (instance.restart_delay * 2).min(MAX_RESTART_DELAY)
            } else {
                FIRST_RESTART_DELAY
            };
            let delay = if lived < QUICK_EXIT {
                instance.restart_delay
            } else {
                Duration::ZERO
            };
            instance.restart_at = Some(now + delay);
            // Written where the stack's own log goes: a person watching it sees why.
            eprintln!(
                "lambda: {}.{index} {why}; a new process starts in {delay:?}",
                function.name
            );
            shared.restarts.lock().unwrap().push(Restart {
                function: function.name.clone(),
                instance: index,
                why,
            });
        }
        if instance.child.is_none() && instance.restart_at.is_some_and(|at| now >= at) {
            instance.generation += 1;
            instance.child = Some(spawn(shared, function, &spec, index, instance.generation));
            instance.started = now;
            instance.restart_at = None;
            replaced = true;
        }
    }
    drop(state);
    if replaced {
        // Polls of the old generations give up and let the new processes take over.
        function.arrived.notify_waiters();
    }
}

async fn serve(listener: std::net::TcpListener, shared: Arc<Shared>) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(route(&shared, request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

type Answer = Response<Full<Bytes>>;

fn answer(status: StatusCode, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Answer {
    let mut response = Response::builder().status(status);
    for (name, value) in headers {
        response = response.header(*name, *value);
    }
    response
        .body(Full::new(body.into()))
        .expect("a valid response")
}

/// An error of the Lambda service itself, shaped as its APIs answer them.
fn service_error(status: StatusCode, kind: &str, message: &str) -> Answer {
    answer(
        status,
        &[
            ("content-type", "application/json"),
            ("x-amzn-errortype", kind),
        ],
        json!({ "Type": "User", "message": message }).to_string(),
    )
}

async fn read_body(request: Request<Incoming>) -> Result<Bytes, Answer> {
    match Limited::new(request.into_body(), MAX_PAYLOAD)
        .collect()
        .await
    {
        Ok(body) => Ok(body.to_bytes()),
        Err(_) => Err(service_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestTooLargeException",
            "Request must be smaller than 6291456 bytes for the InvokeFunction operation",
        )),
    }
}

async fn route(shared: &Shared, request: Request<Incoming>) -> Answer {
    let path = request.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (request.method(), segments.as_slice()) {
        (&Method::POST, ["2015-03-31", "functions", name, "invocations"]) => {
            let name = function_name(name).to_owned();
            let asynchronous = request
                .headers()
                .get("x-amz-invocation-type")
                .is_some_and(|t| t == "Event");
            let payload = match read_body(request).await {
                Ok(payload) => payload,
                Err(refused) => return refused,
            };
            if !shared.functions.contains_key(&name) {
                return service_error(
                    StatusCode::NOT_FOUND,
                    "ResourceNotFoundException",
                    &InvokeError::NoSuchFunction(name).to_string(),
                );
            }
            if asynchronous {
                let shared_name = name.clone();
                // Lambda queues an asynchronous invocation and answers at once.
                let (reply, _) = oneshot::channel();
                let function = &shared.functions[&shared_name];
                function.state.lock().unwrap().queue.push_back(Invocation {
                    request_id: request_id(shared),
                    payload,
                    reply,
                });
                function.arrived.notify_waiters();
                return answer(StatusCode::ACCEPTED, &[], Bytes::new());
            }
            match invoke(shared, &name, payload).await {
                Ok(Outcome::Response(body)) => answer(
                    StatusCode::OK,
                    &[("x-amz-executed-version", "$LATEST")],
                    body,
                ),
                Ok(Outcome::Error(body)) => answer(
                    StatusCode::OK,
                    &[
                        ("x-amz-executed-version", "$LATEST"),
                        ("x-amz-function-error", "Unhandled"),
                        ("content-type", "application/json"),
                    ],
                    body,
                ),
                Err(e) => service_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "ServiceException",
                    &e.to_string(),
                ),
            }
        }
        (method, ["rt", name, index, generation, "2018-06-01", "runtime", rest @ ..]) => {
            let (Some(function), Ok(index), Ok(generation)) = (
                shared.functions.get(*name),
                index.parse::<usize>(),
                generation.parse::<u64>(),
            ) else {
                return service_error(StatusCode::NOT_FOUND, "NotFound", "no such runtime");
            };
            match (method, rest) {
                (&Method::GET, ["invocation", "next"]) => next(function, index, generation).await,
                (&Method::POST, ["invocation", id, outcome @ ("response" | "error")]) => {
                    let id = (*id).to_owned();
                    let is_error = *outcome == "error";
                    let body = match read_body(request).await {
                        Ok(body) => body,
                        Err(refused) => return refused,
                    };
                    let outcome = if is_error {
                        Outcome::Error(body)
                    } else {
                        Outcome::Response(body)
                    };
                    complete(function, index, &id, outcome)
                }
                (&Method::POST, ["init", "error"]) => {
                    let body = read_body(request).await.unwrap_or_default();
                    eprintln!(
                        "lambda: {}.{index} failed to initialize: {}",
                        function.name,
                        String::from_utf8_lossy(&body)
                    );
                    answer(StatusCode::ACCEPTED, &[], r#"{"status":"OK"}"#)
                }
                _ => service_error(StatusCode::NOT_FOUND, "NotFound", "no such runtime route"),
            }
        }
        _ => service_error(
            StatusCode::NOT_FOUND,
            "UnknownOperationException",
            "Unknown operation",
        ),
    }
}

/// `my-function`, `my-function:$LATEST` or an ARN → `my-function`.
fn function_name(raw: &str) -> &str {
    match raw.strip_prefix("arn:") {
        Some(arn) => arn.split(':').nth(5).unwrap_or(raw),
        None => raw.split(':').next().unwrap_or(raw),
    }
}

/// The Runtime API's long poll: waits, without a time limit, for the next invocation
/// and hands it to the process of this generation, if it is still the live one.
async fn next(function: &Function, index: usize, generation: u64) -> Answer {
    loop {
        let arrived = function.arrived.notified();
        tokio::pin!(arrived);
        arrived.as_mut().enable();
        {
            let mut state = function.state.lock().unwrap();
            let live = state
                .instances
                .get(index)
                .is_some_and(|i| i.generation == generation && i.child.is_some());
            if !live {
                return service_error(
                    StatusCode::GONE,
                    "Runtime.Replaced",
                    "this process is no longer the function's",
                );
            }
            if let Some(invocation) = state.queue.pop_front() {
                let deadline = Instant::now() + function.timeout;
                let deadline_ms = (SystemTime::now() + function.timeout)
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis()
                    .to_string();
                let arn = format!(
                    "arn:aws:lambda:us-east-1:123456789012:function:{}",
                    function.name
                );
                state.instances[index].in_flight = Some(InFlight {
                    request_id: invocation.request_id.clone(),
                    deadline,
                    reply: invocation.reply,
                });
                return answer(
                    StatusCode::OK,
                    &[
                        ("lambda-runtime-aws-request-id", &invocation.request_id),
                        ("lambda-runtime-deadline-ms", &deadline_ms),
                        ("lambda-runtime-invoked-function-arn", &arn),
                        ("content-type", "application/json"),
                    ],
                    invocation.payload,
                );
            }
        }
        arrived.await;
    }
}

fn complete(function: &Function, index: usize, request_id: &str, outcome: Outcome) -> Answer {
    let mut state = function.state.lock().unwrap();
    let held = state
        .instances
        .get_mut(index)
        .filter(|i| {
            i.in_flight
                .as_ref()
                .is_some_and(|f| f.request_id == request_id)
        })
        .and_then(|i| i.in_flight.take());
    match held {
        Some(held) => {
            let _ = held.reply.send(outcome);
            answer(StatusCode::ACCEPTED, &[], r#"{"status":"OK"}"#)
        }
        None => service_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestID",
            "no invocation in flight has this request id",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn functions_are_named_by_name_qualified_name_or_arn() {
        assert_eq!(function_name("launch"), "launch");
        assert_eq!(function_name("launch:$LATEST"), "launch");
        assert_eq!(
            function_name("arn:aws:lambda:us-east-1:123456789012:function:launch"),
            "launch"
        );
        assert_eq!(
            function_name("arn:aws:lambda:us-east-1:123456789012:function:launch:1"),
            "launch"
        );
    }

    #[test]
    fn request_ids_are_unique() {
        let shared = Shared {
            port: 0,
            logs: PathBuf::new(),
            functions: HashMap::new(),
            stopping: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            restarts: Mutex::default(),
        };
        let ids: std::collections::BTreeSet<String> =
            (0..1000).map(|_| request_id(&shared)).collect();
        assert_eq!(ids.len(), 1000);
    }
}
