use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use session_aws::lambda::{input, output};
use session_aws::{dynamodb::DynamoStore, ec2::Ec2Network, sdk_config, sfn::SfnWorkflow};
use session_core::config::{Access, Cluster, ProcessEnv, Tables};
use session_core::ports::SystemClock;
use session_core::steps::task_events::on_task_state_change;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let tables = Tables::from_source(&ProcessEnv)?;
    let cluster = &Cluster::from_source(&ProcessEnv)?.cluster;
    let access = &Access::from_source(&ProcessEnv)?;
    let sdk = sdk_config().await;
    let store = &DynamoStore::connect(&sdk, tables);
    let network = &Ec2Network::connect(&sdk);
    let workflow = &SfnWorkflow::connect(&sdk);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let outcome = on_task_state_change(
            input(event)?,
            cluster,
            access,
            store,
            network,
            workflow,
            &SystemClock,
        )
        .await?;
        output(&outcome)
    }))
    .await
}
