use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use session_aws::lambda::{input, output};
use session_aws::{
    dynamodb::DynamoStore, eventbridge::EventBridgeBus, sdk_config, sfn::SfnWorkflow,
};
use session_core::config::{template_from, Access, EventSettings, ProcessEnv, Tables};
use session_core::ports::SystemClock;
use session_core::steps::record::{record, RecordContext};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let tables = Tables::from_source(&ProcessEnv)?;
    let template = template_from(&ProcessEnv)?;
    let events = EventSettings::from_source(&ProcessEnv)?;
    let access = Access::from_source(&ProcessEnv)?;
    let sdk = sdk_config().await;
    let store = DynamoStore::connect(&sdk, tables);
    let workflow = SfnWorkflow::connect(&sdk);
    let bus = EventBridgeBus::connect(&sdk, events.bus);
    let ctx = &RecordContext {
        template: &template,
        access: &access,
        store: &store,
        workflow: &workflow,
        bus: &bus,
        clock: &SystemClock,
    };
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let recorded = record(input(event)?, ctx).await?;
        output(&recorded)
    }))
    .await
}
