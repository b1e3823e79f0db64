//! Image lookups in ECR.

use aws_sdk_ecr::types::{DescribeImagesFilter, ImageDetail, ImageIdentifier, TagStatus};
use aws_sdk_ecr::Client;

use crate::from_sdk;
use session_core::error::Result;
use session_core::ports::{Registry, TaggedImage};

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
            Err(err) => Err(from_sdk("DescribeImages", err)),
        }
    }

    async fn tagged_images(&self, repository: &str) -> Result<Vec<TaggedImage>> {
        let mut details = self
            .client
            .describe_images()
            .repository_name(repository)
            .filter(
                DescribeImagesFilter::builder()
                    .tag_status(TagStatus::Tagged)
                    .build(),
            )
            .into_paginator()
            .items()
            .send();
        let mut images = Vec::new();
        while let Some(detail) = details.next().await {
            match detail {
                Ok(detail) => images.extend(tagged(&detail)),
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|e| e.is_repository_not_found_exception()) =>
                {
                    return Ok(Vec::new())
                }
                Err(err) => return Err(from_sdk("DescribeImages", err)),
            }
        }
        Ok(images)
    }
}

/// An image with at least one tag. ECR gives every pushed image its digest and push
/// time; an untagged image is left out here too, where the filter is ignored (moto).
fn tagged(detail: &ImageDetail) -> Option<TaggedImage> {
    let pushed_at = detail.image_pushed_at()?;
    let image = TaggedImage {
        digest: detail.image_digest()?.to_owned(),
        tags: detail.image_tags().to_vec(),
        pushed_at: chrono::DateTime::from_timestamp(pushed_at.secs(), pushed_at.subsec_nanos())?,
    };
    (!image.tags.is_empty()).then_some(image)
}

#[cfg(test)]
mod tests {
    use aws_sdk_ecr::operation::describe_images::{DescribeImagesError, DescribeImagesOutput};
    use aws_sdk_ecr::types::error::RepositoryNotFoundException;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    use super::*;

    fn image(digest: &str, tags: &[&str], pushed_at: i64) -> ImageDetail {
        ImageDetail::builder()
            .image_digest(digest)
            .set_image_tags(Some(tags.iter().map(|t| t.to_string()).collect()))
            .image_pushed_at(aws_smithy_types::DateTime::from_secs(pushed_at))
            .build()
    }

    #[tokio::test]
    async fn tagged_images_follow_every_page_and_leave_untagged_images_out() {
        let first = mock!(aws_sdk_ecr::Client::describe_images)
            .match_requests(|r| {
                r.repository_name() == Some("frontend")
                    && r.next_token().is_none()
                    && r.filter().and_then(|f| f.tag_status()) == Some(&TagStatus::Tagged)
            })
            .then_output(|| {
                DescribeImagesOutput::builder()
                    .image_details(image("sha256:a", &["1.0.0", "latest"], 1_700_000_000))
                    .image_details(image("sha256:u", &[], 1_700_000_100))
                    .next_token("page-2")
                    .build()
            });
        let second = mock!(aws_sdk_ecr::Client::describe_images)
            .match_requests(|r| r.next_token() == Some("page-2"))
            .then_output(|| {
                DescribeImagesOutput::builder()
                    .image_details(image("sha256:b", &["1.1.0"], 1_700_000_200))
                    .build()
            });
        let registry = EcrRegistry::new(mock_client!(
            aws_sdk_ecr,
            RuleMode::MatchAny,
            [&first, &second]
        ));
        let images = registry.tagged_images("frontend").await.unwrap();
        let seen: Vec<(&str, Vec<&str>, i64)> = images
            .iter()
            .map(|i| {
                (
                    i.digest.as_str(),
                    i.tags.iter().map(String::as_str).collect(),
                    i.pushed_at.timestamp(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("sha256:a", vec!["1.0.0", "latest"], 1_700_000_000),
                ("sha256:b", vec!["1.1.0"], 1_700_000_200),
            ]
        );
        assert_eq!((first.num_calls(), second.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn a_repository_that_does_not_exist_has_no_images() {
        let missing = mock!(aws_sdk_ecr::Client::describe_images).then_error(|| {
            DescribeImagesError::RepositoryNotFoundException(
                RepositoryNotFoundException::builder()
                    .message("The repository with name 'suv_ui' does not exist")
                    .build(),
            )
        });
        let registry = EcrRegistry::new(mock_client!(aws_sdk_ecr, [&missing]));
        assert_eq!(registry.tagged_images("suv_ui").await.unwrap(), vec![]);
    }
}
