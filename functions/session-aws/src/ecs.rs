//! Session tasks on ECS Fargate.

use std::collections::BTreeSet;

use aws_sdk_ecs::error::ProvideErrorMetadata;
use aws_sdk_ecs::operation::stop_task::StopTaskError;
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, CapacityProviderStrategyItem, Compatibility,
    ContainerCondition, ContainerDefinition, ContainerDependency, DesiredStatus,
    EfsAuthorizationConfig, EfsAuthorizationConfigIam, EfsTransitEncryption,
    EfsVolumeConfiguration, Failure, HealthCheck, KeyValuePair, LaunchType, LogConfiguration,
    LogDriver, MountPoint, NetworkConfiguration, NetworkMode, PortMapping, Tag, TransportProtocol,
    Volume,
};
use aws_sdk_ecs::Client;

use crate::from_sdk;
use session_core::config::{Capacity, LaunchSettings};
use session_core::error::{Error, Result};
use session_core::ports::{Compute, TaskLaunch, TaskSummary};
use session_core::session::SessionId;
use session_core::template::{user_key, TaskDefinitionSpec, USER_DATA_VOLUME};

#[derive(Clone, Debug)]
pub struct EcsCompute {
    client: Client,
    cluster: String,
    placement: Option<Placement>,
}

/// Where tasks run; only Launch needs it.
#[derive(Clone, Debug)]
pub struct Placement {
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    pub assign_public_ip: bool,
    pub capacity: Capacity,
}

impl From<&LaunchSettings> for Placement {
    fn from(s: &LaunchSettings) -> Self {
        Self {
            subnets: s.subnets.clone(),
            security_groups: s.security_groups.clone(),
            assign_public_ip: s.assign_public_ip,
            capacity: s.capacity,
        }
    }
}

fn build_err(operation: &'static str, e: impl std::fmt::Display) -> Error {
    Error::Aws {
        operation,
        message: format!("invalid request: {e}"),
    }
}

/// Turns RunTask's `failures[]` (capacity problems come back as HTTP 200) into an error.
pub fn launch_failure(failures: &[Failure]) -> Error {
    let describe = |f: &Failure| {
        format!(
            "{}{}",
            f.reason().unwrap_or("unknown"),
            f.detail().map(|d| format!(" ({d})")).unwrap_or_default()
        )
    };
    let message = failures.iter().map(describe).collect::<Vec<_>>().join("; ");
    if failures
        .iter()
        .any(|f| is_role_not_yet_assumable(f.reason().unwrap_or_default()))
    {
        return Error::Transient {
            operation: "RunTask",
            message,
        };
    }
    let capacity = failures.iter().any(|f| {
        let reason = f.reason().unwrap_or_default();
        reason.starts_with("RESOURCE:")
            || reason.contains("Capacity is unavailable")
            || reason.contains("capacity")
    });
    if capacity {
        Error::CapacityUnavailable(message)
    } else {
        Error::LaunchFailed(message)
    }
}

/// ECS's answer when it cannot assume a task's role: "ECS was unable to assume the role
/// '<arn>' that was provided for this task. Please verify that the role being passed has
/// the proper trust relationship and permissions...". For a user's role made seconds ago
/// this is IAM's eventual consistency, which a retry outlives.
fn is_role_not_yet_assumable(message: &str) -> bool {
    message
        .to_ascii_lowercase()
        .contains("unable to assume the role")
}

/// ECS's answer to RunTask on a deregistered (INACTIVE) revision: a `ClientException`
/// (an `InvalidParameterException` for some callers) "TaskDefinition is inactive".
fn is_inactive_task_definition(code: Option<&str>, message: Option<&str>) -> bool {
    let message = message.unwrap_or_default().to_ascii_lowercase();
    matches!(code, Some("ClientException" | "InvalidParameterException"))
        && message.contains("inactive")
        && (message.contains("taskdefinition") || message.contains("task definition"))
}

/// ECS's message when StopTask names a task it does not know (any more):
/// "The referenced task was not found."
fn is_task_not_found(message: &str) -> bool {
    message.to_ascii_lowercase().contains("task was not found")
}

impl EcsCompute {
    pub fn new(client: Client, cluster: String, placement: Option<Placement>) -> Self {
        Self {
            client,
            cluster,
            placement,
        }
    }

