use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};
use session_aws::lambda::{input, Failure};
use session_aws::{dynamodb::DynamoStore, ec2::Ec2Network, sdk_config, sfn::SfnWorkflow};
use session_core::config::{Access, ProcessEnv, Tables};
use session_core::steps::wait_for_ip::wait_for_ip;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let tables = Tables::from_source(&ProcessEnv)?;
    let access = &Access::from_source(&ProcessEnv)?;
    let sdk = sdk_config().await;
    let store = &DynamoStore::connect(&sdk, tables);
    let network = &Ec2Network::connect(&sdk);
    let workflow = &SfnWorkflow::connect(&sdk);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let completed = wait_for_ip(input(event)?, access, store, network, workflow).await?;
        Ok::<_, Failure>(json!({ "completed": completed.is_some() }))
    }))
    .await
}
