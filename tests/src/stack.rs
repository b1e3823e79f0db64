//! The stack's processes: starting the emulator, the provisioning and the functions
//! ([`Stack::start_with`]), calling them ([`Stack::invoke`], [`Stack::http`]), their
//! logs, and stopping everything when the stack is dropped.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use session_core::config::AccessMode;

use crate::{api_gateway, function_timeout, lambda, repo_root, LocalGateway, Tools};
use crate::{FUNCTIONS, HARNESS_APP};

/// Instances of each function by default, so that concurrent executions really run
/// concurrently.
const INSTANCES: usize = 2;

/// What `tests/harness/provision.py` created.
#[derive(Clone, Debug, Deserialize)]
pub struct StackInfo {
    pub endpoint: String,
    pub region: String,
    pub cluster: String,
    pub cluster_arn: String,
    pub file_system_id: String,
    pub registry: String,
    pub sessions_table: String,
    pub users_table: String,
    pub state_machine_arn: String,
    pub events_queue_url: String,
    pub function_arns: HashMap<String, String>,
    pub function_env: HashMap<String, String>,
    pub subnets: Vec<String>,
    pub security_group: String,
}

#[derive(Default)]
pub struct StackOptions {
    /// Functions whose binaries are not started with the stack (invocations of them
    /// wait until [`Stack::start_function`]).
    pub held_back: Vec<&'static str>,
    /// Extra environment for every function (e.g. `MAX_SESSIONS_PER_USER`).
    pub env: Vec<(&'static str, String)>,
    /// The AWS emulator's port; a free one when not given.
    pub moto_port: Option<u16>,
    /// The HTTP API's port (see [`gateway`]); a free one when not given.
    pub api_port: Option<u16>,
    /// Users reach their sessions through the session gateway, behind a local stand-in
    /// for the load balancer (the product's default, `ACCESS_MODE=gateway`), instead of
    /// on their tasks' public IPs (`direct`).
    pub gateway: bool,
    /// The load balancer's port in gateway mode; a free one when not given.
    pub load_balancer_port: Option<u16>,
    /// The network the emulator gives tasks their private addresses from, for a test
    /// of more tasks than a /24 holds whose tasks serve nothing (no pump); by default
    /// a loopback /24 of the stack's own, where the pump can serve each task's ports.
    pub task_network: Option<String>,
    /// Processes (Lambda's execution environments) of each function; two when not
    /// given, so that concurrent executions really run concurrently.
    pub instances: Option<usize>,
}

pub struct Stack {
    pub info: StackInfo,
    /// AWS configuration pointed at the emulator.
    pub sdk: aws_config::SdkConfig,
    pub ddb: aws_sdk_dynamodb::Client,
    pub ecs: aws_sdk_ecs::Client,
    pub ec2: aws_sdk_ec2::Client,
    pub efs: aws_sdk_efs::Client,
    pub sfn: aws_sdk_sfn::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub(crate) tools: Tools,
    pub(crate) dir: tempfile::TempDir,
    env: Vec<(&'static str, String)>,
    /// How users reach sessions: the functions' `ACCESS_MODE`.
    pub access_mode: AccessMode,
    /// In gateway mode: the session gateway and the load balancer in front of it.
    pub gateway: Option<LocalGateway>,
    /// The HTTP API in front of the `api` function.
    pub api_gateway: api_gateway::ApiGateway,
    /// The Lambda service running the functions.
    pub lambda: lambda::Lambda,
    moto: Mutex<Option<Child>>,
    /// Held while the stack lives: its port number names the stack's task addresses.
    _address_block: TcpListener,
    instances: usize,
}

impl Stack {
    pub async fn start() -> Self {
        Self::start_with(StackOptions::default()).await
    }

