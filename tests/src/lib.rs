//! A whole session stack on one machine, no AWS account: a moto server speaking the
//! real AWS wire protocols (Step Functions really executing `statemachine/`), the real
//! function binaries run by the local Lambda service ([`lambda`]), moto's Lambda
//! Invoke forwarded to it, and the local HTTP API ([`api_gateway`]). Each test gets
//! its own stack.

pub mod api_gateway;
pub mod definition;
pub mod faults;
pub mod http_api;
pub mod lambda;
pub mod load_balancer;
pub mod provider_schema;
pub mod pump;
pub mod rate_limits;
pub mod storm;
pub mod task_services;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sfn::types::ExecutionStatus;
use serde::Deserialize;
use serde_json::{json, Value};
use session_core::config::AccessMode;
use session_core::session::{Session, SessionId};

/// The functions, as named under `functions/`.
pub const FUNCTIONS: [&str; 8] = [
    "api",
    "authorize",
    "launch",
    "wait-for-ip",
    "record",
    "stop",
    "task-events",
    "reaper",
];
/// Instances of each function by default, so that concurrent executions really run
/// concurrently.
const INSTANCES: usize = 2;
/// The SDK app name of the harness's own AWS calls (the pump playing Fargate and
/// EventBridge, the tests looking at the state): the emulator's rate limits never
/// throttle them, as an account's quotas never see AWS's own work (`HARNESS_APP` in
/// `tests/harness/moto_server.py`).
pub const HARNESS_APP: &str = "session-harness";

/// The timeout Terraform gives a function (`timeout` in terraform/functions.tf; the
/// module's default is 30 s).
pub fn function_timeout(function: &str) -> Duration {
    Duration::from_secs(match function {
        "launch" => 60,
        "reaper" => 120,
        _ => 30,
    })
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the repository")
        .to_owned()
}

/// Where the pinned tools and the function binaries are.
#[derive(Clone, Debug)]
pub struct Tools {
    /// `SESSION_TOOLS_DIR`: what `tools/install.sh` installed.
    pub dir: PathBuf,
    pub python: PathBuf,
    pub functions_dir: PathBuf,
}

