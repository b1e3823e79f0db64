use lambda_http::{service_fn, Error, Request};
use session_core::aws::{dynamodb::DynamoStore, ecr::EcrRegistry, sdk_config, sfn::SfnWorkflow};
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
    lambda_http::run(service_fn(move |req: Request| async move {
        Ok::<_, std::convert::Infallible>(api.handle(req).await)
    }))
    .await
}
