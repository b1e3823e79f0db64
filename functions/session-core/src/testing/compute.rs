use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::ports::{Compute, TaskLaunch, TaskSummary};
use crate::session::SessionId;
use crate::template::TaskDefinitionSpec;

/// A task of the in-memory cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryTask {
    pub task_arn: String,
    pub task_definition_arn: String,
    pub started_by: Option<String>,
    /// ECS's `lastStatus`: PROVISIONING when run, then whatever the test sets.
    pub last_status: String,
    /// ECS's `desiredStatus`: RUNNING until the task is asked to stop.
    pub desired_status: String,
    pub created_at: Option<DateTime<Utc>>,
}

/// The hook [`MemoryCompute::on_run_task`] keeps.
type RunHook = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Cluster {
    /// Registered task definitions by ARN.
    definitions: BTreeMap<String, TaskDefinitionSpec>,
    revisions: BTreeMap<String, u64>,
    inactive: BTreeSet<String>,
    tasks: BTreeMap<String, MemoryTask>,
    /// RunTask's client tokens (the session id) and the task each one started.
    client_tokens: BTreeMap<String, String>,
    stop_calls: Vec<(String, String)>,
    run_calls: usize,
    refuse_next_run: Option<Error>,
    on_run_task: Option<RunHook>,
}

/// One ECS cluster in memory: mirrors `aws::ecs::EcsCompute`. RunTask is idempotent
/// per session (its client token), StopTask of a stopped or unknown task succeeds,
/// and a task asked to stop keeps its last status until the test says it has
/// STOPPED ([`MemoryCompute::set_status`]), as a Fargate task runs on until its
/// containers exit. RunTask takes any revision not deregistered here, also one
/// registered outside this twin (a cache entry a test seeds).
#[derive(Default)]
pub struct MemoryCompute {
    cluster: Mutex<Cluster>,
}

pub const TASK_STOPPED: &str = "STOPPED";

impl MemoryCompute {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a task to the cluster as it is (an orphan, one started by hand).
    pub fn seed_task(&self, task: MemoryTask) {
        self.cluster
            .lock()
            .unwrap()
            .tasks
            .insert(task.task_arn.clone(), task);
    }

    /// Sets a task's last status (RUNNING, STOPPED, ...).
    pub fn set_status(&self, task_arn: &str, last_status: &str) {
        let mut cluster = self.cluster.lock().unwrap();
        let task = cluster
            .tasks
            .get_mut(task_arn)
            .unwrap_or_else(|| panic!("no task {task_arn}"));
        task.last_status = last_status.to_owned();
        if last_status == TASK_STOPPED {
            task.desired_status = TASK_STOPPED.to_owned();
        }
    }

    /// ECS forgets a stopped task after an hour or so.
    pub fn forget(&self, task_arn: &str) {
        self.cluster.lock().unwrap().tasks.remove(task_arn);
    }

    /// Deregisters a revision: RunTask refuses it from now on.
    pub fn deregister(&self, task_definition_arn: &str) {
        self.cluster
            .lock()
            .unwrap()
            .inactive
            .insert(task_definition_arn.to_owned());
    }

    /// The next RunTask fails with `error` (e.g. `Error::CapacityUnavailable`).
    pub fn refuse_next_run(&self, error: Error) {
        self.cluster.lock().unwrap().refuse_next_run = Some(error);
    }

    /// Runs `hook` once, while the next RunTask is in flight (after the task exists,
    /// before RunTask answers): what a concurrent writer does meanwhile.
    pub fn on_run_task(&self, hook: impl FnOnce() + Send + 'static) {
        self.cluster.lock().unwrap().on_run_task = Some(Box::new(hook));
    }

    pub fn task(&self, task_arn: &str) -> Option<MemoryTask> {
        self.cluster.lock().unwrap().tasks.get(task_arn).cloned()
    }

    /// Every task ever run or seeded, stopped ones included.
    pub fn tasks(&self) -> Vec<MemoryTask> {
        self.cluster
            .lock()
            .unwrap()
            .tasks
            .values()
            .cloned()
            .collect()
    }

    /// The registered task definitions, by ARN.
    pub fn definitions(&self) -> BTreeMap<String, TaskDefinitionSpec> {
        self.cluster.lock().unwrap().definitions.clone()
    }