    pub fn connect(
        sdk: &aws_config::SdkConfig,
        cluster: String,
        placement: Option<Placement>,
    ) -> Self {
        Self::new(Client::new(sdk), cluster, placement)
    }

    fn container(
        spec: &session_core::template::ContainerSpec,
        def: &TaskDefinitionSpec,
    ) -> Result<ContainerDefinition> {
        let mut c = ContainerDefinition::builder()
            .name(&spec.name)
            .image(&spec.image)
            .essential(spec.essential)
            .memory(spec.memory as i32)
            .set_command((!spec.command.is_empty()).then(|| spec.command.clone()))
            .set_cpu(spec.cpu.map(|c| c as i32))
            .set_stop_timeout(spec.stop_timeout_s.map(|s| s as i32))
            .log_configuration(
                LogConfiguration::builder()
                    .log_driver(LogDriver::Awslogs)
                    .options("awslogs-group", &def.log_group)
                    .options("awslogs-region", &def.region)
                    .options("awslogs-stream-prefix", &spec.name)
                    .build()
                    .map_err(|e| build_err("RegisterTaskDefinition", e))?,
            );
        for (name, value) in &spec.environment {
            c = c.environment(KeyValuePair::builder().name(name).value(value).build());
        }
        if let Some(port) = spec.port {
            c = c.port_mappings(
                PortMapping::builder()
                    .container_port(i32::from(port))
                    .protocol(TransportProtocol::Tcp)
                    .build(),
            );
        }
        if let Some(path) = &spec.user_data_path {
            c = c.mount_points(
                MountPoint::builder()
                    .source_volume(USER_DATA_VOLUME)
                    .container_path(path)
                    .read_only(false)
                    .build(),
            );
        }
        if let Some(check) = &spec.health_check {
            c = c.health_check(
                HealthCheck::builder()
                    .set_command(Some(check.command.clone()))
                    .interval(check.interval_s as i32)
                    .timeout(check.timeout_s as i32)
                    .retries(check.retries as i32)
                    .start_period(check.start_period_s as i32)
                    .build()
                    .map_err(|e| build_err("RegisterTaskDefinition", e))?,
            );
        }
        for dependency in &spec.depends_on_healthy {
            c = c.depends_on(
                ContainerDependency::builder()
                    .container_name(dependency)
                    .condition(ContainerCondition::Healthy)
                    .build()
                    .map_err(|e| build_err("RegisterTaskDefinition", e))?,
            );
        }
        Ok(c.build())
    }
}

impl EcsCompute {
    /// The tasks started for the session with this desired status.
    async fn list_started_by(&self, id: &SessionId, desired: DesiredStatus) -> Result<Vec<String>> {
        let mut arns = Vec::new();
        let mut pages = self
            .client
            .list_tasks()
            .cluster(&self.cluster)
            .started_by(id.as_str())
            .desired_status(desired)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            match page {
                Ok(page) => arns.extend(page.task_arns().iter().cloned()),
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|e| e.is_cluster_not_found_exception()) =>
                {
                    break
                }
                Err(err) => return Err(from_sdk("ListTasks", err)),
            }
        }
        Ok(arns)
    }
}

impl Compute for EcsCompute {
    async fn register_task_definition(&self, spec: &TaskDefinitionSpec) -> Result<String> {
        let containers = spec
            .containers
            .iter()
            .map(|c| Self::container(c, spec))
            .collect::<Result<Vec<_>>>()?;
        let volume = Volume::builder()
            .name(USER_DATA_VOLUME)
            .efs_volume_configuration(
                EfsVolumeConfiguration::builder()
                    .file_system_id(&spec.efs_file_system_id)
                    .transit_encryption(EfsTransitEncryption::Enabled)
                    .authorization_config(
                        EfsAuthorizationConfig::builder()
                            .access_point_id(&spec.efs_access_point_id)
                            .iam(EfsAuthorizationConfigIam::Enabled)
                            .build(),
                    )
                    .build()
                    .map_err(|e| build_err("RegisterTaskDefinition", e))?,
            )
            .build();
        let out = self
            .client
            .register_task_definition()
            .family(&spec.family)
            .requires_compatibilities(Compatibility::Fargate)
            .network_mode(NetworkMode::Awsvpc)
            .cpu(spec.cpu.to_string())
            .memory(spec.memory.to_string())
            .execution_role_arn(&spec.execution_role_arn)
            .task_role_arn(&spec.task_role_arn)
            .set_container_definitions(Some(containers))
            .volumes(volume)
            .tags(
                Tag::builder()
                    .key("fingerprint")
                    .value(spec.fingerprint())
                    .build(),
            )
            .send()
            .await
            .map_err(|e| from_sdk("RegisterTaskDefinition", e))?;
        out.task_definition
            .and_then(|d| d.task_definition_arn)
            .ok_or_else(|| Error::Aws {
                operation: "RegisterTaskDefinition",
                message: "no ARN in the answer".into(),
            })
    }

