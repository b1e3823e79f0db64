//! Per-user task roles in IAM: each user's tasks run with a role whose only right, by a
//! shared policy conditioned on its `access_point_id` tag, is to mount that user's EFS
//! access point (terraform/ecs.tf). The file-system policy denies every other
//! combination (terraform/data.tf).

use aws_sdk_iam::config::http::HttpResponse;
use aws_sdk_iam::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_iam::types::{Role, Tag};
use aws_sdk_iam::Client;

use crate::from_sdk;
use session_core::config::TaskRoleSettings;
use session_core::error::{Error, Result};
use session_core::ports::TaskRoles;
use session_core::template::user_key;

/// The role tag the shared policy and the file-system policy read as
/// `aws:PrincipalTag/access_point_id`.
pub const ACCESS_POINT_TAG: &str = "access_point_id";
/// The role tag naming its user, as on the access point and the tasks.
pub const USER_KEY_TAG: &str = "user_key";

#[derive(Clone, Debug)]
pub struct IamTaskRoles {
    client: Client,
    settings: TaskRoleSettings,
}

/// IAM errors that a retry outlives: throttling and 5xx as everywhere, and two of
/// IAM's own answers to concurrent changes of one role.
fn iam_error<E>(operation: &'static str, err: SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match err.code() {
        Some(code @ ("ConcurrentModification" | "NoSuchEntity")) => Error::Transient {
            operation,
            message: format!("{code}: {}", err.message().unwrap_or_default()),
        },
        _ => from_sdk(operation, err),
    }
}

impl IamTaskRoles {
    pub fn new(client: Client, settings: TaskRoleSettings) -> Self {
        Self { client, settings }
    }

    pub fn connect(sdk: &aws_config::SdkConfig, settings: TaskRoleSettings) -> Self {
        Self::new(Client::new(sdk), settings)
    }

    /// Only ECS tasks, and only those of this account (the confused-deputy guard ECS
    /// documents), may assume a user's role.
    pub fn trust_policy(&self) -> String {
        serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": { "Service": "ecs-tasks.amazonaws.com" },
                "Action": "sts:AssumeRole",
                "Condition": {
                    "StringEquals": { "aws:SourceAccount": self.settings.account }
                }
            }]
        })
        .to_string()
    }

    fn tags(user_id: &str, access_point_id: &str) -> Result<Vec<Tag>> {
        [
            (USER_KEY_TAG, user_key(user_id)),
            (ACCESS_POINT_TAG, access_point_id.to_owned()),
        ]
        .into_iter()
        .map(|(key, value)| {
            Tag::builder()
                .key(key)
                .value(value)
                .build()
                .map_err(|e| Error::Aws {
                    operation: "CreateRole",
                    message: e.to_string(),
                })
        })
        .collect()
    }

    /// A role of this name exists: another launch of the user made it, or a launch that
    /// died before storing it. It is used only if it is one of ours (our path and
    /// boundary); its access point tag is set right if it differs.
    async fn existing(&self, name: &str, user_id: &str, access_point_id: &str) -> Result<String> {
        let out = self
            .client
            .get_role()
            .role_name(name)
            .send()
            .await
            .map_err(|e| iam_error("GetRole", e))?;
        let role = out.role().ok_or_else(|| Error::Aws {
            operation: "GetRole",
            message: format!("no role in the answer for {name}"),
        })?;
        self.check(role)?;
        let tagged = role
            .tags()
            .iter()
            .any(|t| t.key() == ACCESS_POINT_TAG && t.value() == access_point_id);
        if !tagged {
            tracing::warn!(
                role = name,
                access_point_id,
                "the user's task role names another access point: tagging it anew"
            );
            self.client
                .tag_role()
                .role_name(name)
                .set_tags(Some(Self::tags(user_id, access_point_id)?))
                .send()
                .await
                .map_err(|e| iam_error("TagRole", e))?;
        }
        Ok(role.arn().to_owned())
    }

    /// A role outside our path or without our boundary was not made by Launch, and is
    /// never handed to a task.
    fn check(&self, role: &Role) -> Result<()> {
        let boundary = role
            .permissions_boundary()
            .and_then(|b| b.permissions_boundary_arn());
        if role.path() != self.settings.path || boundary != Some(&self.settings.boundary_arn) {
            return Err(Error::Aws {
                operation: "GetRole",
                message: format!(
                    "role {} exists with path {} and boundary {boundary:?}, not {} and {}: \
                     it was not made by Launch, so no task gets it",
                    role.role_name(),
                    role.path(),
                    self.settings.path,
                    self.settings.boundary_arn
                ),
            });
        }
        Ok(())
    }
}