    /// Every StopTask call: (task ARN, reason).
    pub fn stop_calls(&self) -> Vec<(String, String)> {
        self.cluster.lock().unwrap().stop_calls.clone()
    }

    /// How many times RunTask was called.
    pub fn run_calls(&self) -> usize {
        self.cluster.lock().unwrap().run_calls
    }
}

impl Compute for MemoryCompute {
    async fn register_task_definition(&self, spec: &TaskDefinitionSpec) -> Result<String> {
        let mut cluster = self.cluster.lock().unwrap();
        let revision = cluster.revisions.entry(spec.family.clone()).or_default();
        *revision += 1;
        let arn = format!(
            "arn:aws:ecs:eu-west-1:000000000000:task-definition/{}:{revision}",
            spec.family
        );
        cluster.definitions.insert(arn.clone(), spec.clone());
        Ok(arn)
    }

    async fn run_task(&self, launch: &TaskLaunch<'_>) -> Result<String> {
        let (hook, task_arn) = {
            let mut cluster = self.cluster.lock().unwrap();
            cluster.run_calls += 1;
            if let Some(error) = cluster.refuse_next_run.take() {
                return Err(error);
            }
            let arn = launch.task_definition_arn;
            if cluster.inactive.contains(arn) {
                return Err(Error::TaskDefinitionInactive(format!(
                    "{arn}: TaskDefinition is inactive"
                )));
            }
            let token = launch.session_id.to_string();
            if let Some(task_arn) = cluster.client_tokens.get(&token) {
                return Ok(task_arn.clone());
            }
            let task_arn = format!(
                "arn:aws:ecs:eu-west-1:000000000000:task/sessions/{:032x}",
                cluster.tasks.len() + 1
            );
            cluster
                .client_tokens
                .insert(token.clone(), task_arn.clone());
            cluster.tasks.insert(
                task_arn.clone(),
                MemoryTask {
                    task_arn: task_arn.clone(),
                    task_definition_arn: arn.to_owned(),
                    started_by: Some(token),
                    last_status: "PROVISIONING".into(),
                    desired_status: "RUNNING".into(),
                    created_at: Some(Utc::now()),
                },
            );
            (cluster.on_run_task.take(), task_arn)
        };
        if let Some(hook) = hook {
            hook();
        }
        Ok(task_arn)
    }

    async fn stop_task(&self, task_arn: &str, reason: &str) -> Result<()> {
        let mut cluster = self.cluster.lock().unwrap();
        cluster
            .stop_calls
            .push((task_arn.to_owned(), reason.chars().take(255).collect()));
        if let Some(task) = cluster.tasks.get_mut(task_arn) {
            task.desired_status = TASK_STOPPED.into();
        }
        Ok(())
    }

    async fn tasks_started_by(&self, id: &SessionId) -> Result<Vec<String>> {
        let cluster = self.cluster.lock().unwrap();
        Ok(cluster
            .tasks
            .values()
            .filter(|t| t.started_by.as_deref() == Some(id.as_str()))
            .filter(|t| t.desired_status == "RUNNING")
            .map(|t| t.task_arn.clone())
            .collect())
    }

    async fn tasks_not_stopped(&self, id: &SessionId, known: &[String]) -> Result<Vec<String>> {
        let cluster = self.cluster.lock().unwrap();
        let mut arns: BTreeSet<&str> = known.iter().map(String::as_str).collect();
        arns.extend(
            cluster
                .tasks
                .values()
                .filter(|t| t.started_by.as_deref() == Some(id.as_str()))
                .map(|t| t.task_arn.as_str()),
        );
        // A task ECS no longer knows (MISSING) has long stopped.
        Ok(arns
            .into_iter()
            .filter_map(|arn| cluster.tasks.get(arn))
            .filter(|t| t.last_status != TASK_STOPPED)
            .map(|t| t.task_arn.clone())
            .collect())
    }

    async fn running_tasks(&self) -> Result<Vec<TaskSummary>> {
        let cluster = self.cluster.lock().unwrap();
        Ok(cluster
            .tasks
            .values()
            .filter(|t| t.desired_status == "RUNNING" && t.last_status != TASK_STOPPED)
            .map(|t| TaskSummary {
                task_arn: t.task_arn.clone(),
                started_by: t.started_by.clone(),
                created_at: t.created_at,
            })
            .collect())
    }
}