    async fn run_task(&self, launch: &TaskLaunch<'_>) -> Result<String> {
        let placement = self.placement.as_ref().ok_or_else(|| {
            Error::LaunchFailed("this function has no task placement configured".into())
        })?;
        let network = NetworkConfiguration::builder()
            .awsvpc_configuration(
                AwsVpcConfiguration::builder()
                    .set_subnets(Some(placement.subnets.clone()))
                    .set_security_groups(Some(placement.security_groups.clone()))
                    .assign_public_ip(if placement.assign_public_ip {
                        AssignPublicIp::Enabled
                    } else {
                        AssignPublicIp::Disabled
                    })
                    .build()
                    .map_err(|e| build_err("RunTask", e))?,
            )
            .build();
        let request = self
            .client
            .run_task()
            .cluster(&self.cluster)
            .task_definition(launch.task_definition_arn)
            .count(1)
            .network_configuration(network)
            // The session id makes a retried RunTask return the original task.
            .client_token(launch.session_id.as_str())
            .started_by(launch.session_id.as_str())
            .tags(
                Tag::builder()
                    .key("session_id")
                    .value(launch.session_id.as_str())
                    .build(),
            )
            // Tags reach CloudTrail and cost reports, and ECS refuses values such as
            // `auth0|abc`: the hashed key names the user, as in the task family and on EFS.
            .tags(
                Tag::builder()
                    .key("user_key")
                    .value(user_key(launch.user_id))
                    .build(),
            )
            .enable_ecs_managed_tags(true);
        let request = match placement.capacity {
            Capacity::Fargate => request.launch_type(LaunchType::Fargate),
            Capacity::FargateSpot => request.capacity_provider_strategy(
                CapacityProviderStrategyItem::builder()
                    .capacity_provider("FARGATE_SPOT")
                    .weight(1)
                    .build()
                    .map_err(|e| build_err("RunTask", e))?,
            ),
        };
        let out = match request.send().await {
            Ok(out) => out,
            Err(err) if is_inactive_task_definition(err.code(), err.message()) => {
                return Err(Error::TaskDefinitionInactive(format!(
                    "{}: {}",
                    launch.task_definition_arn,
                    err.message().unwrap_or_default()
                )))
            }
            Err(err) if err.message().is_some_and(is_role_not_yet_assumable) => {
                return Err(Error::Transient {
                    operation: "RunTask",
                    message: err.message().unwrap_or_default().to_owned(),
                })
            }
            Err(err) => return Err(from_sdk("RunTask", err)),
        };
        if !out.failures().is_empty() {
            return Err(launch_failure(out.failures()));
        }
        out.tasks()
            .first()
            .and_then(|t| t.task_arn.clone())
            .ok_or_else(|| Error::LaunchFailed("RunTask answered no task and no failure".into()))
    }

