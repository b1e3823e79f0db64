//! Task tokens of the lifecycle state machine.

use aws_sdk_sfn::Client;

use crate::error::{Error, Result};
use crate::ports::{Delivery, Workflow};

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
            Err(err) => Err(Error::from_sdk("SendTaskSuccess", err)),
        }
    }

    async fn fail(&self, token: &str, error: &str, cause: &str) -> Result<Delivery> {
        let result = self
            .client
            .send_task_failure()
            .task_token(token)
            .error(truncate(error, 256))
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
            Err(err) => Err(Error::from_sdk("SendTaskFailure", err)),
        }
    }
}
