use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use session_aws::lambda::{input, output};
use session_aws::{dynamodb::DynamoStore, ecs::EcsCompute, sdk_config};
use session_core::config::{Cluster, ProcessEnv, Tables};
use session_core::ports::SystemClock;
use session_core::steps::stop::stop;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let tables = Tables::from_source(&ProcessEnv)?;
    let cluster = Cluster::from_source(&ProcessEnv)?;
    let sdk = sdk_config().await;
    let store = &DynamoStore::connect(&sdk, tables);
    let compute = &EcsCompute::connect(&sdk, cluster.cluster, None);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let stopped = stop(input(event)?, store, compute, &SystemClock).await?;
        output(&stopped)
    }))
    .await
}