    pub async fn start_with(options: StackOptions) -> Self {
        let tools = Tools::from_env();
        let dir = tempfile::tempdir().expect("a temporary directory");
        if let Some(port) = options.moto_port {
            assert!(
                TcpListener::bind(("127.0.0.1", port)).is_ok(),
                "port {port} on 127.0.0.1 is already in use: stop what listens there first"
            );
        }
        // A port held for the stack's life names its loopback /24 of task addresses:
        // two live listeners never share a port, so two stacks never share an address.
        // (Every server below binds its own port, never one picked and freed earlier:
        // in between, any outgoing connection of a parallel test may take it.)
        let address_block = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let address_block_port = address_block.local_addr().expect("its address").port();
        let lambda = lambda::Lambda::start(
            FUNCTIONS
                .iter()
                .map(|f| (f.to_string(), function_timeout(f))),
            dir.path().join("logs"),
        )
        .expect("start the local Lambda service");
        let lambda_port = lambda.port;
        let api_gateway =
            api_gateway::ApiGateway::start(options.api_port.unwrap_or(0), lambda.invoker())
                .unwrap_or_else(|e| panic!("{e}"));

        // Bound now, served once the gateway is up: the functions' SESSION_DOMAIN names it.
        let load_balancer_listener = options.gateway.then(|| {
            let port = options.load_balancer_port.unwrap_or(0);
            TcpListener::bind(("127.0.0.1", port))
                .unwrap_or_else(|e| panic!("the load balancer's port {port}: {e}"))
        });
        let (access_mode, access_env) = if let Some(listener) = &load_balancer_listener {
            let port = listener.local_addr().expect("its address").port();
            (
                AccessMode::Gateway,
                vec![
                    ("ACCESS_MODE", "gateway".to_owned()),
                    ("SESSION_DOMAIN", format!("localhost:{port}")),
                    ("SESSION_URL_SCHEME", "http".to_owned()),
                ],
            )
        } else {
            (
                AccessMode::Direct,
                vec![("ACCESS_MODE", "direct".to_owned())],
            )
        };
        let fault_file = dir.path().join("faults.json");
        let mut moto = Command::new(&tools.python)
            .arg(repo_root().join("tests/harness/moto_server.py"))
            .args(["--host", "127.0.0.1", "--port"])
            .arg(options.moto_port.unwrap_or(0).to_string())
            .arg("--lambda-endpoint")
            .arg(format!("http://127.0.0.1:{lambda_port}"))
            .arg("--fault-file")
            .arg(&fault_file)
            .arg("--task-addresses")
            .arg(
                options
                    .task_network
                    .clone()
                    .unwrap_or_else(|| task_addresses(address_block_port)),
            )
            .stdout(Stdio::piped())
            .stderr(log_file(dir.path(), "moto"))
            .spawn()
            .expect("start the moto server");
        let mut ready = String::new();
        let mut moto_out = BufReader::new(moto.stdout.take().expect("moto stdout"));
        moto_out
            .read_line(&mut ready)
            .expect("read moto's first line");
        let moto_port = ready
            .trim_end()
            .strip_prefix("moto ready on 127.0.0.1:")
            .and_then(|port| port.parse::<u16>().ok())
            .unwrap_or_else(|| {
                let _ = moto.wait();
                panic!(
                    "moto did not start ({ready:?}); its log:\n{}",
                    log_tail(dir.path(), "moto")
                )
            });
        // Keep draining moto's stdout so that it never writes to a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut moto_out, &mut std::io::sink()));

        let endpoint = format!("http://127.0.0.1:{moto_port}");
        let stack_json = dir.path().join("stack.json");
        let provisioned = Command::new(&tools.python)
            .arg(repo_root().join("tests/harness/provision.py"))
            .args(["--endpoint", &endpoint, "--out"])
            .arg(&stack_json)
            .output()
            .expect("run provision.py");
        assert!(
            provisioned.status.success(),
            "provisioning failed: {}",
            String::from_utf8_lossy(&provisioned.stderr)
        );
        let info: StackInfo =
            serde_json::from_slice(&std::fs::read(&stack_json).expect("stack.json"))
                .expect("stack.json parses");

        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .app_name(aws_config::AppName::new(HARNESS_APP).expect("a valid app name"))
            .endpoint_url(&endpoint)
            .region(aws_config::Region::new(info.region.clone()))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "testing", "testing", None, None, "tests",
            ))
            .load()
            .await;
        let stack = Self {
            ddb: aws_sdk_dynamodb::Client::new(&sdk),
            ecs: aws_sdk_ecs::Client::new(&sdk),
            ec2: aws_sdk_ec2::Client::new(&sdk),
            efs: aws_sdk_efs::Client::new(&sdk),
            sfn: aws_sdk_sfn::Client::new(&sdk),
            sqs: aws_sdk_sqs::Client::new(&sdk),
            sdk,
            info,
            tools,
            dir,
            env: access_env.into_iter().chain(options.env).collect(),
            access_mode,
            gateway: None,
            api_gateway,
            lambda,
            moto: Mutex::new(Some(moto)),
            _address_block: address_block,
            instances: options.instances.unwrap_or(INSTANCES),
        };
        let mut stack = stack;
        if let Some(listener) = load_balancer_listener {
            stack.gateway = Some(
                LocalGateway::start(&stack, listener)
                    .await
                    .unwrap_or_else(|e| panic!("start the session gateway: {e}")),
            );
        }
        for function in FUNCTIONS.iter().filter(|f| !options.held_back.contains(f)) {
            stack.start_function(function);
        }
        stack
    }

    /// The emulator's process id, while it runs.
    pub fn moto_pid(&self) -> Option<u32> {
        self.moto.lock().unwrap().as_ref().map(Child::id)
    }

    /// The environment every function runs with: the stack's, then the test's own.
    pub fn function_env(&self) -> HashMap<String, String> {
        self.info
            .function_env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .chain(self.env.iter().map(|(k, v)| (k.to_string(), v.clone())))
            .collect()
    }

    /// Starts the processes of one function in the Lambda service.
    pub fn start_function(&self, function: &str) {
        let env = self.function_env().into_iter().collect();
        self.lambda.deploy(
            function,
            lambda::FunctionSpec {
                binary: self.tools.functions_dir.join(function),
                env,
                instances: self.instances,
            },
        );
    }

