//! A whole session stack on one machine, no AWS account: a moto server speaking the
//! real AWS wire protocols (Step Functions really executing `statemachine/`), the real
//! function binaries run by the local Lambda service ([`lambda`]), moto's Lambda
//! Invoke forwarded to it, and the local HTTP API ([`api_gateway`]). Each test gets
//! its own stack.

pub mod api_gateway;
pub mod definition;
mod executions;
pub mod faults;
mod fixtures;
mod gateway_client;
pub mod http_api;
pub mod lambda;
pub mod load_balancer;
pub mod provider_schema;
pub mod pump;
pub mod rate_limits;
mod stack;
pub mod storm;
pub mod task_services;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use fixtures::{eni_of, private_ip};
pub use gateway_client::LocalGateway;
pub use stack::{ClosedPort, Stack, StackInfo, StackOptions};

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
