use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use session_aws::lambda::{input, output};
use session_aws::{
    dynamodb::DynamoStore, ecs::EcsCompute, efs::EfsStorage, iam::IamTaskRoles, sdk_config,
};
use session_core::config::{Cluster, LaunchSettings, ProcessEnv, Tables};
use session_core::ports::SystemClock;
use session_core::steps::launch::launch;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let tables = Tables::from_source(&ProcessEnv)?;
    let cluster = Cluster::from_source(&ProcessEnv)?;
    let sdk = sdk_config().await;
    let region = sdk
        .region()
        .map(ToString::to_string)
        .ok_or("the AWS region is not configured")?;
    let settings = &LaunchSettings::from_source(&ProcessEnv, region)?;
    let store = &DynamoStore::connect(&sdk, tables);
    let compute = &EcsCompute::connect(&sdk, cluster.cluster, Some(settings.into()));
    let storage = &EfsStorage::connect(&sdk, settings.efs_file_system_id.clone());
    let roles = &IamTaskRoles::connect(&sdk, settings.task_roles.clone());
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let launched = launch(
            input(event)?,
            settings,
            store,
            compute,
            storage,
            roles,
            &SystemClock,
        )
        .await?;
        output(&launched)
    }))
    .await
}