    /// Invokes a function the way EventBridge would (synchronously, waiting at most its
    /// timeout and a little more). Returns the function's answer or its error
    /// document; null when the invocation did not end.
    pub async fn invoke(&self, function: &str, payload: &Value) -> Value {
        let outcome = self
            .lambda
            .invoker()
            .invoke(
                function,
                payload.to_string().into(),
                function_timeout(function) + Duration::from_secs(5),
            )
            .await;
        match outcome {
            Ok(lambda::Outcome::Response(body) | lambda::Outcome::Error(body)) => {
                serde_json::from_slice(&body).unwrap_or(Value::Null)
            }
            Err(_) => Value::Null,
        }
    }

    /// Calls the HTTP API as API Gateway's clients do: `token` is sent as a bearer
    /// token (`dev:<user>` is the development identity, see [`gateway`]). Returns the
    /// status, the JSON body (null when there is none) and the headers.
    pub async fn http(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (u16, Value, HashMap<String, String>) {
        let url = format!("{}{path}", self.api_gateway.url());
        let (method, token) = (method.to_owned(), token.map(str::to_owned));
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        tokio::task::spawn_blocking(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .allow_non_standard_methods(true)
                .build()
                .into();
            let mut request = ureq::http::Request::builder()
                .method(method.as_str())
                .uri(&url);
            if let Some(token) = &token {
                request = request.header("authorization", format!("Bearer {token}"));
            }
            for (k, v) in &headers {
                request = request.header(k, v);
            }
            let payload = body.map(|b| b.to_string()).unwrap_or_default();
            let request = request
                .header("content-type", "application/json")
                .body(payload)
                .expect("a request");
            let mut response = agent.run(request).expect("the API answers");
            let status = response.status().as_u16();
            let headers = response
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
                .collect();
            let text = response.body_mut().read_to_string().unwrap_or_default();
            let json = serde_json::from_str(&text).unwrap_or(Value::Null);
            (status, json, headers)
        })
        .await
        .expect("request thread")
    }

    /// Sends raw bytes to the HTTP API, as a client that may not speak HTTP would, and
    /// returns the status and body of its answer.
    pub fn raw_http(&self, request: &[u8]) -> (u16, String) {
        let mut stream =
            std::net::TcpStream::connect(("127.0.0.1", self.api_gateway.port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(40)))
            .expect("a read timeout");
        // The server may answer and close before it has read everything we send.
        let _ = std::io::Write::write_all(&mut stream, request);
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        let text = String::from_utf8_lossy(&answer).into_owned();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    /// What every instance of a function wrote to stdout.
    pub fn function_stdout(&self, function: &str) -> String {
        (0..INSTANCES)
            .filter_map(|i| {
                std::fs::read_to_string(self.dir.path().join(format!("logs/{function}.{i}.log")))
                    .ok()
            })
            .collect()
    }

    /// Where the stack's logs are.
    pub fn logs_dir(&self) -> PathBuf {
        self.dir.path().join("logs")
    }

    /// Prints the logs of every process of the stack (on failure).
    pub fn dump_logs(&self) {
        let Ok(entries) = std::fs::read_dir(self.dir.path().join("logs")) else {
            return;
        };
        for entry in entries.flatten() {
            let mut text = String::new();
            if std::fs::File::open(entry.path())
                .and_then(|mut f| f.read_to_string(&mut text))
                .is_ok()
                && !text.is_empty()
            {
                let tail: String = text
                    .chars()
                    .rev()
                    .take(6000)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                eprintln!(
                    "----- {} -----\n{tail}",
                    entry.file_name().to_string_lossy()
                );
            }
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        // Functions and the gateway first, then the emulator they call.
        self.lambda.stop();
        if let Some(gateway) = self.gateway.take() {
            gateway.stop();
        }
        if let Some(mut moto) = self.moto.lock().unwrap().take() {
            let _ = moto.kill();
            let _ = moto.wait();
        }
    }
}

/// The /24 of the loopback network that the tasks of the stack holding `port` take
/// their addresses from: one per held port, so stacks running side by side never
/// share an address.
fn task_addresses(port: u16) -> String {
    let [high, low] = port.to_be_bytes();
    format!("127.{high}.{low}.0/24")
}

/// A port on 127.0.0.1 where connections are refused, for as long as it is held: bound
/// but never listening, so no other server (of this test or a parallel one) takes it.
pub struct ClosedPort {
    _socket: socket2::Socket,
    pub port: u16,
}

impl ClosedPort {
    pub fn new() -> Self {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("a socket");
        socket
            .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .expect("bind a loopback port");
        let port = socket
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .expect("its address")
            .port();
        Self {
            _socket: socket,
            port,
        }
    }
}

impl Default for ClosedPort {
    fn default() -> Self {
        Self::new()
    }
}

/// The last lines of the log `name` of the stack in `dir` (for a failure message).
pub(crate) fn log_tail(dir: &Path, name: &str) -> String {
    let text = std::fs::read_to_string(dir.join("logs").join(format!("{name}.log")))
        .unwrap_or_else(|e| format!("(no log: {e})"));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

pub(crate) fn log_file(dir: &Path, name: &str) -> Stdio {
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).expect("log directory");
    std::fs::File::create(logs.join(format!("{name}.log")))
        .expect("log file")
        .into()
}
