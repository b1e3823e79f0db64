use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use crate::error::{Error, ErrorName, Result};
use crate::ports::{Delivery, Workflow};

/// How a task token was completed.
#[derive(Clone, Debug, PartialEq)]
pub enum TokenOutcome {
    Succeeded(serde_json::Value),
    Failed { error: ErrorName, cause: String },
}

/// One completion of a task token, and what became of it.
#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    pub token: String,
    pub outcome: TokenOutcome,
    pub delivery: Delivery,
}

#[derive(Default)]
struct State {
    completions: Vec<Completion>,
    /// Tokens completed, timed out or of an ended execution: completing one again is
    /// `AlreadyClosed`.
    closed: BTreeSet<String>,
    /// Started executions by ARN, with their input.
    started: BTreeMap<String, serde_json::Value>,
    running: BTreeSet<String>,
    stopped: Vec<(String, String)>,
    refuse_next_completion: Option<Error>,
    /// Every StartExecution call, in order: (execution ARN, input).
    start_calls: Vec<(String, serde_json::Value)>,
    refuse_next_start: Option<Error>,
    fail_next_start_after_starting: Option<Error>,
    on_start: Option<StartHook>,
}

/// The hook [`MemoryWorkflow::on_start`] keeps.
type StartHook = Box<dyn FnOnce() + Send>;

/// The lifecycle state machine's side of Step Functions in memory: mirrors
/// `aws::sfn::SfnWorkflow`. Any token is open until it is completed once (or closed by
/// the test, as a timeout would); completing a closed one is `AlreadyClosed`, not an
/// error. Starting an execution whose name exists already succeeds without a second
/// one; stopping an ended or unknown execution succeeds.
#[derive(Default)]
pub struct MemoryWorkflow {
    state: Mutex<State>,
}

impl MemoryWorkflow {
    pub fn new() -> Self {
        Self::default()
    }

    /// The execution ARN of `name` under `state_machine_arn`, as Step Functions names it.
    pub fn execution_arn(state_machine_arn: &str, name: &str) -> String {
        format!(
            "{}:{name}",
            state_machine_arn.replacen(":stateMachine:", ":execution:", 1)
        )
    }

    /// Every completion, in order, delivered or not.
    pub fn completions(&self) -> Vec<Completion> {
        self.state.lock().unwrap().completions.clone()
    }

    /// The completions that reached a waiting state.
    pub fn delivered(&self) -> Vec<Completion> {
        self.completions()
            .into_iter()
            .filter(|c| c.delivery == Delivery::Delivered)
            .collect()
    }

    /// Closes a token as its state's timeout (or the end of its execution) would.
    pub fn close(&self, token: &str) {
        self.state.lock().unwrap().closed.insert(token.to_owned());
    }

    /// The next SendTaskSuccess/SendTaskFailure fails with `error` and completes nothing.
    pub fn refuse_next_completion(&self, error: Error) {
        self.state.lock().unwrap().refuse_next_completion = Some(error);
    }

    /// The next StartExecution fails with `error` and starts nothing (e.g.
    /// `Error::Throttled`).
    pub fn refuse_next_start(&self, error: Error) {
        self.state.lock().unwrap().refuse_next_start = Some(error);
    }

    /// The next StartExecution starts its execution (unless it exists already) but
    /// answers `error`: the answer was lost on the way, or the call timed out after Step
    /// Functions had started the execution.
    pub fn fail_next_start_after_starting(&self, error: Error) {
        self.state.lock().unwrap().fail_next_start_after_starting = Some(error);
    }

    /// Runs `hook` once, while the next StartExecution is in flight (after its execution
    /// exists if it starts one, before it answers, whether or not it succeeds): what the
    /// execution, or a concurrent writer, does meanwhile.
    pub fn on_start(&self, hook: impl FnOnce() + Send + 'static) {
        self.state.lock().unwrap().on_start = Some(Box::new(hook));
    }

    /// Every StartExecution call, in order, refused ones included: (execution ARN,
    /// input).
    pub fn start_calls(&self) -> Vec<(String, serde_json::Value)> {
        self.state.lock().unwrap().start_calls.clone()
    }

    /// Makes the execution run (or end) as far as `execution_running` is concerned.
    pub fn set_running(&self, execution_arn: &str, running: bool) {
        let mut state = self.state.lock().unwrap();
        if running {
            state.running.insert(execution_arn.to_owned());
        } else {
            state.running.remove(execution_arn);
        }
    }

    /// Started executions by ARN, with their input.
    pub fn started(&self) -> BTreeMap<String, serde_json::Value> {
        self.state.lock().unwrap().started.clone()
    }

    /// Every StopExecution call: (execution ARN, cause).
    pub fn stopped(&self) -> Vec<(String, String)> {
        self.state.lock().unwrap().stopped.clone()
    }

    fn complete(&self, token: &str, outcome: TokenOutcome) -> Result<Delivery> {
        let mut state = self.state.lock().unwrap();
        if let Some(error) = state.refuse_next_completion.take() {
            return Err(error);
        }
        let delivery = if state.closed.insert(token.to_owned()) {
            Delivery::Delivered
        } else {
            Delivery::AlreadyClosed
        };
        state.completions.push(Completion {
            token: token.to_owned(),
            outcome,
            delivery,
        });
        Ok(delivery)
    }
}

impl Workflow for MemoryWorkflow {
    async fn succeed(&self, token: &str, output: &serde_json::Value) -> Result<Delivery> {
        self.complete(token, TokenOutcome::Succeeded(output.clone()))
    }

    async fn fail(&self, token: &str, error: ErrorName, cause: &str) -> Result<Delivery> {
        let cause = cause.chars().take(32_768).collect();
        self.complete(token, TokenOutcome::Failed { error, cause })
    }

    async fn start(
        &self,
        state_machine_arn: &str,
        name: &str,
        input: &serde_json::Value,
    ) -> Result<()> {
        let arn = Self::execution_arn(state_machine_arn, name);
        let (hook, answer) = {
            let mut state = self.state.lock().unwrap();
            state.start_calls.push((arn.clone(), input.clone()));
            let answer = match state.refuse_next_start.take() {
                Some(error) => Err(error),
                None => {
                    if !state.started.contains_key(&arn) {
                        state.started.insert(arn.clone(), input.clone());
                        state.running.insert(arn);
                    }
                    state
                        .fail_next_start_after_starting
                        .take()
                        .map_or(Ok(()), Err)
                }
            };
            (state.on_start.take(), answer)
        };
        if let Some(hook) = hook {
            hook();
        }
        answer
    }

    async fn execution_running(&self, execution_arn: &str) -> Result<bool> {
        Ok(self.state.lock().unwrap().running.contains(execution_arn))
    }

    async fn stop_execution(&self, execution_arn: &str, cause: &str) -> Result<()> {
        let mut state = self.state.lock().unwrap();
        state.running.remove(execution_arn);
        state.stopped.push((
            execution_arn.to_owned(),
            cause.chars().take(32_768).collect(),
        ));
        Ok(())
    }
}
