//! What AWS does on its own in a real account, done for the local stack: Fargate
//! brings each new task up (its network interface gets a public IP, the task reaches
//! RUNNING), EventBridge delivers every ECS task state change to `task-events` (moto's
//! EventBridge cannot deliver to Lambda targets), and the reaper's schedule fires.
//!
//! EventBridge invokes a Lambda target asynchronously, and Lambda runs an asynchronous
//! invocation that ended in a function error twice more (one, then two minutes later by
//! default): so does the pump, with shorter waits.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::task_services::TaskServices;
use session_core::config::AccessMode;

use crate::{private_ip, Stack};

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[derive(Clone, Debug)]
pub struct PumpSettings {
    /// How long a new task takes to come up (Fargate's image pull and start).
    pub start_delay: Duration,
    /// How often the reaper's schedule fires.
    pub reap_every: Duration,
    /// How often the cluster is looked at.
    pub poll_every: Duration,
    /// The waits before the retries of a delivery that ended in a function error
    /// (Lambda's asynchronous invocation: one minute, then two).
    pub retry_after: [Duration; 2],
}

impl Default for PumpSettings {
    fn default() -> Self {
        Self {
            start_delay: Duration::from_millis(500),
            reap_every: Duration::from_secs(60),
            poll_every: Duration::from_millis(100),
            retry_after: [Duration::from_secs(1), Duration::from_secs(2)],
        }
    }
}

/// What the pump has delivered so far.
#[derive(Default)]
pub struct PumpState {
    first_seen: HashMap<String, Instant>,
    delivered: HashMap<String, &'static str>,
    /// The services of each running task, listening on its private address.
    services: HashMap<String, TaskServices>,
    /// Per task definition: its services (container, port) and whether ECS reports
    /// the task's health (an essential container has a health check).
    definitions: HashMap<String, (Vec<(String, u16)>, bool)>,
    /// When each task reached RUNNING (its events' `startedAt`).
    running_at: HashMap<String, String>,
    last_reap: Option<Instant>,
    /// Events delivered to task-events, for the figures of the benchmark.
    pub events_delivered: usize,
    /// Deliveries run again after a function error.
    pub events_retried: usize,
}

impl Stack {
    /// Every task of the cluster, stopped ones included.
    pub async fn all_tasks(&self) -> Vec<aws_sdk_ecs::types::Task> {
        let mut arns = Vec::new();
        for desired in [
            aws_sdk_ecs::types::DesiredStatus::Running,
            aws_sdk_ecs::types::DesiredStatus::Stopped,
        ] {
            let Ok(listed) = self
                .ecs
                .list_tasks()
                .cluster(&self.info.cluster)
                .desired_status(desired)
                .send()
                .await
            else {
                return Vec::new();
            };
            arns.extend(listed.task_arns.unwrap_or_default());
        }
        if arns.is_empty() {
            return Vec::new();
        }
        let mut tasks = Vec::new();
        for chunk in arns.chunks(100) {
            if let Ok(described) = self
                .ecs
                .describe_tasks()
                .cluster(&self.info.cluster)
                .set_tasks(Some(chunk.to_vec()))
                .send()
                .await
            {
                tasks.extend(described.tasks.unwrap_or_default());
            }
        }
        tasks
    }

    /// The services a task's containers serve (container name, port) and whether ECS
    /// reports its health, from its task definition.
    async fn task_services_of(
        &self,
        task: &aws_sdk_ecs::types::Task,
        state: &mut PumpState,
    ) -> (Vec<(String, u16)>, bool) {
        let Some(arn) = task.task_definition_arn() else {
            return (Vec::new(), false);
        };
        if let Some(known) = state.definitions.get(arn) {
            return known.clone();
        }
        let Ok(described) = self
            .ecs
            .describe_task_definition()
            .task_definition(arn)
            .send()
            .await
        else {
            return (Vec::new(), false);
        };
        let containers = described
            .task_definition()
            .map(|d| d.container_definitions().to_vec())
            .unwrap_or_default();
        let services = containers
            .iter()
            .flat_map(|c| {
                c.port_mappings().iter().filter_map(|m| {
                    Some((
                        c.name()?.to_owned(),
                        u16::try_from(m.container_port()?).ok()?,
                    ))
                })
            })
            .collect();
        let awaits_health = containers
            .iter()
            .any(|c| c.essential().unwrap_or(true) && c.health_check().is_some());
        let known = (services, awaits_health);
        state.definitions.insert(arn.to_owned(), known.clone());
        known
    }

