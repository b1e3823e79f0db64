//! Per-user persistent storage: one EFS access point per user on one file system.

use aws_sdk_efs::operation::create_access_point::CreateAccessPointError;
use aws_sdk_efs::types::{CreationInfo, PosixUser, RootDirectory, Tag};
use aws_sdk_efs::Client;

use crate::from_sdk;
use session_core::error::{Error, Result};
use session_core::ports::Storage;
use session_core::template::user_key;

/// The uid/gid of the `postgres` user in the official PostgreSQL image, which owns the
/// data directory.
pub const DATA_UID: i64 = 999;

#[derive(Clone, Debug)]
pub struct EfsStorage {
    client: Client,
    file_system_id: String,
}

impl EfsStorage {
    pub fn new(client: Client, file_system_id: String) -> Self {
        Self {
            client,
            file_system_id,
        }
    }

    pub fn connect(sdk: &aws_config::SdkConfig, file_system_id: String) -> Self {
        Self::new(Client::new(sdk), file_system_id)
    }

    /// The user's directory on the file system: keyed by a hash, so no personal data
    /// appears in paths.
    pub fn root_path(user_id: &str) -> String {
        format!("/users/{}", user_key(user_id))
    }
}

impl Storage for EfsStorage {
    async fn create_access_point(&self, user_id: &str) -> Result<String> {
        let invalid = |e: aws_sdk_efs::error::BuildError| Error::Aws {
            operation: "CreateAccessPoint",
            message: e.to_string(),
        };
        // Without CreationInfo the directory does not exist and the mount fails.
        let root = RootDirectory::builder()
            .path(Self::root_path(user_id))
            .creation_info(
                CreationInfo::builder()
                    .owner_uid(DATA_UID)
                    .owner_gid(DATA_UID)
                    .permissions("0700")
                    .build()
                    .map_err(invalid)?,
            )
            .build();
        let out = self
            .client
            .create_access_point()
            .file_system_id(&self.file_system_id)
            // Same user, same token: concurrent first launches get one access point.
            .client_token(format!("user-{}", user_key(user_id)))
            .posix_user(
                PosixUser::builder()
                    .uid(DATA_UID)
                    .gid(DATA_UID)
                    .build()
                    .map_err(invalid)?,
            )
            .root_directory(root)
            .tags(
                Tag::builder()
                    .key("user_key")
                    .value(user_key(user_id))
                    .build()
                    .map_err(invalid)?,
            )
            .send()
            .await;
        let id = match out {
            Ok(out) => out.access_point_id,
            // The token was used before (a launch that died after creating the access
            // point): EFS answers with the existing access point, which is this user's.
            Err(err) => match err.as_service_error() {
                Some(CreateAccessPointError::AccessPointAlreadyExists(existing))
                    if !existing.access_point_id().is_empty() =>
                {
                    tracing::info!(
                        access_point_id = existing.access_point_id(),
                        "access point already exists"
                    );
                    Some(existing.access_point_id().to_owned())
                }
                _ => return Err(from_sdk("CreateAccessPoint", err)),
            },
        };
        id.ok_or_else(|| Error::Aws {
            operation: "CreateAccessPoint",
            message: "no access point id".into(),
        })
    }
}

#[cfg(test)]
mod adapter_tests {
    use aws_sdk_efs::types::error::{AccessPointAlreadyExists, AccessPointLimitExceeded};
    use aws_smithy_mocks::{mock, mock_client};

    use super::*;

    #[tokio::test]
    async fn a_repeated_create_access_point_carries_on_with_the_existing_access_point() {
        let rule = mock!(aws_sdk_efs::Client::create_access_point)
            .match_requests(|r| {
                r.client_token() == Some(format!("user-{}", user_key("auth0|u")).as_str())
            })
            .then_error(|| {
                CreateAccessPointError::AccessPointAlreadyExists(
                    AccessPointAlreadyExists::builder()
                        .error_code("AccessPointAlreadyExists")
                        .message("Access point already exists with the given client token.")
                        .access_point_id("fsap-0123456789abcdef0")
                        .build()
                        .unwrap(),
                )
            });
        let efs = EfsStorage::new(mock_client!(aws_sdk_efs, [&rule]), "fs-1".into());
        assert_eq!(
            efs.create_access_point("auth0|u").await.unwrap(),
            "fsap-0123456789abcdef0"
        );
        assert_eq!(rule.num_calls(), 1);
    }

    #[tokio::test]
    async fn other_create_access_point_refusals_stay_errors() {
        let rule = mock!(aws_sdk_efs::Client::create_access_point).then_error(|| {
            CreateAccessPointError::AccessPointLimitExceeded(
                AccessPointLimitExceeded::builder()
                    .error_code("AccessPointLimitExceeded")
                    .build()
                    .unwrap(),
            )
        });
        let efs = EfsStorage::new(mock_client!(aws_sdk_efs, [&rule]), "fs-1".into());
        let err = efs.create_access_point("auth0|u").await.unwrap_err();
        assert_eq!(err.error_type(), "AwsError", "{err}");
    }
}
