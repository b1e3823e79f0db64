use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use session_aws::lambda::{input, output};
use session_aws::{dynamodb::DynamoStore, ecr::EcrRegistry, sdk_config};
use session_core::config::{AdmissionSettings, ProcessEnv, Tables};
use session_core::ports::SystemClock;
use session_core::steps::authorize::authorize;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let settings = &AdmissionSettings::from_source(&ProcessEnv)?;
    let tables = Tables::from_source(&ProcessEnv)?;
    let sdk = sdk_config().await;
    let store = &DynamoStore::connect(&sdk, tables);
    let registry = &EcrRegistry::connect(&sdk);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let admitted = authorize(input(event)?, settings, store, registry, &SystemClock).await?;
        output(&admitted)
    }))
    .await
}