    /// One look at the cluster: brings up tasks that are due, delivers the state
    /// changes not yet delivered, and fires the reaper when its time has come.
    pub async fn pump_once(&self, settings: &PumpSettings, state: &mut PumpState) {
        let now = Instant::now();
        for task in self.all_tasks().await {
            let Some(arn) = task.task_arn().map(str::to_owned) else {
                continue;
            };
            let first_seen = *state.first_seen.entry(arn.clone()).or_insert(now);
            let delivered = state.delivered.get(&arn).copied();
            let stopped = task.last_status() == Some("STOPPED");
            if stopped && delivered != Some("STOPPED") {
                // The containers have exited: nothing answers on the task's address.
                state.services.remove(&arn);
                let mut event = self.task_event(&arn, "STOPPED", 5).await;
                let detail = &mut event["detail"];
                detail["stopCode"] = json!(task
                    .stop_code()
                    .map_or("UserInitiated", |code| code.as_str()));
                detail["stoppedReason"] =
                    json!(task.stopped_reason().unwrap_or("Task stopped by user"));
                if delivered.is_none() {
                    // Stopped before it ever ran: no start, no image pull.
                    for field in ["pullStartedAt", "pullStoppedAt"] {
                        detail.as_object_mut().map(|d| d.remove(field));
                    }
                } else if let Some(at) = state.running_at.get(&arn) {
                    detail["startedAt"] = json!(at);
                }
                self.deliver(&event, settings, state).await;
                state.delivered.insert(arn.clone(), "STOPPED");
                state.running_at.remove(&arn);
                state.events_delivered += 1;
            } else if !stopped && delivered.is_none() && now - first_seen >= settings.start_delay {
                if self.access_mode == AccessMode::Direct {
                    self.give_public_ip(&arn).await;
                }
                let (services, awaits_health) = self.task_services_of(&task, state).await;
                if let Some(address) = private_ip(&task) {
                    match TaskServices::start(address, &services).await {
                        Ok(running) => {
                            state.services.insert(arn.clone(), running);
                        }
                        Err(e) => {
                            eprintln!("pump: the services of {arn} cannot listen on {address}: {e}")
                        }
                    }
                }
                let running_at = now_rfc3339();
                let mut event = self.task_event(&arn, "RUNNING", 3).await;
                event["detail"]["startedAt"] = json!(running_at);
                event["detail"]["updatedAt"] = json!(running_at);
                if awaits_health {
                    event["detail"]["healthStatus"] = json!("UNKNOWN");
                }
                state.running_at.insert(arn.clone(), running_at);
                self.deliver(&event, settings, state).await;
                state.delivered.insert(arn, "RUNNING");
                state.events_delivered += 1;
            } else if !stopped && delivered == Some("RUNNING") {
                // ECS reports HEALTHY once every essential container's check passes:
                // here, once every service answers on the task's address.
                let (services, awaits_health) = self.task_services_of(&task, state).await;
                let ports: Vec<u16> = services.iter().map(|(_, port)| *port).collect();
                let answering = match state.services.get(&arn) {
                    Some(running) if awaits_health => running.healthy(&ports).await,
                    _ => false,
                };
                if answering {
                    let mut event = self.task_event(&arn, "RUNNING", 4).await;
                    event["detail"]["healthStatus"] = json!("HEALTHY");
                    event["detail"]["startedAt"] = json!(state.running_at.get(&arn));
                    event["detail"]["updatedAt"] = json!(now_rfc3339());
                    self.deliver(&event, settings, state).await;
                    state.delivered.insert(arn, "HEALTHY");
                    state.events_delivered += 1;
                }
            }
        }
        if state
            .last_reap
            .is_none_or(|at| now - at >= settings.reap_every)
        {
            if state.last_reap.is_some() {
                self.reap().await;
            }
            state.last_reap = Some(now);
        }
    }

    /// Delivers an event to task-events as EventBridge and Lambda's asynchronous
    /// invocation do: a function error (a throttled AWS call, a timeout) is retried
    /// twice, after the waits of [`PumpSettings::retry_after`]; the event is dropped
    /// after the third error. Returns the last answer.
    pub async fn deliver(
        &self,
        event: &serde_json::Value,
        settings: &PumpSettings,
        state: &mut PumpState,
    ) -> Option<serde_json::Value> {
        let waits = std::iter::once(Duration::ZERO).chain(settings.retry_after);
        let mut answer = None;
        for (attempt, wait) in waits.enumerate() {
            if attempt > 0 {
                state.events_retried += 1;
            }
            tokio::time::sleep(wait).await;
            let outcome = self
                .lambda
                .invoker()
                .invoke(
                    "task-events",
                    event.to_string().into(),
                    crate::function_timeout("task-events") + Duration::from_secs(5),
                )
                .await;
            match outcome {
                Ok(crate::lambda::Outcome::Response(body)) => {
                    return serde_json::from_slice(&body).ok();
                }
                Ok(crate::lambda::Outcome::Error(body)) => {
                    answer = serde_json::from_slice(&body).ok();
                }
                // Not run (the stack is going away): nothing to retry.
                Err(_) => return None,
            }
        }
        answer
    }
}

/// Runs the pump until the stack is dropped by everyone else.
pub fn spawn(stack: Arc<Stack>, settings: PumpSettings) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut state = PumpState::default();
        while Arc::strong_count(&stack) > 1 {
            stack.pump_once(&settings, &mut state).await;
            tokio::time::sleep(settings.poll_every).await;
        }
    })
}
