use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use session_aws::lambda::output;
use session_aws::{dynamodb::DynamoStore, ecs::EcsCompute, sdk_config, sfn::SfnWorkflow};
use session_core::config::{Cluster, ProcessEnv, ReaperSettings, Tables};
use session_core::metrics::{self, Unit};
use session_core::ports::SystemClock;
use session_core::steps::reap::Reaper;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let tables = Tables::from_source(&ProcessEnv)?;
    let cluster = Cluster::from_source(&ProcessEnv)?;
    let settings = ReaperSettings::from_source(&ProcessEnv)?;
    let sdk = sdk_config().await;
    let store = DynamoStore::connect(&sdk, tables);
    let compute = EcsCompute::connect(&sdk, cluster.cluster, None);
    let workflow = SfnWorkflow::connect(&sdk);
    let reaper = &Reaper {
        settings: &settings,
        store: &store,
        compute: &compute,
        workflow: &workflow,
        clock: &SystemClock,
    };
    // The scheduled event carries nothing the reaper needs: every run looks at the
    // whole of the active sessions.
    lambda_runtime::run(service_fn(move |_: LambdaEvent<Value>| async move {
        let report = reaper.run().await?;
        metrics::emit(
            &[],
            &[
                (
                    metrics::ACTIVE_SESSIONS,
                    report.active_sessions as f64,
                    Unit::Count,
                ),
                (
                    metrics::ORPHANS_FOUND,
                    report.orphans.len() as f64,
                    Unit::Count,
                ),
                (
                    metrics::LOST_SESSIONS,
                    report.lost.len() as f64,
                    Unit::Count,
                ),
                (metrics::REAPER_ERRORS, report.errors as f64, Unit::Count),
            ],
        );
        output(&report)
    }))
    .await
}