impl TaskRoles for IamTaskRoles {
    async fn ensure_task_role(&self, user_id: &str, access_point_id: &str) -> Result<String> {
        let name = self.settings.role_name(user_id);
        let created = self
            .client
            .create_role()
            .role_name(&name)
            .path(&self.settings.path)
            .assume_role_policy_document(self.trust_policy())
            .permissions_boundary(&self.settings.boundary_arn)
            .description("A session user's task role: mounts that user's EFS access point only.")
            .set_tags(Some(Self::tags(user_id, access_point_id)?))
            .send()
            .await;
        let arn = match created {
            Ok(out) => out
                .role()
                .map(|r| r.arn().to_owned())
                .ok_or_else(|| Error::Aws {
                    operation: "CreateRole",
                    message: "no role in the answer".into(),
                })?,
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_entity_already_exists_exception()) =>
            {
                self.existing(&name, user_id, access_point_id).await?
            }
            Err(err) => return Err(iam_error("CreateRole", err)),
        };
        // Attaching an attached policy succeeds, so this also completes a role whose
        // creator died before attaching.
        self.client
            .attach_role_policy()
            .role_name(&name)
            .policy_arn(&self.settings.policy_arn)
            .send()
            .await
            .map_err(|e| iam_error("AttachRolePolicy", e))?;
        tracing::info!(role_arn = arn, "user task role ready");
        Ok(arn)
    }
}

#[cfg(test)]
mod adapter_tests {
    use std::sync::{Arc, Mutex};

    use aws_sdk_iam::operation::attach_role_policy::AttachRolePolicyOutput;
    use aws_sdk_iam::operation::create_role::{CreateRoleError, CreateRoleOutput};
    use aws_sdk_iam::operation::get_role::GetRoleOutput;
    use aws_sdk_iam::operation::tag_role::TagRoleOutput;
    use aws_sdk_iam::types::error::EntityAlreadyExistsException;
    use aws_sdk_iam::types::AttachedPermissionsBoundary;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    use super::*;

    const BOUNDARY: &str = "arn:aws:iam::123456789012:policy/sessions/task-boundary";
    const POLICY: &str = "arn:aws:iam::123456789012:policy/sessions/task-user-data";
    const USER: &str = "auth0|ab c@é";

    fn settings() -> TaskRoleSettings {
        TaskRoleSettings {
            path: "/sessions/users/".into(),
            boundary_arn: BOUNDARY.into(),
            policy_arn: POLICY.into(),
            name_prefix: "sessions".into(),
            account: "123456789012".into(),
        }
    }

    fn name() -> String {
        format!("sessions-{}", user_key(USER))
    }

    fn arn() -> String {
        format!("arn:aws:iam::123456789012:role/sessions/users/{}", name())
    }