    async fn stop_task(&self, task_arn: &str, reason: &str) -> Result<()> {
        let reason: String = reason.chars().take(255).collect();
        let result = self
            .client
            .stop_task()
            .cluster(&self.cluster)
            .task(task_arn)
            .reason(reason)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Stopping what is already stopped or gone is success. ECS answers
            // InvalidParameterException to many bad requests; only its "not found" means gone.
            Err(err)
                if err.as_service_error().is_some_and(|e| match e {
                    StopTaskError::ClusterNotFoundException(_) => true,
                    StopTaskError::InvalidParameterException(e) => {
                        e.message().is_some_and(is_task_not_found)
                    }
                    _ => false,
                }) =>
            {
                tracing::info!(task_arn, "task already stopped or gone");
                Ok(())
            }
            Err(err) => Err(from_sdk("StopTask", err)),
        }
    }

    async fn tasks_started_by(&self, id: &SessionId) -> Result<Vec<String>> {
        self.list_started_by(id, DesiredStatus::Running).await
    }

    async fn tasks_not_stopped(&self, id: &SessionId, known: &[String]) -> Result<Vec<String>> {
        let mut arns: BTreeSet<String> = known.iter().cloned().collect();
        // A task asked to stop is listed under its desired status STOPPED while it
        // still runs; ECS keeps stopped tasks listed for at least an hour.
        for desired in [DesiredStatus::Running, DesiredStatus::Stopped] {
            arns.extend(self.list_started_by(id, desired).await?);
        }
        let arns: Vec<String> = arns.into_iter().collect();
        let mut up = Vec::new();
        // DescribeTasks takes at most 100 tasks a call; one it no longer knows is
        // reported as a failure (MISSING), which means long gone.
        for chunk in arns.chunks(100) {
            let described = match self
                .client
                .describe_tasks()
                .cluster(&self.cluster)
                .set_tasks(Some(chunk.to_vec()))
                .send()
                .await
            {
                Ok(described) => described,
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|e| e.is_cluster_not_found_exception()) =>
                {
                    return Ok(Vec::new())
                }
                Err(err) => return Err(from_sdk("DescribeTasks", err)),
            };
            up.extend(
                described
                    .tasks()
                    .iter()
                    .filter(|t| t.last_status() != Some("STOPPED"))
                    .filter_map(|t| t.task_arn().map(str::to_owned)),
            );
        }
        Ok(up)
    }

    async fn running_tasks(&self) -> Result<Vec<TaskSummary>> {
        let mut arns = Vec::new();
        let mut pages = self
            .client
            .list_tasks()
            .cluster(&self.cluster)
            .desired_status(DesiredStatus::Running)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            arns.extend(
                page.map_err(|e| from_sdk("ListTasks", e))?
                    .task_arns()
                    .iter()
                    .cloned(),
            );
        }
        let mut tasks = Vec::with_capacity(arns.len());
        // DescribeTasks takes at most 100 tasks a call.
        for chunk in arns.chunks(100) {
            let described = self
                .client
                .describe_tasks()
                .cluster(&self.cluster)
                .set_tasks(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| from_sdk("DescribeTasks", e))?;
            tasks.extend(
                described
                    .tasks()
                    .iter()
                    .filter(|t| t.last_status() != Some("STOPPED"))
                    .map(|t| TaskSummary {
                        task_arn: t.task_arn().unwrap_or_default().to_owned(),
                        started_by: t.started_by().map(str::to_owned),
                        created_at: t.created_at().and_then(|d| {
                            chrono::DateTime::from_timestamp(d.secs(), d.subsec_nanos())
                        }),
                    }),
            );
        }
        Ok(tasks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(reason: &str) -> Failure {
        Failure::builder()
            .reason(reason)
            .arn("arn:aws:ecs:eu-west-1:1:task/x")
            .build()
    }

    #[test]
    fn capacity_failures_are_capacity_unavailable() {
        let err = launch_failure(&[failure(
            "Capacity is unavailable at this time. Please try again later.",
        )]);
        assert_eq!(err.error_type(), "CapacityUnavailable");
        assert!(err.to_string().contains("Capacity is unavailable"));
        assert_eq!(
            launch_failure(&[failure("RESOURCE:MEMORY")]).error_type(),
            "CapacityUnavailable"
        );
    }

    #[test]
    fn a_role_ecs_cannot_assume_yet_is_transient() {
        let message = "ECS was unable to assume the role \
            'arn:aws:iam::123456789012:role/sessions/users/sessions-0123' that was provided \
            for this task. Please verify that the role being passed has the proper trust \
            relationship and permissions and that your IAM user has permissions to pass this role.";
        assert!(is_role_not_yet_assumable(message));
        assert_eq!(
            launch_failure(&[failure(message)]).error_type(),
            "Transient"
        );
        assert!(!is_role_not_yet_assumable("Role is not valid"));
    }

    #[test]
    fn other_failures_are_launch_failures() {
        let err = launch_failure(&[failure("MISSING")]);
        assert_eq!(err.error_type(), "LaunchFailed");
        assert_eq!(err.to_string(), "task launch failed: MISSING");
    }
}

