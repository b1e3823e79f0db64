//! Per-user persistent storage: one EFS access point per user on one file system.

use aws_sdk_efs::types::{CreationInfo, PosixUser, RootDirectory, Tag};
use aws_sdk_efs::Client;

use crate::error::{Error, Result};
use crate::ports::Storage;
use crate::template::user_key;

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
            .await
            .map_err(|e| Error::from_sdk("CreateAccessPoint", e))?;
        out.access_point_id.ok_or_else(|| Error::Aws {
            operation: "CreateAccessPoint",
            message: "no access point id".into(),
        })
    }
}