impl Tools {
    pub fn from_env() -> Self {
        let tools_dir = std::env::var_os("SESSION_TOOLS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
                    .join(".cache/session-provisioner")
            });
        let functions_dir = std::env::var_os("SESSION_FUNCTIONS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                std::env::var_os("CARGO_TARGET_DIR")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| repo_root().join("target"))
                    .join("debug")
            });
        let tools = Self {
            python: tools_dir.join("venv/bin/python"),
            dir: tools_dir,
            functions_dir,
        };
        assert!(
            tools.python.exists(),
            "python venv not found at {} (run `make tools`)",
            tools.python.display()
        );
        for f in FUNCTIONS {
            let bin = tools.functions_dir.join(f);
            assert!(
                bin.exists(),
                "function binary {} missing (run `cargo build --workspace`)",
                bin.display()
            );
        }
        tools
    }
}

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
    tools: Tools,
    dir: tempfile::TempDir,
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

    pub async fn put_user(&self, user_id: &str, authorized: bool, max_sessions: Option<u32>) {
        let mut request = self
            .ddb
            .put_item()
            .table_name(&self.info.users_table)
            .item("user_id", AttributeValue::S(user_id.into()))
            .item("authorized", AttributeValue::Bool(authorized))
            .item("email", AttributeValue::S(format!("{user_id}@example.com")));
        if let Some(max) = max_sessions {
            request = request.item("max_sessions", AttributeValue::N(max.to_string()));
        }
        request.send().await.expect("put user");
    }

    pub async fn user_item(&self, user_id: &str) -> HashMap<String, AttributeValue> {
        self.ddb
            .get_item()
            .table_name(&self.info.users_table)
            .key("user_id", AttributeValue::S(user_id.into()))
            .send()
            .await
            .expect("get user")
            .item
            .unwrap_or_default()
    }

    /// The session ids holding one of the user's slots.
    pub async fn active_slots(&self, user_id: &str) -> Vec<String> {
        match self.user_item(user_id).await.remove("active_sessions") {
            Some(AttributeValue::Ss(ids)) => ids,
            _ => vec![],
        }
    }

    /// Starts a session's execution as the API or an operator would: named by a new
    /// session id, with `{"user_id", "version"}` as input.
    pub async fn start_session(&self, input: Value) -> (SessionId, String) {
        let session_id = SessionId::generate();
        let arn = self.start_execution(session_id.as_str(), input).await;
        (session_id, arn)
    }

    pub async fn start_execution(&self, name: &str, input: Value) -> String {
        self.sfn
            .start_execution()
            .state_machine_arn(&self.info.state_machine_arn)
            .name(name)
            .input(input.to_string())
            .send()
            .await
            .expect("start execution")
            .execution_arn
    }

    pub async fn session(&self, id: &SessionId) -> Option<Session> {
        let item = self
            .ddb
            .get_item()
            .table_name(&self.info.sessions_table)
            .key("session_id", AttributeValue::S(id.to_string()))
            .consistent_read(true)
            .send()
            .await
            .expect("get session")
            .item?;
        Some(serde_dynamo::from_item(item).expect("a stored session parses"))
    }

    /// Polls until `check` gives a value, or fails the test after `within`.
    pub async fn eventually<T, F, Fut>(&self, what: &str, within: Duration, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + within;
        loop {
            if let Some(value) = check().await {
                return value;
            }
            if Instant::now() > deadline {
                self.dump_logs();
                panic!("timed out after {within:?} waiting for {what}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn session_where(
        &self,
        id: &SessionId,
        what: &str,
        pred: impl Fn(&Session) -> bool,
    ) -> Session {
        self.eventually(what, Duration::from_secs(60), || async {
            self.session(id).await.filter(|s| pred(s))
        })
        .await
    }

    /// Names of the states the execution has entered, in order.
    pub async fn states_entered(&self, execution_arn: &str) -> Vec<String> {
        let history = self
            .sfn
            .get_execution_history()
            .execution_arn(execution_arn)
            .max_results(1000)
            .send()
            .await
            .expect("execution history");
        history
            .events()
            .iter()
            .filter_map(|e| e.state_entered_event_details().map(|d| d.name().to_owned()))
            .collect()
    }

    pub async fn wait_for_state(&self, execution_arn: &str, state: &str) {
        self.eventually(
            &format!("state {state}"),
            Duration::from_secs(60),
            || async {
                self.states_entered(execution_arn)
                    .await
                    .iter()
                    .any(|s| s == state)
                    .then_some(())
            },
        )
        .await
    }

    pub async fn execution_status(&self, execution_arn: &str) -> ExecutionStatus {
        self.sfn
            .describe_execution()
            .execution_arn(execution_arn)
            .send()
            .await
            .expect("describe execution")
            .status
    }

    pub async fn execution_ended(&self, execution_arn: &str) -> ExecutionStatus {
        self.eventually("the execution to end", Duration::from_secs(90), || async {
            Some(self.execution_status(execution_arn).await)
                .filter(|s| *s != ExecutionStatus::Running)
        })
        .await
    }

    /// Tasks of the cluster that are not stopped.
    pub async fn running_tasks(&self) -> Vec<aws_sdk_ecs::types::Task> {
        let arns = self
            .ecs
            .list_tasks()
            .cluster(&self.info.cluster)
            .desired_status(aws_sdk_ecs::types::DesiredStatus::Running)
            .send()
            .await
            .expect("list tasks")
            .task_arns
            .unwrap_or_default();
        if arns.is_empty() {
            return vec![];
        }
        let described = self
            .ecs
            .describe_tasks()
            .cluster(&self.info.cluster)
            .set_tasks(Some(arns))
            .send()
            .await
            .expect("describe tasks");
        described
            .tasks
            .unwrap_or_default()
            .into_iter()
            .filter(|t| t.last_status() != Some("STOPPED"))
            .collect()
    }

    pub async fn task(&self, task_arn: &str) -> aws_sdk_ecs::types::Task {
        let described = self
            .ecs
            .describe_tasks()
            .cluster(&self.info.cluster)
            .tasks(task_arn)
            .send()
            .await
            .expect("describe task");
        described
            .tasks
            .unwrap_or_default()
            .into_iter()
            .next()
            .expect("the task exists")
    }

    /// Gives the task's ENI a public IP, as Fargate does for public subnets (moto gives
    /// task ENIs none).
    pub async fn give_public_ip(&self, task_arn: &str) -> String {
        let task = self.task(task_arn).await;
        let eni = eni_of(&task).expect("the task has an ENI");
        let address = self
            .ec2
            .allocate_address()
            .send()
            .await
            .expect("allocate address");
        self.ec2
            .associate_address()
            .allocation_id(address.allocation_id().expect("allocation id"))
            .network_interface_id(&eni)
            .send()
            .await
            .expect("associate address");
        address.public_ip().expect("public ip").to_owned()
    }

    /// An "ECS Task State Change" event for the task, shaped like AWS's documented
    /// example, as EventBridge delivers it to a Lambda target.
    pub async fn task_event(&self, task_arn: &str, last_status: &str, version: i64) -> Value {
        let task = self.task(task_arn).await;
        let attachments: Vec<Value> = task
            .attachments()
            .iter()
            .map(|a| {
                json!({
                    "id": a.id(),
                    "type": "eni",
                    "status": "ATTACHED",
                    "details": a.details().iter().map(|d| json!({"name": d.name(), "value": d.value()})).collect::<Vec<_>>(),
                })
            })
            .collect();
        let mut detail = json!({
            "attachments": attachments,
            "availabilityZone": "us-east-1a",
            "clusterArn": task.cluster_arn(),
            "containers": [],
            "createdAt": "2026-11-25T10:00:00.000Z",
            "launchType": "FARGATE",
            "cpu": "1024",
            "memory": "2048",
            "desiredStatus": if last_status == "STOPPED" { "STOPPED" } else { "RUNNING" },
            "group": format!("family:{}", task.group().unwrap_or_default()),
            "lastStatus": last_status,
            "overrides": {"containerOverrides": []},
            "connectivity": "CONNECTED",
            "startedBy": task.started_by(),
            "taskArn": task_arn,
            "taskDefinitionArn": task.task_definition_arn(),
            "updatedAt": "2026-11-25T10:00:30.000Z",
            "version": version,
            "platformVersion": "1.4.0",
            "pullStartedAt": "2026-11-25T10:00:05.000Z",
            "pullStoppedAt": "2026-11-25T10:00:21.000Z",
        });
        if last_status == "STOPPED" {
            detail["stopCode"] = json!("EssentialContainerExited");
            detail["stoppedReason"] = json!("Essential container in task exited");
        }
        json!({
            "version": "0",
            "id": format!("{task_arn}-{version}"),
            "detail-type": "ECS Task State Change",
            "source": "aws.ecs",
            "account": "123456789012",
            "time": "2026-11-25T10:00:30Z",
            "region": self.info.region,
            "resources": [task_arn],
            "detail": detail,
        })
    }

    /// The RUNNING event of a task whose health checks had passed by the time ECS
    /// reported it (with the template's checks, a session runs only once HEALTHY).
    pub async fn healthy_running_event(&self, task_arn: &str, version: i64) -> Value {
        let mut event = self.task_event(task_arn, "RUNNING", version).await;
        event["detail"]["healthStatus"] = json!("HEALTHY");
        event
    }

    /// What a running Fargate task looks like to us: the ENI gets its public IP and
    /// the RUNNING event reaches task-events. Returns (task ARN, public IP).
    pub async fn bring_task_up(&self, id: &SessionId) -> (String, String) {
        let session = self
            .session_where(id, "the session's task", |s| s.task_arn.is_some())
            .await;
        let task_arn = session.task_arn.expect("task arn");
        let ip = self.give_public_ip(&task_arn).await;
        let event = self.healthy_running_event(&task_arn, 3).await;
        self.invoke("task-events", &event).await;
        (task_arn, ip)
    }

    /// Lifecycle events published on the project's bus so far (read through the
    /// queue subscribed to it), as EventBridge events.
    pub async fn bus_events(&self) -> Vec<Value> {
        let mut events = Vec::new();
        loop {
            let received = self
                .sqs
                .receive_message()
                .queue_url(&self.info.events_queue_url)
                .max_number_of_messages(10)
                .send()
                .await
                .expect("receive events");
            let messages = received.messages.unwrap_or_default();
            if messages.is_empty() {
                return events;
            }
            for message in messages {
                events.push(
                    serde_json::from_str(message.body().unwrap_or("null"))
                        .expect("an event is JSON"),
                );
                if let Some(handle) = message.receipt_handle() {
                    self.sqs
                        .delete_message()
                        .queue_url(&self.info.events_queue_url)
                        .receipt_handle(handle)
                        .send()
                        .await
                        .expect("delete event");
                }
            }
        }
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

    /// Runs the reaper once, as its schedule would.
    pub async fn reap(&self) -> Value {
        let scheduled = json!({
            "version": "0",
            "id": "reaper-run",
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": "123456789012",
            "time": "2026-11-25T10:00:00Z",
            "region": self.info.region,
            "resources": ["arn:aws:events:us-east-1:123456789012:rule/sessions-reaper"],
            "detail": {},
        });
        self.invoke("reaper", &scheduled).await
    }

    /// Sets attributes of a user item (per-user overrides).
    pub async fn set_user(&self, user_id: &str, attribute: &str, value: AttributeValue) {
        self.ddb
            .update_item()
            .table_name(&self.info.users_table)
            .key("user_id", AttributeValue::S(user_id.into()))
            .update_expression("SET #a = :v")
            .expression_attribute_names("#a", attribute)
            .expression_attribute_values(":v", value)
            .send()
            .await
            .expect("update user");
    }

    /// Starts a session and brings it to AwaitStop, running with its stop token
    /// stored. Returns (session id, execution ARN, task ARN).
    pub async fn running_session(&self, input: Value) -> (SessionId, String, String) {
        let (id, execution) = self.start_session(input).await;
        let (task_arn, _) = self.bring_task_up(&id).await;
        self.wait_for_state(&execution, "AwaitStop").await;
        self.session_where(&id, "the stop token", |s| s.stop_token.is_some())
            .await;
        (id, execution, task_arn)
    }

    /// Completes AwaitStop's token as a stop request would.
    pub async fn complete_await_stop(&self, id: &SessionId, reason: &str) {
        let token = self
            .session(id)
            .await
            .and_then(|s| s.stop_token)
            .expect("a stop token");
        self.sfn
            .send_task_success()
            .task_token(token)
            .output(json!({ "reason": reason }).to_string())
            .send()
            .await
            .expect("complete AwaitStop");
    }

    /// Makes RunTask answer these failures (HTTP 200, no task) until cleared.
    pub fn set_run_task_failures(&self, failures: Value) {
        self.set_faults(json!({ "run_task_failures": failures }));
    }

    /// Makes RunTask answer an error; with `after_start` the task starts anyway, as
    /// when the answer to a successful call is lost.
    pub fn set_run_task_error(&self, code: &str, after_start: bool) {
        self.set_faults(json!({ "run_task_error": {
            "code": code, "message": "injected by the test", "after_start": after_start,
        }}));
    }

    /// Makes RunTask wait this long before it starts the task, until cleared.
    pub fn set_run_task_delay(&self, delay: Duration) {
        self.set_faults(json!({ "run_task_delay_s": delay.as_secs_f64() }));
    }

    /// Makes a task asked to stop keep running this long before it reaches STOPPED
    /// (as Fargate's stop timeout allows), until cleared.
    /// Set beside the faults already set.
    pub fn set_stop_task_delay(&self, delay: Duration) {
        let mut faults = self.read_faults();
        if !faults.is_object() {
            faults = json!({});
        }
        faults["stop_task_delay_s"] = json!(delay.as_secs_f64());
        self.set_faults(faults);
    }

    /// Whether a RunTask call has entered the delay of [`Stack::set_run_task_delay`].
    pub fn run_task_entered(&self) -> bool {
        self.dir
            .path()
            .join("faults.json.run-task-entered")
            .exists()
    }

    /// Clears every injected fault.
    pub fn clear_faults(&self) {
        self.set_faults(json!({}));
    }

    /// Makes the emulator answer calls with an AWS error, beside the faults already
    /// set (see [`faults`] for the answers AWS gives).
    pub fn inject_fault(&self, fault: Value) {
        let mut faults = self.read_faults();
        if !faults.is_object() {
            faults = json!({});
        }
        match faults["faults"].as_array_mut() {
            Some(list) => list.push(fault),
            None => faults["faults"] = json!([fault]),
        }
        self.set_faults(faults);
    }

    /// The injected faults as they are now: `times` and `after` count down as calls
    /// come, `fired` counts the calls answered with the error, `seen` every call that
    /// matched.
    pub fn injected_faults(&self) -> Vec<Value> {
        self.read_faults()["faults"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn read_faults(&self) -> Value {
        std::fs::read(self.dir.path().join("faults.json"))
            .ok()
            .and_then(|raw| serde_json::from_slice(&raw).ok())
            .unwrap_or_else(|| json!({}))
    }

    fn set_faults(&self, faults: Value) {
        // The emulator reads the file on every call: replace it whole, never half-written.
        let path = self.dir.path().join("faults.json");
        let partial = self.dir.path().join("faults.json.partial");
        std::fs::write(&partial, faults.to_string()).expect("write faults");
        std::fs::rename(&partial, &path).expect("replace faults");
    }

    /// Prints the logs of every process of the stack (on failure).
    /// Where the stack's logs are.
    pub fn logs_dir(&self) -> PathBuf {
        self.dir.path().join("logs")
    }

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

/// The task's private IPv4 address, from its network attachment.
pub fn private_ip(task: &aws_sdk_ecs::types::Task) -> Option<std::net::IpAddr> {
    task.attachments()
        .iter()
        .flat_map(|a| a.details())
        .find(|d| d.name() == Some("privateIPv4Address"))
        .and_then(|d| d.value()?.parse().ok())
}

/// The /24 of the loopback network that the tasks of the stack holding `port` take
/// their addresses from: one per held port, so stacks running side by side never
/// share an address.
fn task_addresses(port: u16) -> String {
    let [high, low] = port.to_be_bytes();
    format!("127.{high}.{low}.0/24")
}

pub fn eni_of(task: &aws_sdk_ecs::types::Task) -> Option<String> {
    task.attachments()
        .iter()
        .flat_map(|a| a.details())
        .find(|d| d.name() == Some("networkInterfaceId"))
        .and_then(|d| d.value().map(str::to_owned))
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
fn log_tail(dir: &Path, name: &str) -> String {
    let text = std::fs::read_to_string(dir.join("logs").join(format!("{name}.log")))
        .unwrap_or_else(|e| format!("(no log: {e})"));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn log_file(dir: &Path, name: &str) -> Stdio {
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).expect("log directory");
    std::fs::File::create(logs.join(format!("{name}.log")))
        .expect("log file")
        .into()
}

/// The session gateway of the local stack: the real `gateway` binary, reading the
/// sessions table on the emulator, behind the stand-in for the load balancer
/// ([`load_balancer`]) that signs users in with the development identity.
pub struct LocalGateway {
    pub load_balancer: load_balancer::LoadBalancer,
    /// Where the gateway itself listens (behind the load balancer on AWS: only the
    /// load balancer's security group reaches it).
    pub address: std::net::SocketAddr,
    pub health_address: std::net::SocketAddr,
    /// Signs the load balancer's tokens: tests forge and expire them with it.
    pub signer: Arc<gateway::testing::AlbSigner>,
    pub keys: gateway::testing::KeyServer,
    /// The sessions' domain (`SESSION_DOMAIN`), with the load balancer's port.
    pub domain: String,
    /// The sign-in cookie of each (identity, session host), as a browser keeps them.
    cookies: Mutex<HashMap<(String, String), String>>,
    process: Mutex<Option<Child>>,
}

impl LocalGateway {
    /// Sends a request for a session URL as a signed-in browser does: to the load
    /// balancer, with the URL's host and the sign-in cookie of that host for the user
    /// of `token` (`dev:<user>`; signing in first, as [`Self::sign_in`]; none: not
    /// signed in). A `cookie` in `headers` goes along. Returns the status and the body.
    pub async fn request(
        &self,
        method: &str,
        url: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> (u16, String) {
        let (host, path) = split_url(url);
        let mut cookies: Vec<String> = headers
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case("cookie"))
            .map(|(_, value)| (*value).to_owned())
            .collect();
        if let Some(token) = token {
            cookies.push(self.sign_in(token, host).await);
        }
        let cookie = cookies.join("; ");
        let mut all = Vec::new();
        if !cookie.is_empty() {
            all.push(("cookie", cookie.as_str()));
        }
        all.extend(
            headers
                .iter()
                .filter(|(name, _)| !name.eq_ignore_ascii_case("cookie")),
        );
        let (status, _, body) = self
            .exchange(method, &format!("http://{host}{path}"), &all)
            .await;
        (status, body)
    }

    /// One request to `url` through the load balancer with `headers` and nothing
    /// added (no sign-in): the status, headers and body.
    pub async fn exchange(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
    ) -> (u16, hyper::HeaderMap, String) {
        let (host, path) = split_url(url);
        let mut all = vec![("host", host)];
        all.extend_from_slice(headers);
        http_exchange(self.lb_address(), method, path, &all, "").await
    }

    fn lb_address(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.load_balancer.port).into()
    }

    /// Signs the user of `token` in on the session host `host` as a browser does, and
    /// returns the gateway's cookie (`name=value`): the login host's authorize page
    /// (where the load balancer signs the user in) gives a ticket, which the session
    /// host takes for the cookie. Kept per (token, host), as a browser keeps cookies.
    pub async fn sign_in(&self, token: &str, host: &str) -> String {
        let key = (token.to_owned(), host.to_ascii_lowercase());
        if let Some(cookie) = self.cookies.lock().unwrap().get(&key) {
            return cookie.clone();
        }
        let login_host = session_core::hosts::login_host(&self.domain);
        let authorize = gateway::signin::login_redirect("http", &self.domain, host, "/");
        let (_, authorize_path) = split_url(&authorize);
        let bearer = format!("Bearer {token}");
        let (status, _, page) = http_exchange(
            self.lb_address(),
            "GET",
            authorize_path,
            &[("host", &login_host), ("authorization", &bearer)],
            "",
        )
        .await;
        assert_eq!(status, 200, "the login host's authorize page: {page}");
        let ticket = page
            .split("name=\"ticket\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("no ticket in the login page: {page}"));
        let origin = format!("http://{login_host}");
        let (status, headers, body) = http_exchange(
            self.lb_address(),
            "POST",
            gateway::signin::TICKET_PATH,
            &[
                ("host", host),
                ("origin", &origin),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            &format!("ticket={ticket}&to=%2F"),
        )
        .await;
        assert_eq!(status, 303, "the session host took no ticket: {body}");
        let cookie = headers
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .expect("a sign-in cookie")
            .to_owned();
        self.cookies.lock().unwrap().insert(key, cookie.clone());
        cookie
    }

    /// Sends a request straight to the gateway, past the load balancer (what only the
    /// load balancer's security group may do on AWS): with whatever identity token the
    /// test made.
    pub async fn request_to_gateway(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (u16, String) {
        http_request(self.address, method, path, headers).await
    }

    async fn start(stack: &Stack, load_balancer: TcpListener) -> std::io::Result<Self> {
        let signer = Arc::new(gateway::testing::AlbSigner::generate(
            "local-load-balancer-key",
        ));
        let keys = gateway::testing::KeyServer::start(&[&signer]).await?;
        let env = stack.function_env();
        let binary = stack.tools.functions_dir.join("gateway");
        let process = Command::new(&binary)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("GATEWAY_LISTEN", "127.0.0.1:0")
            .env("GATEWAY_HEALTH_LISTEN", "127.0.0.1:0")
            .env("SESSIONS_TABLE", &stack.info.sessions_table)
            .env("SESSION_DOMAIN", &env["SESSION_DOMAIN"])
            .env("SESSION_URL_SCHEME", &env["SESSION_URL_SCHEME"])
            // The local stack's, in the open; on AWS a secret (Secrets Manager).
            .env("SIGN_IN_KEY", "the local stack's sign-in key, not a secret")
            .env("ALB_ARN", load_balancer::LOCAL_ALB_ARN)
            .env("ALB_PUBLIC_KEYS_URL", keys.url())
            // The web console's calls go to the local HTTP API, with the load
            // balancer's access token (`dev:<user>`) as their bearer token.
            .env("API_URL", stack.api_gateway.url())
            .envs(
                [
                    "AWS_REGION",
                    "AWS_ENDPOINT_URL",
                    "AWS_ACCESS_KEY_ID",
                    "AWS_SECRET_ACCESS_KEY",
                ]
                .iter()
                .map(|k| (k, &env[*k])),
            )
            .stdout(log_file(stack.dir.path(), "gateway"))
            .stderr(log_file(stack.dir.path(), "gateway.err"))
            .spawn()
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", binary.display())))?;
        let process = Mutex::new(Some(process));
        // The gateway binds ports of its own choosing and logs them once it serves.
        let deadline = Instant::now() + Duration::from_secs(30);
        let (address, health_address) = loop {
            if let Some(addresses) = listening_addresses(stack.dir.path()) {
                break addresses;
            }
            let exited = process.lock().unwrap().as_mut().map(|p| p.try_wait());
            if Instant::now() > deadline || matches!(exited, Some(Ok(Some(_)))) {
                return Err(std::io::Error::other(format!(
                    "the gateway did not start within 30 s; its log:\n{}\n{}",
                    log_tail(stack.dir.path(), "gateway"),
                    log_tail(stack.dir.path(), "gateway.err"),
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        if !healthy(health_address) {
            return Err(std::io::Error::other(format!(
                "the gateway's health check on {health_address} fails"
            )));
        }
        let mint_signer = signer.clone();
        let domain = env["SESSION_DOMAIN"].clone();
        let load_balancer = load_balancer::LoadBalancer::start(
            load_balancer,
            address,
            &domain,
            Arc::new(move |user: &str| mint_signer.token(load_balancer::LOCAL_ALB_ARN, user)),
        )
        .await?;
        Ok(Self {
            load_balancer,
            address,
            health_address,
            signer,
            keys,
            domain,
            cookies: Mutex::new(HashMap::new()),
            process,
        })
    }

    /// The gateway process's id (its memory and CPU are what a benchmark reads).
    pub fn pid(&self) -> Option<u32> {
        self.process.lock().unwrap().as_ref().map(Child::id)
    }

    fn stop(self) {
        drop(self.keys);
        if let Some(mut process) = self.process.lock().unwrap().take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

/// One HTTP/1.1 request on a new connection; `headers` carry the `host`.
/// The host and the path (with query) of a URL, `/` if it has none.
fn split_url(url: &str) -> (&str, &str) {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or(url);
    match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, "/"),
    }
}

async fn http_request(
    to: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let (status, _, body) = http_exchange(to, method, path, headers, "").await;
    (status, body)
}

/// One HTTP/1.1 exchange on a new connection: the status, headers and body.
async fn http_exchange(
    to: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, hyper::HeaderMap, String) {
    use http_body_util::{BodyExt, Full};
    let stream = tokio::net::TcpStream::connect(to)
        .await
        .unwrap_or_else(|e| panic!("connect to {to}: {e}"));
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("HTTP/1.1 handshake");
    tokio::spawn(conn);
    let mut request = hyper::Request::builder().method(method).uri(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(bytes::Bytes::from(body.to_owned())))
        .expect("a valid request");
    let response = sender.send_request(request).await.expect("an answer");
    let status = response.status().as_u16();
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
        .unwrap_or_default();
    (status, parts.headers, body)
}

/// The gateway's health check answers 200, as the load balancer's target group sees it.
/// The proxy and health addresses in the gateway's "gateway listening" log line.
fn listening_addresses(dir: &Path) -> Option<(std::net::SocketAddr, std::net::SocketAddr)> {
    let log = std::fs::read_to_string(dir.join("logs").join("gateway.log")).ok()?;
    log.lines().find_map(|line| {
        let fields = serde_json::from_str::<Value>(line).ok()?["fields"].take();
        if fields["message"] != "gateway listening" {
            return None;
        }
        Some((
            fields["proxy"].as_str()?.parse().ok()?,
            fields["health"].as_str()?.parse().ok()?,
        ))
    })
}

fn healthy(address: std::net::SocketAddr) -> bool {
    use std::io::Write;
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(1))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}
