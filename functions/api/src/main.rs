// The answer future nests every layer from the router down to the DynamoDB store's
// table helpers; computing its layout goes deeper than rustc's default limit of 128.
#![recursion_limit = "256"]

use lambda_http::{lambda_runtime, service_fn, Error, LambdaEvent};
use serde_json::Value;
use session_aws::{dynamodb::DynamoStore, ecr::EcrRegistry, sdk_config, sfn::SfnWorkflow};
use session_core::config::{AdmissionSettings, ApiSettings, ProcessEnv, Tables};
use session_core::ports::SystemClock;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let settings = ApiSettings::from_source(&ProcessEnv)?;
    let admission = AdmissionSettings::from_source(&ProcessEnv)?;
    let tables = Tables::from_source(&ProcessEnv)?;
    let sdk = sdk_config().await;
    let api = &api::Api {
        settings,
        admission,
        store: DynamoStore::connect(&sdk, tables),
        workflow: SfnWorkflow::connect(&sdk),
        registry: EcrRegistry::connect(&sdk),
        clock: SystemClock,
    };
    // The event is read here rather than by lambda_http::run, whose conversion panics
    // on requests `http` cannot represent.
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        Ok::<_, std::convert::Infallible>(api.answer(event.payload).await)
    }))
    .await
}