    fn role(path: &str, boundary: Option<&str>, access_point: &str) -> Role {
        Role::builder()
            .path(path)
            .role_name(name())
            .role_id("AROAEXAMPLE")
            .arn(arn())
            .create_date(aws_smithy_types::DateTime::from_secs(0))
            .set_permissions_boundary(boundary.map(|b| {
                AttachedPermissionsBoundary::builder()
                    .permissions_boundary_arn(b)
                    .build()
            }))
            .tags(
                Tag::builder()
                    .key(ACCESS_POINT_TAG)
                    .value(access_point)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    }

    fn already_exists() -> CreateRoleError {
        CreateRoleError::EntityAlreadyExistsException(
            EntityAlreadyExistsException::builder()
                .message("Role with name sessions-x already exists.")
                .build(),
        )
    }

    #[tokio::test]
    async fn a_new_role_has_the_path_boundary_trust_tags_and_shared_policy() {
        let seen = Arc::new(Mutex::new(None));
        let sent = seen.clone();
        let create = mock!(aws_sdk_iam::Client::create_role)
            .match_requests(move |r| {
                *sent.lock().unwrap() = Some(r.clone());
                true
            })
            .then_output(|| {
                CreateRoleOutput::builder()
                    .role(role("/sessions/users/", Some(BOUNDARY), "fsap-1"))
                    .build()
            });
        let attach = mock!(aws_sdk_iam::Client::attach_role_policy)
            .match_requests(|r| {
                r.role_name() == Some(name().as_str()) && r.policy_arn() == Some(POLICY)
            })
            .then_output(|| AttachRolePolicyOutput::builder().build());
        let roles = IamTaskRoles::new(mock_client!(aws_sdk_iam, [&create, &attach]), settings());
        assert_eq!(roles.ensure_task_role(USER, "fsap-1").await.unwrap(), arn());
        assert_eq!(attach.num_calls(), 1);

        let request = seen.lock().unwrap().clone().unwrap();
        assert_eq!(request.role_name(), Some(name().as_str()));
        assert_eq!(request.path(), Some("/sessions/users/"));
        assert_eq!(request.permissions_boundary(), Some(BOUNDARY));
        let tags: Vec<(&str, &str)> = request
            .tags()
            .iter()
            .map(|t| (t.key(), t.value()))
            .collect();
        assert!(tags.contains(&(ACCESS_POINT_TAG, "fsap-1")), "{tags:?}");
        assert!(
            tags.contains(&(USER_KEY_TAG, user_key(USER).as_str())),
            "{tags:?}"
        );
        for (key, value) in tags {
            assert!(!value.contains("auth0") && !key.contains("auth0"));
        }
        let trust: serde_json::Value =
            serde_json::from_str(request.assume_role_policy_document().unwrap()).unwrap();
        let statement = &trust["Statement"][0];
        assert_eq!(statement["Principal"]["Service"], "ecs-tasks.amazonaws.com");
        assert_eq!(
            statement["Condition"]["StringEquals"]["aws:SourceAccount"],
            "123456789012"
        );
    }

    #[tokio::test]
    async fn a_role_another_launch_made_is_checked_and_completed() {
        let create = mock!(aws_sdk_iam::Client::create_role).then_error(already_exists);
        let get = mock!(aws_sdk_iam::Client::get_role)
            .match_requests(|r| r.role_name() == Some(name().as_str()))
            .then_output(|| {
                GetRoleOutput::builder()
                    .role(role("/sessions/users/", Some(BOUNDARY), "fsap-1"))
                    .build()
            });
        let tag =
            mock!(aws_sdk_iam::Client::tag_role).then_output(|| TagRoleOutput::builder().build());
        let attach = mock!(aws_sdk_iam::Client::attach_role_policy)
            .then_output(|| AttachRolePolicyOutput::builder().build());
        let roles = IamTaskRoles::new(
            mock_client!(
                aws_sdk_iam,
                RuleMode::MatchAny,
                [&create, &get, &tag, &attach]
            ),
            settings(),
        );
        assert_eq!(roles.ensure_task_role(USER, "fsap-1").await.unwrap(), arn());
        assert_eq!(
            (get.num_calls(), tag.num_calls(), attach.num_calls()),
            (1, 0, 1)
        );

        // Tagged for another access point (the user's was replaced): tagged anew.
        assert_eq!(roles.ensure_task_role(USER, "fsap-2").await.unwrap(), arn());
        assert_eq!(tag.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_role_of_that_name_outside_our_path_or_boundary_is_refused() {
        for (path, boundary) in [
            ("/", Some(BOUNDARY)),
            ("/sessions/users/", None),
            (
                "/sessions/users/",
                Some("arn:aws:iam::123456789012:policy/other"),
            ),
        ] {
            let create = mock!(aws_sdk_iam::Client::create_role).then_error(already_exists);
            let get = mock!(aws_sdk_iam::Client::get_role).then_output(move || {
                GetRoleOutput::builder()
                    .role(role(path, boundary, "fsap-1"))
                    .build()
            });
            let attach = mock!(aws_sdk_iam::Client::attach_role_policy)
                .then_output(|| AttachRolePolicyOutput::builder().build());
            let roles = IamTaskRoles::new(
                mock_client!(aws_sdk_iam, RuleMode::MatchAny, [&create, &get, &attach]),
                settings(),
            );
            let err = roles.ensure_task_role(USER, "fsap-1").await.unwrap_err();
            assert_eq!(err.error_type(), "AwsError", "{path} {boundary:?}: {err}");
            assert!(err.to_string().contains("not made by Launch"), "{err}");
            assert_eq!(attach.num_calls(), 0, "{path} {boundary:?}");
        }
    }
}
