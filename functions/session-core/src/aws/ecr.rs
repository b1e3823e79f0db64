//! Image lookups in ECR.

use aws_sdk_ecr::types::ImageIdentifier;
use aws_sdk_ecr::Client;

use crate::error::{Error, Result};
use crate::ports::Registry;

#[derive(Clone, Debug)]
pub struct EcrRegistry {
    client: Client,
}

impl EcrRegistry {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    pub fn connect(sdk: &aws_config::SdkConfig) -> Self {
        Self::new(Client::new(sdk))
    }
}

impl Registry for EcrRegistry {
    async fn image_exists(&self, repository: &str, tag: &str) -> Result<bool> {
        let result = self
            .client
            .describe_images()
            .repository_name(repository)
            .image_ids(ImageIdentifier::builder().image_tag(tag).build())
            .send()
            .await;
        match result {
            Ok(out) => Ok(!out.image_details().is_empty()),
            Err(err)
                if err.as_service_error().is_some_and(|e| {
                    e.is_image_not_found_exception() || e.is_repository_not_found_exception()
                }) =>
            {
                Ok(false)
            }
            Err(err) => Err(Error::from_sdk("DescribeImages", err)),
        }
    }
}
