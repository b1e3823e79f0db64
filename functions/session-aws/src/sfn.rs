//! Task tokens of the lifecycle state machine.

use aws_sdk_sfn::Client;

use crate::from_sdk;
use session_core::error::{ErrorName, Result};
use session_core::ports::{Delivery, Workflow};

#[derive(Clone, Debug)]
pub struct SfnWorkflow {
    client: Client,
}

impl SfnWorkflow {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    pub fn connect(sdk: &aws_config::SdkConfig) -> Self {
        Self::new(Client::new(sdk))
    }
}

/// Step Functions caps `error` at 256 and `cause` at 32,768 characters.
fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

impl Workflow for SfnWorkflow {
    async fn succeed(&self, token: &str, output: &serde_json::Value) -> Result<Delivery> {
        let result = self
            .client
            .send_task_success()
            .task_token(token)
            .output(output.to_string())
            .send()
            .await;
        match result {
            Ok(_) => Ok(Delivery::Delivered),
            Err(err)
                if err.as_service_error().is_some_and(|e| {
                    e.is_task_timed_out() || e.is_task_does_not_exist() || e.is_invalid_token()
                }) =>
            {
                Ok(Delivery::AlreadyClosed)
            }
            Err(err) => Err(from_sdk("SendTaskSuccess", err)),
        }
    }

    async fn fail(&self, token: &str, error: ErrorName, cause: &str) -> Result<Delivery> {
        let result = self
            .client
            .send_task_failure()
            .task_token(token)
            .error(error.as_str())
            .cause(truncate(cause, 32_768))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Delivery::Delivered),
            Err(err)
                if err.as_service_error().is_some_and(|e| {
                    e.is_task_timed_out() || e.is_task_does_not_exist() || e.is_invalid_token()
                }) =>
            {
                Ok(Delivery::AlreadyClosed)
            }
            Err(err) => Err(from_sdk("SendTaskFailure", err)),
        }
    }

    async fn start(
        &self,
        state_machine_arn: &str,
        name: &str,
        input: &serde_json::Value,
    ) -> Result<()> {
        let result = self
            .client
            .start_execution()
            .state_machine_arn(state_machine_arn)
            .name(name)
            .input(input.to_string())
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_execution_already_exists()) =>
            {
                Ok(())
            }
            Err(err) => Err(from_sdk("StartExecution", err)),
        }
    }

    async fn execution_running(&self, execution_arn: &str) -> Result<bool> {
        match self
            .client
            .describe_execution()
            .execution_arn(execution_arn)
            .send()
            .await
        {
            Ok(out) => Ok(out.status == aws_sdk_sfn::types::ExecutionStatus::Running),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_execution_does_not_exist()) =>
            {
                Ok(false)
            }
            Err(err) => Err(from_sdk("DescribeExecution", err)),
        }
    }

    async fn stop_execution(&self, execution_arn: &str, cause: &str) -> Result<()> {
        let result = self
            .client
            .stop_execution()
            .execution_arn(execution_arn)
            .cause(truncate(cause, 32_768))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_execution_does_not_exist()) =>
            {
                Ok(())
            }
            // Whatever error an execution that ended meanwhile may cause, it is stopped.
            Err(err) if !self.execution_running(execution_arn).await.unwrap_or(true) => {
                tracing::debug!(execution_arn, error = %err, "execution had already ended");
                Ok(())
            }
            Err(err) => Err(from_sdk("StopExecution", err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_sfn::operation::send_task_success::{SendTaskSuccessError, SendTaskSuccessOutput};
    use aws_sdk_sfn::operation::start_execution::StartExecutionError;
    use aws_sdk_sfn::operation::stop_execution::StopExecutionError;
    use aws_sdk_sfn::types::error::{ExecutionAlreadyExists, ExecutionDoesNotExist, TaskTimedOut};
    use aws_smithy_mocks::{mock, mock_client};

    use super::*;

    #[tokio::test]
    async fn completing_a_token_delivers_the_output() {
        let rule = mock!(aws_sdk_sfn::Client::send_task_success)
            .match_requests(|r| {
                r.task_token() == Some("t") && r.output() == Some(r#"{"public_ip":"1.2.3.4"}"#)
            })
            .then_output(|| SendTaskSuccessOutput::builder().build());
        let sfn = SfnWorkflow::new(mock_client!(aws_sdk_sfn, [&rule]));
        let delivery = sfn
            .succeed("t", &serde_json::json!({"public_ip": "1.2.3.4"}))
            .await
            .unwrap();
        assert_eq!(delivery, Delivery::Delivered);
    }

    #[tokio::test]
    async fn starting_an_execution_that_exists_already_is_not_an_error() {
        let rule = mock!(aws_sdk_sfn::Client::start_execution)
            .match_requests(|r| r.name() == Some("sess-1") && r.input() == Some(r#"{"v":1}"#))
            .then_error(|| {
                StartExecutionError::ExecutionAlreadyExists(
                    ExecutionAlreadyExists::builder().message("exists").build(),
                )
            });
        let sfn = SfnWorkflow::new(mock_client!(aws_sdk_sfn, [&rule]));
        sfn.start("arn:sm", "sess-1", &serde_json::json!({"v": 1}))
            .await
            .unwrap();
        assert_eq!(rule.num_calls(), 1);
    }

    #[tokio::test]
    async fn stopping_an_execution_that_does_not_exist_is_not_an_error() {
        let rule = mock!(aws_sdk_sfn::Client::stop_execution)
            .match_requests(|r| r.execution_arn() == Some("arn:exec") && r.cause() == Some("stuck"))
            .then_error(|| {
                StopExecutionError::ExecutionDoesNotExist(
                    ExecutionDoesNotExist::builder().message("gone").build(),
                )
            });
        let sfn = SfnWorkflow::new(mock_client!(aws_sdk_sfn, [&rule]));
        sfn.stop_execution("arn:exec", "stuck").await.unwrap();
        assert_eq!(rule.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_token_completed_before_is_already_closed_not_an_error() {
        let rule = mock!(aws_sdk_sfn::Client::send_task_success).then_error(|| {
            SendTaskSuccessError::TaskTimedOut(
                TaskTimedOut::builder().message("Task Timed Out").build(),
            )
        });
        let sfn = SfnWorkflow::new(mock_client!(aws_sdk_sfn, [&rule]));
        let delivery = sfn.succeed("t", &serde_json::json!({})).await.unwrap();
        assert_eq!(delivery, Delivery::AlreadyClosed);
    }
}
