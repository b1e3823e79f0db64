//! AWS adapters of the ports.

pub mod dynamodb;
#[cfg(feature = "ec2")]
pub mod ec2;
pub mod ecr;
pub mod ecs;
pub mod efs;
pub mod eventbridge;
#[cfg(feature = "iam")]
pub mod iam;
pub mod sfn;

/// Loads the SDK configuration once per process (region, credentials, and in tests
/// `AWS_ENDPOINT_URL` pointing at the emulator).
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}
