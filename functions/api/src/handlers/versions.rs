use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, RequestExt, Response};

use session_core::ports::{Clock, Registry, SessionStore, Workflow};
use session_core::versions::available_versions;

use crate::error::ApiError;
use crate::http::json_response;
use crate::view::VersionsView;
use crate::Api;

impl<S: SessionStore, W: Workflow, R: Registry, K: Clock> Api<S, W, R, K> {
    /// The versions a session may run, newest first ([`available_versions`]). Only a
    /// deployment that checks images looks into its registry (another account's may be
    /// out of its reach): without the check it lists none and says so, and a start
    /// takes any valid tag.
    pub(crate) async fn versions(&self, req: &Request) -> Result<Response<Body>, ApiError> {
        if let Some((name, _)) = req.query_string_parameters().iter().next() {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                format!("unknown query parameter {name:?}; this route takes none"),
            ));
        }
        if !self.admission.check_images {
            return Ok(json_response(
                StatusCode::OK,
                &VersionsView::not_listed().json(),
            ));
        }
        let versions = available_versions(&self.admission.template, &self.registry).await?;
        Ok(json_response(
            StatusCode::OK,
            &VersionsView::listed(&versions).json(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::fake;
    use crate::tests::alice;

    /// The template's versioned repositories (the default template's).
    const REPOSITORIES: [&str; 3] = ["api_service", "frontend", "suv_ui"];

    /// `images` with an image of `tags` in every repository, each its own digest.
    fn everywhere(images: fake::Images, digest: &str, tags: &[&str], at: &str) -> fake::Images {
        REPOSITORIES.iter().fold(images, |images, repository| {
            images.with(repository, &format!("{digest}-{repository}"), tags, at)
        })
    }

    /// `GET /versions` of alice on an api with `registry` and `env`.
    async fn versions<R: Registry>(registry: R, env: &[(&str, &str)], query: &str) -> (u16, Value) {
        let api = fake::api_with(fake::ReadOnlyStore::default(), registry, env);
        let get = fake::request("GET", "/versions", query, alice(json!({})), None);
        fake::answer(api.handle(get).await)
    }

    /// The listed versions as `(version, pushed_at, latest)`.
    fn listed(body: &Value) -> Vec<(&str, &str, bool)> {
        assert_eq!(body["listed"], true, "{body}");
        body["versions"]
            .as_array()
            .unwrap_or_else(|| panic!("a versions array: {body}"))
            .iter()
            .map(|v| {
                (
                    v["version"].as_str().unwrap(),
                    v["pushed_at"].as_str().unwrap(),
                    v["latest"].as_bool().unwrap(),
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn versions_are_the_tags_in_every_repository_newest_first() {
        let images = everywhere(
            fake::Images::default(),
            "a",
            &["2.0.0"],
            "2026-11-20T10:00:00Z",
        );
        let images = everywhere(images, "b", &["1.0.0"], "2026-11-01T10:00:00Z");
        // 1.9.1 is pushed after 2.0.0, its last image (suv_ui) later still: the newest.
        let images = images
            .with("api_service", "c1", &["1.9.1"], "2026-11-21T10:00:00Z")
            .with("frontend", "c2", &["1.9.1"], "2026-11-21T10:00:00Z")
            .with("suv_ui", "c3", &["1.9.1"], "2026-11-22T08:30:00Z");
        // 3.0.0 is missing from suv_ui; `-x` is a tag ECR allows but no version.
        let images = images
            .with("api_service", "d1", &["3.0.0"], "2026-11-23T10:00:00Z")
            .with("frontend", "d2", &["3.0.0"], "2026-11-23T10:00:00Z");
        let images = everywhere(images, "e", &["-x"], "2026-11-24T10:00:00Z");
        let (status, body) = versions(images, &[], "").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            listed(&body),
            [
                ("1.9.1", "2026-11-22T08:30:00.000Z", false),
                ("2.0.0", "2026-11-20T10:00:00.000Z", false),
                ("1.0.0", "2026-11-01T10:00:00.000Z", false),
            ]
        );
    }

    #[tokio::test]
    async fn the_version_latest_names_is_marked_and_latest_is_not_listed_beside_it() {
        let images = everywhere(
            fake::Images::default(),
            "a",
            &["1.1.0", "latest", "1.1"],
            "2026-11-20T10:00:00Z",
        );
        let images = everywhere(images, "b", &["1.0.0"], "2026-11-01T10:00:00Z");
        let (status, body) = versions(images, &[], "").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            listed(&body),
            [
                ("1.1.0", "2026-11-20T10:00:00.000Z", true),
                ("1.1", "2026-11-20T10:00:00.000Z", true),
                ("1.0.0", "2026-11-01T10:00:00.000Z", false),
            ]
        );
    }

    #[tokio::test]
    async fn latest_is_listed_itself_when_no_version_has_all_its_images() {
        // `latest` names 1.1.0's images but for suv_ui, where it names another build.
        let images = everywhere(
            fake::Images::default(),
            "a",
            &["1.1.0"],
            "2026-11-20T10:00:00Z",
        );
        let images = images
            .with(
                "api_service",
                "a-api_service",
                &["latest"],
                "2026-11-20T10:00:00Z",
            )
            .with(
                "frontend",
                "a-frontend",
                &["latest"],
                "2026-11-20T10:00:00Z",
            )
            .with("suv_ui", "f", &["latest"], "2026-11-25T10:00:00Z");
        let (status, body) = versions(images, &[], "").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            listed(&body),
            [
                ("latest", "2026-11-25T10:00:00.000Z", true),
                ("1.1.0", "2026-11-20T10:00:00.000Z", false),
            ]
        );
    }

    #[tokio::test]
    async fn no_tag_in_every_repository_lists_no_version() {
        let images = fake::Images::default()
            .with(
                "api_service",
                "a",
                &["1.0.0", "latest"],
                "2026-11-20T10:00:00Z",
            )
            .with(
                "frontend",
                "b",
                &["1.0.0", "latest"],
                "2026-11-20T10:00:00Z",
            );
        let (status, body) = versions(images, &[], "").await;
        assert_eq!((status, listed(&body)), (200, vec![]), "{body}");
    }

    #[tokio::test]
    async fn without_the_image_check_no_version_is_listed_and_the_registry_is_not_asked() {
        let (status, body) = versions(fake::Unreached, &[("CHECK_IMAGES", "false")], "").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body, json!({"listed": false, "versions": []}));
    }

    #[tokio::test]
    async fn a_query_parameter_on_versions_is_a_400() {
        let (status, body) = versions(fake::Unreached, &[], "limit=1").await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("invalid_parameter")),
            "{body}"
        );
    }
}
