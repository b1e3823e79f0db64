//! The state machine's executions: starting them, following the states they enter
//! and how they end, bringing a session to AwaitStop and completing it, running the
//! reaper, and polling until something holds ([`Stack::eventually`]).

use std::time::{Duration, Instant};

use aws_sdk_sfn::types::ExecutionStatus;
use serde_json::{json, Value};
use session_core::session::SessionId;

use crate::Stack;

impl Stack {
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
}