#[cfg(test)]
mod adapter_tests {
    use aws_sdk_ecs::operation::run_task::RunTaskOutput;
    use aws_sdk_ecs::types::error::InvalidParameterException;
    use aws_smithy_mocks::{mock, mock_client};
    use aws_smithy_runtime_api::http::Response;
    use aws_smithy_types::body::SdkBody;
    use std::sync::{Arc, Mutex};

    use super::*;

    fn compute(client: Client) -> EcsCompute {
        let placement = Placement {
            subnets: vec!["subnet-1".into()],
            security_groups: vec!["sg-1".into()],
            assign_public_ip: true,
            capacity: Capacity::Fargate,
        };
        EcsCompute::new(client, "sessions".into(), Some(placement))
    }

    fn launch_of(id: &SessionId) -> TaskLaunch<'_> {
        TaskLaunch {
            task_definition_arn: "arn:td",
            session_id: id,
            user_id: "u",
        }
    }

    #[tokio::test]
    async fn run_task_sends_the_session_id_as_client_token_and_started_by() {
        let rule = mock!(aws_sdk_ecs::Client::run_task)
            .match_requests(|r| {
                r.client_token() == Some("sess-1")
                    && r.started_by() == Some("sess-1")
                    && r.launch_type() == Some(&LaunchType::Fargate)
            })
            .then_output(|| {
                RunTaskOutput::builder()
                    .tasks(
                        aws_sdk_ecs::types::Task::builder()
                            .task_arn("arn:task/1")
                            .build(),
                    )
                    .build()
            });
        let ecs = compute(mock_client!(aws_sdk_ecs, [&rule]));
        let id = SessionId::parse("sess-1").unwrap();
        assert_eq!(ecs.run_task(&launch_of(&id)).await.unwrap(), "arn:task/1");
        assert_eq!(rule.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_capacity_failure_in_a_successful_answer_is_capacity_unavailable() {
        let rule = mock!(aws_sdk_ecs::Client::run_task).then_output(|| {
            RunTaskOutput::builder()
                .failures(
                    Failure::builder()
                        .reason("Capacity is unavailable at this time.")
                        .build(),
                )
                .build()
        });
        let ecs = compute(mock_client!(aws_sdk_ecs, [&rule]));
        let id = SessionId::parse("sess-1").unwrap();
        let err = ecs.run_task(&launch_of(&id)).await.unwrap_err();
        assert_eq!(err.error_type(), "CapacityUnavailable");
    }

    #[tokio::test]
    async fn a_throttled_run_task_is_reported_as_throttled() {
        let rule = mock!(aws_sdk_ecs::Client::run_task).then_http_response(|| {
            Response::new(
                400.try_into().unwrap(),
                SdkBody::from(r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#),
            )
        });
        let ecs = compute(mock_client!(aws_sdk_ecs, [&rule]));
        let id = SessionId::parse("sess-1").unwrap();
        let err = ecs.run_task(&launch_of(&id)).await.unwrap_err();
        assert_eq!(err.error_type(), "Throttled", "{err}");
    }

    #[tokio::test]
    async fn run_task_on_a_deregistered_revision_is_task_definition_inactive() {
        let rule = mock!(aws_sdk_ecs::Client::run_task).then_http_response(|| {
            Response::new(
                400.try_into().unwrap(),
                SdkBody::from(
                    r#"{"__type":"ClientException","message":"TaskDefinition is inactive"}"#,
                ),
            )
        });
        let ecs = compute(mock_client!(aws_sdk_ecs, [&rule]));
        let id = SessionId::parse("sess-1").unwrap();
        let err = ecs.run_task(&launch_of(&id)).await.unwrap_err();
        assert!(
            matches!(err, Error::TaskDefinitionInactive(ref m) if m.starts_with("arn:td")),
            "{err}"
        );
        assert_eq!(err.error_type(), "LaunchFailed");
    }

    #[test]
    fn only_an_inactive_task_definition_answer_means_inactive() {
        for (code, message) in [
            ("ClientException", "TaskDefinition is inactive"),
            ("InvalidParameterException", "TaskDefinition is inactive"),
            ("ClientException", "The task definition is INACTIVE."),
        ] {
            assert!(
                is_inactive_task_definition(Some(code), Some(message)),
                "{code}: {message}"
            );
        }
        for (code, message) in [
            ("ClientException", "Cluster is inactive"),
            ("ClientException", "TaskDefinition not found."),
            ("ServerException", "TaskDefinition is inactive"),
        ] {
            assert!(
                !is_inactive_task_definition(Some(code), Some(message)),
                "{code}: {message}"
            );
        }
        assert!(!is_inactive_task_definition(None, None));
    }

    #[tokio::test]
    async fn run_task_refused_for_a_role_not_yet_assumable_is_transient() {
        let rule = mock!(aws_sdk_ecs::Client::run_task).then_http_response(|| {
            Response::new(
                400.try_into().unwrap(),
                SdkBody::from(
                    r#"{"__type":"InvalidParameterException","message":"ECS was unable to assume the role 'arn:aws:iam::123456789012:role/sessions/users/sessions-0123' that was provided for this task. Please verify that the role being passed has the proper trust relationship and permissions and that your IAM user has permissions to pass this role."}"#,
                ),
            )
        });
        let ecs = compute(mock_client!(aws_sdk_ecs, [&rule]));
        let id = SessionId::parse("sess-1").unwrap();
        let err = ecs.run_task(&launch_of(&id)).await.unwrap_err();
        assert_eq!(err.error_type(), "Transient", "{err}");
    }

    /// ECS tag values: `[\p{L}\p{Z}\p{N}_.:/=+\-@]*`, at most 256 characters.
    fn is_valid_ecs_tag_value(value: &str) -> bool {
        value.chars().count() <= 256
            && value
                .chars()
                .all(|c| c.is_alphanumeric() || c == ' ' || "_.:/=+-@".contains(c))
    }

    #[tokio::test]
    async fn run_task_tags_carry_a_user_key_instead_of_the_user_id() {
        let user_id = "auth0|ab c@é";
        let sent = Arc::new(Mutex::new(Vec::<Tag>::new()));
        let seen = sent.clone();
        let rule = mock!(aws_sdk_ecs::Client::run_task)
            .match_requests(move |r| {
                seen.lock().unwrap().extend(r.tags().iter().cloned());
                true
            })
            .then_output(|| {
                RunTaskOutput::builder()
                    .tasks(
                        aws_sdk_ecs::types::Task::builder()
                            .task_arn("arn:task/1")
                            .build(),
                    )
                    .build()
            });
        let ecs = compute(mock_client!(aws_sdk_ecs, [&rule]));
        let id = SessionId::parse("sess-1").unwrap();
        let launch = TaskLaunch {
            user_id,
            ..launch_of(&id)
        };
        ecs.run_task(&launch).await.unwrap();

        let tags = sent.lock().unwrap().clone();
        assert!(!tags.is_empty());
        for tag in &tags {
            let (key, value) = (
                tag.key().unwrap_or_default(),
                tag.value().unwrap_or_default(),
            );
            for raw in [user_id, "auth0", "ab c"] {
                assert!(
                    !key.contains(raw) && !value.contains(raw),
                    "tag {key}={value} carries the user id"
                );
            }
            assert!(
                is_valid_ecs_tag_value(value),
                "ECS refuses the value of tag {key}: {value:?}"
            );
        }
        let user_tag = tags.iter().find(|t| t.key() == Some("user_key"));
        assert_eq!(
            user_tag.and_then(|t| t.value()),
            Some(user_key(user_id).as_str())
        );
    }

    #[tokio::test]
    async fn stopping_a_task_that_is_already_gone_succeeds() {
        let rule = mock!(aws_sdk_ecs::Client::stop_task).then_error(|| {
            StopTaskError::InvalidParameterException(
                InvalidParameterException::builder()
                    .message("The referenced task was not found.")
                    .build(),
            )
        });
        let ecs = compute(mock_client!(aws_sdk_ecs, [&rule]));
        ecs.stop_task("arn:task/gone", "session stopped")
            .await
            .unwrap();
        assert_eq!(rule.num_calls(), 1);
    }

    #[tokio::test]
    async fn stopping_with_any_other_invalid_parameter_is_an_error() {
        let rule = mock!(aws_sdk_ecs::Client::stop_task).then_error(|| {
            StopTaskError::InvalidParameterException(
                InvalidParameterException::builder()
                    .message("Invalid identifier: Unexpected number of separators")
                    .build(),
            )
        });
        let ecs = compute(mock_client!(aws_sdk_ecs, [&rule]));
        let err = ecs
            .stop_task("arn:task/bad:arn", "session stopped")
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "AwsError", "{err}");
        assert!(err.to_string().contains("separators"), "{err}");
    }
}
