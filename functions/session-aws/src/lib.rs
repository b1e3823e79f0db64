//! The AWS adapters of the domain's ports, one module per service, each behind the
//! cargo feature of its name so that a function links only the SDKs it calls; and the
//! Lambda glue every function shares (decoding its input, encoding its output,
//! reporting its errors under the names the state machine matches).

#[cfg(feature = "dynamodb")]
pub mod dynamodb;
#[cfg(feature = "ec2")]
pub mod ec2;
#[cfg(feature = "ecr")]
pub mod ecr;
#[cfg(feature = "ecs")]
pub mod ecs;
#[cfg(feature = "efs")]
pub mod efs;
#[cfg(feature = "eventbridge")]
pub mod eventbridge;
#[cfg(feature = "iam")]
pub mod iam;
pub mod lambda;
#[cfg(feature = "sfn")]
pub mod sfn;

mod sdk_error;

pub(crate) use sdk_error::from_sdk;

/// Loads the SDK configuration once per process (region, credentials, and in tests
/// `AWS_ENDPOINT_URL` pointing at the emulator).
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}
