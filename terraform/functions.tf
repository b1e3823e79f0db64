# The Lambda functions: one module call per crate under functions/, each with exactly
# the environment its configuration reads (functions/session-core/src/config.rs) and
# an IAM statement for each AWS action its code calls. tests/tests/terraform.rs checks
# both against the code.

locals {
  # The configuration groups of config.rs; a function gets the groups its main.rs reads.
  tables_env = {
    SESSIONS_TABLE         = aws_dynamodb_table.sessions.name
    USERS_TABLE            = aws_dynamodb_table.users.name
    SESSION_RETENTION_DAYS = tostring(var.session_retention_days)
  }
  cluster_env = {
    CLUSTER = aws_ecs_cluster.sessions.name
  }
  template_env = {
    SESSION_TEMPLATE = local.session_template_json
  }
  events_env = {
    EVENT_BUS = aws_cloudwatch_event_bus.sessions.name
  }
  # How sessions are reached (config.rs Access): in gateway mode their URLs are
  # https://{service}--{session_id}.{domain_name} and their tasks' private IPs count;
  # in direct mode, http://{public ip}:{port}.
  access_env = {
    ACCESS_MODE        = var.access_mode
    SESSION_DOMAIN     = local.gateway ? var.domain_name : ""
    SESSION_URL_SCHEME = "https"
  }
  # Direct mode only: a task's public IP is found on its network interface. Behind the
  # gateway, wait-for-ip and task-events take the private IP from the task's event and
  # never call EC2, so their roles get no EC2 action at all.
  resolve_public_ips = local.gateway ? [] : [
    {
      sid     = "ResolvePublicIps"
      actions = ["ec2:DescribeNetworkInterfaces"]
      # DescribeNetworkInterfaces has no resource-level permissions.
      resources = ["*"]
    },
  ]
  admission_env = merge(local.template_env, {
    MAX_SESSIONS_PER_USER = tostring(var.max_sessions_per_user)
    MAX_LIFETIME_S        = tostring(var.max_lifetime_s)
    CHECK_IMAGES          = tostring(var.check_images)
  })
  launch_env = merge(local.template_env, {
    SUBNETS                = join(",", local.task_subnet_ids)
    SECURITY_GROUPS        = aws_security_group.tasks.id
    ASSIGN_PUBLIC_IP       = tostring(!local.gateway)
    CAPACITY_PROVIDER      = var.capacity_provider
    EXECUTION_ROLE_ARN     = aws_iam_role.task_execution.arn
    TASK_ROLE_PATH         = local.task_role_path
    TASK_ROLE_BOUNDARY_ARN = aws_iam_policy.task_boundary.arn
    TASK_ROLE_POLICY_ARN   = aws_iam_policy.task_user_data.arn
    EFS_FILE_SYSTEM_ID     = aws_efs_file_system.user_data.id
    ECR_REGISTRY           = var.image_registry
    TASK_FAMILY_PREFIX     = local.task_family_prefix
    TASK_LOG_GROUP         = aws_cloudwatch_log_group.tasks.name
  })
  # The limits sessions are stopped by (config.rs SessionLimits): the reaper acts on
  # them and the api shows users when they will (idle_stop_at, ends_at), so both read
  # them from here.
  limits_env = {
    IDLE_TIMEOUT_S       = tostring(var.idle_timeout_s)
    MAX_LIFETIME_S       = tostring(var.max_lifetime_s)
    HEARTBEAT_INTERVAL_S = tostring(var.heartbeat_interval_s)
  }
  api_env = merge(local.limits_env, {
    STATE_MACHINE_ARN = local.state_machine_arn
    IDENTITY_CLAIM    = var.identity_claim
    ADMIN_SCOPE       = var.admin_scope
    CURSOR_KEY        = random_password.cursor_key.result
  })

  # ARNs the statements below scope actions to.
  cluster_tasks            = "arn:${local.partition}:ecs:${local.region}:${local.account}:task/${aws_ecs_cluster.sessions.name}/*"
  session_task_definitions = "arn:${local.partition}:ecs:${local.region}:${local.account}:task-definition/${local.task_family_prefix}-*:*"
  access_points            = "arn:${local.partition}:elasticfilesystem:${local.region}:${local.account}:access-point/*"
  # The attributes of a users item each function maintains, and the only ones its
  # UpdateItem may name (the key must be listed too): no bug or injection in the api or
  # Launch can set `authorized`, `admin` or `max_sessions`. UpdateItem also reads the
  # item, so whole-item ReturnValues are refused as well (dynamodb:ReturnValues).
  api_user_attributes    = ["user_id", "active_sessions"]
  launch_user_attributes = ["user_id", "efs_access_point_id", "task_role_arn", "task_definitions"]

  # The image check (Authorize, and the API admitting a start and listing the versions
  # of GET /versions) asks the registry of its own account and region.
  checked_repository_arns = [
    for r in local.session_repositories : "arn:${local.partition}:ecr:${local.region}:${local.account}:repository/${r}"
  ]
}

module "authorize" {
  source             = "./modules/function"
  crate              = "authorize"
  description        = "Authorize: admits a session (user authorized, under their limit, version and images valid) and creates it."
  name_prefix        = var.name
  packages_dir       = local.packages_dir
  architecture       = var.function_architecture
  log_level          = var.log_level
  log_retention_days = var.log_retention_days
  alarm_topic_arn    = aws_sns_topic.alarms.arn
  # Refusals (not authorized, at the limit, unknown version) are errors by design.
  error_alarm_threshold = var.failed_executions_alarm_threshold

  environment = merge(local.tables_env, local.admission_env)

  statements = [
    {
      sid       = "ReadUsersAndSessions"
      actions   = ["dynamodb:GetItem"]
      resources = [aws_dynamodb_table.users.arn, aws_dynamodb_table.sessions.arn]
    },
    {
      sid       = "CreateSessions"
      actions   = ["dynamodb:PutItem"]
      resources = [aws_dynamodb_table.sessions.arn]
    },
    {
      sid       = "TakeUserSlots"
      actions   = ["dynamodb:UpdateItem"]
      resources = [aws_dynamodb_table.users.arn]
    },
    {
      sid       = "CheckImagesExist"
      actions   = ["ecr:DescribeImages"]
      resources = local.checked_repository_arns
    },
  ]
}

# The image check (Authorize, and the API admitting a start and listing versions) looks
# in its own account and region: another registry would make every session fail with
# ImageNotFound. With the check off, the API lists no versions and never asks ECR.
resource "terraform_data" "image_check_registry" {
  lifecycle {
    precondition {
      condition     = !var.check_images || (local.registry_account == local.account && local.registry_region == local.region)
      error_message = "check_images needs image_registry to be this account's registry in this region (${local.account}.dkr.ecr.${local.region}.amazonaws.com); set check_images = false to use another registry."
    }
  }
}

# The key the api signs its page tokens (next_token) with, so that a token is accepted
# only as it was given and only from the caller it was given to. Replacing it (taint)
# only makes the tokens then in flight invalid: clients list from the start again.
resource "random_password" "cursor_key" {
  length  = 64
  special = false
}

module "api" {
  source             = "./modules/function"
  crate              = "api"
  description        = "The public API behind API Gateway: start (admitted as Authorize does), list, read, stop and heartbeat sessions; list versions."
  name_prefix        = var.name
  packages_dir       = local.packages_dir
  architecture       = var.function_architecture
  log_level          = var.log_level
  log_retention_days = var.log_retention_days
  alarm_topic_arn    = aws_sns_topic.alarms.arn

  # The state machine's ARN is computed (local.state_machine_arn), not read from the
  # state machine, and the state machine never names the api: no cycle.
  environment = merge(local.tables_env, local.admission_env, local.api_env)

  statements = [
    {
      sid       = "ReadUsersAndSessions"
      actions   = ["dynamodb:GetItem"]
      resources = [aws_dynamodb_table.users.arn, aws_dynamodb_table.sessions.arn]
    },
    {
      sid       = "ListUserSessions"
      actions   = ["dynamodb:Query"]
      resources = ["${aws_dynamodb_table.sessions.arn}/index/by-user"]
    },
    {
      sid       = "CreateAndFailSessions"
      actions   = ["dynamodb:PutItem"]
      resources = [aws_dynamodb_table.sessions.arn]
    },
    {
      sid       = "UpdateSessions"
      actions   = ["dynamodb:UpdateItem"]
      resources = [aws_dynamodb_table.sessions.arn]
    },
    {
      sid       = "TakeAndReleaseUserSlots"
      actions   = ["dynamodb:UpdateItem"]
      resources = [aws_dynamodb_table.users.arn]
      conditions = [
        { test = "ForAllValues:StringEquals", variable = "dynamodb:Attributes", values = local.api_user_attributes },
        { test = "StringEqualsIfExists", variable = "dynamodb:ReturnValues", values = ["NONE", "UPDATED_OLD", "UPDATED_NEW"] },
      ]
    },
    {
      # A start whose execution could not be started is removed (while still
      # `starting` with no task), so that a retry starts afresh.
      sid       = "DiscardUnstartedSessions"
      actions   = ["dynamodb:DeleteItem"]
      resources = [aws_dynamodb_table.sessions.arn]
    },
    {
      # A start's image check, and the tags of GET /versions (only with check_images).
      sid       = "CheckImagesAndListVersions"
      actions   = ["ecr:DescribeImages"]
      resources = local.checked_repository_arns
    },
    {
      sid       = "StartSessions"
      actions   = ["states:StartExecution"]
      resources = [local.state_machine_arn]
    },
    {
      sid       = "ResumeStoppedSessions"
      actions   = ["states:SendTaskSuccess", "states:SendTaskFailure"]
      resources = [local.state_machine_arn]
    },
  ]
}

module "launch" {
  source             = "./modules/function"
  crate              = "launch"
  description        = "Launch: the user's EFS access point and task role, a cached task definition per (user, version), RunTask."
  name_prefix        = var.name
  packages_dir       = local.packages_dir
  architecture       = var.function_architecture
  log_level          = var.log_level
  log_retention_days = var.log_retention_days
  alarm_topic_arn    = aws_sns_topic.alarms.arn
  timeout            = 60
  # RegisterTaskDefinition (~1/s sustained) and RunTask (20 Fargate launches/s) are
  # the tightest limits on the way to a session.
  reserved_concurrency = var.reserve_concurrency ? var.launch_concurrency : null

  environment = merge(local.tables_env, local.cluster_env, local.launch_env)

  statements = [
    {
      sid       = "ReadSessionsAndUsers"
      actions   = ["dynamodb:GetItem"]
      resources = [aws_dynamodb_table.sessions.arn, aws_dynamodb_table.users.arn]
    },
    {
      sid       = "RecordLaunches"
      actions   = ["dynamodb:UpdateItem"]
      resources = [aws_dynamodb_table.sessions.arn]
    },
    {
      sid       = "RecordUserResources"
      actions   = ["dynamodb:UpdateItem"]
      resources = [aws_dynamodb_table.users.arn]
      conditions = [
        { test = "ForAllValues:StringEquals", variable = "dynamodb:Attributes", values = local.launch_user_attributes },
        { test = "StringEqualsIfExists", variable = "dynamodb:ReturnValues", values = ["NONE", "UPDATED_OLD", "UPDATED_NEW"] },
      ]
    },
    {
      sid       = "CreateUserAccessPoints"
      actions   = ["elasticfilesystem:CreateAccessPoint"]
      resources = [aws_efs_file_system.user_data.arn]
    },
    {
      sid       = "TagAccessPointsOnCreate"
      actions   = ["elasticfilesystem:TagResource"]
      resources = [local.access_points]
      conditions = [
        { test = "StringEquals", variable = "elasticfilesystem:CreateAction", values = ["CreateAccessPoint"] },
      ]
    },
    {
      sid     = "RegisterTaskDefinitions"
      actions = ["ecs:RegisterTaskDefinition"]
      # RegisterTaskDefinition has no resource-level permissions.
      resources = ["*"]
    },
    {
      sid       = "RunSessionTasks"
      actions   = ["ecs:RunTask"]
      resources = [local.session_task_definitions]
      conditions = [
        { test = "ArnEquals", variable = "ecs:cluster", values = [aws_ecs_cluster.sessions.arn] },
      ]
    },
    {
      sid       = "StopSessionTasks"
      actions   = ["ecs:StopTask"]
      resources = [local.cluster_tasks]
      conditions = [
        { test = "ArnEquals", variable = "ecs:cluster", values = [aws_ecs_cluster.sessions.arn] },
      ]
    },
    {
      sid       = "TagTasksAndTaskDefinitionsOnCreate"
      actions   = ["ecs:TagResource"]
      resources = [local.cluster_tasks, local.session_task_definitions]
      conditions = [
        { test = "StringEquals", variable = "ecs:CreateAction", values = ["RunTask", "RegisterTaskDefinition"] },
      ]
    },
    {
      # Only under the users' path, only with the boundary: whatever Launch creates can
      # never do more than the boundary allows.
      sid       = "CreateUserTaskRoles"
      actions   = ["iam:CreateRole"]
      resources = [local.user_task_roles]
      conditions = [
        { test = "StringEquals", variable = "iam:PermissionsBoundary", values = [aws_iam_policy.task_boundary.arn] },
      ]
    },
    {
      # On create, and to correct the access point tag of a role that names another.
      sid       = "TagUserTaskRoles"
      actions   = ["iam:TagRole"]
      resources = [local.user_task_roles]
      conditions = [
        { test = "ForAllValues:StringEquals", variable = "aws:TagKeys", values = ["user_key", "access_point_id"] },
      ]
    },
    {
      sid       = "CheckUserTaskRoles"
      actions   = ["iam:GetRole"]
      resources = [local.user_task_roles]
    },
    {
      sid       = "AttachTheSharedPolicyToUserTaskRoles"
      actions   = ["iam:AttachRolePolicy"]
      resources = [local.user_task_roles]
      conditions = [
        { test = "ArnEquals", variable = "iam:PolicyARN", values = [aws_iam_policy.task_user_data.arn] },
      ]
    },
    {
      sid       = "PassTaskRoles"
      actions   = ["iam:PassRole"]
      resources = [aws_iam_role.task_execution.arn, local.user_task_roles]
      conditions = [
        { test = "StringEquals", variable = "iam:PassedToService", values = ["ecs-tasks.amazonaws.com"] },
      ]
    },
  ]
}

module "wait_for_ip" {
  source             = "./modules/function"
  crate              = "wait-for-ip"
  description        = "WaitForIp: stores the step's task token; completes it when the task already runs."
  name_prefix        = var.name
  packages_dir       = local.packages_dir
  architecture       = var.function_architecture
  log_level          = var.log_level
  log_retention_days = var.log_retention_days
  alarm_topic_arn    = aws_sns_topic.alarms.arn

  environment = merge(local.tables_env, local.access_env)

  statements = concat([
    {
      sid       = "StoreTaskTokens"
      actions   = ["dynamodb:UpdateItem"]
      resources = [aws_dynamodb_table.sessions.arn]
    },
    {
      sid       = "CompleteTaskTokens"
      actions   = ["states:SendTaskSuccess", "states:SendTaskFailure"]
      resources = [local.state_machine_arn]
    },
  ], local.resolve_public_ips)
}

module "record" {
  source             = "./modules/function"
  crate              = "record"
  description        = "RecordRunning, AwaitStop, RecordStopped, RecordFailed: the session's progress."
  name_prefix        = var.name
  packages_dir       = local.packages_dir
  architecture       = var.function_architecture
  log_level          = var.log_level
  log_retention_days = var.log_retention_days
  alarm_topic_arn    = aws_sns_topic.alarms.arn

  environment = merge(local.tables_env, local.template_env, local.events_env, local.access_env)

  statements = [
    {
      sid       = "ReadSessions"
      actions   = ["dynamodb:GetItem"]
      resources = [aws_dynamodb_table.sessions.arn]
    },
    {
      sid       = "WriteSessions"
      actions   = ["dynamodb:PutItem", "dynamodb:UpdateItem"]
      resources = [aws_dynamodb_table.sessions.arn]
    },
    {
      sid       = "ResumeStopsRequestedEarly"
      actions   = ["states:SendTaskSuccess"]
      resources = [local.state_machine_arn]
    },
    {
      sid       = "PublishLifecycleEvents"
      actions   = ["events:PutEvents"]
      resources = [aws_cloudwatch_event_bus.sessions.arn]
    },
  ]
}

module "stop" {
  source             = "./modules/function"
  crate              = "stop"
  description        = "Stop, Compensate: stops every task of the session and releases the user's slot once they have stopped."
  name_prefix        = var.name
  packages_dir       = local.packages_dir
  architecture       = var.function_architecture
  log_level          = var.log_level
  log_retention_days = var.log_retention_days
  alarm_topic_arn    = aws_sns_topic.alarms.arn

  environment = merge(local.tables_env, local.cluster_env)

  statements = [
    {
      sid       = "ReadSessions"
      actions   = ["dynamodb:GetItem"]
      resources = [aws_dynamodb_table.sessions.arn]
    },
    {
      sid       = "RecordStopsAndReleaseSlots"
      actions   = ["dynamodb:UpdateItem"]
      resources = [aws_dynamodb_table.sessions.arn, aws_dynamodb_table.users.arn]
    },
    {
      sid     = "FindSessionTasks"
      actions = ["ecs:ListTasks"]
      # ListTasks cannot be scoped to a resource ARN, only to the cluster (condition).
      resources = ["*"]
      conditions = [
        { test = "ArnEquals", variable = "ecs:cluster", values = [aws_ecs_cluster.sessions.arn] },
      ]
    },
    {
      # DescribeTasks: the slot waits until the stopped tasks have STOPPED.
      sid       = "StopSessionTasksAndSeeThemStop"
      actions   = ["ecs:DescribeTasks", "ecs:StopTask"]
      resources = [local.cluster_tasks]
      conditions = [
        { test = "ArnEquals", variable = "ecs:cluster", values = [aws_ecs_cluster.sessions.arn] },
      ]
    },
  ]
}

module "task_events" {
  source             = "./modules/function"
  crate              = "task-events"
  description        = "ECS task state changes of the cluster: mirrors them on the session, completes WaitForIp, ends sessions whose task died."
  name_prefix        = var.name
  packages_dir       = local.packages_dir
  architecture       = var.function_architecture
  log_level          = var.log_level
  log_retention_days = var.log_retention_days
  alarm_topic_arn    = aws_sns_topic.alarms.arn
  # Invoked asynchronously by EventBridge: an event that fails every retry is kept.
  dead_letter_queue_arn = aws_sqs_queue.task_events_failed.arn

  environment = merge(local.tables_env, local.cluster_env, local.access_env)

  statements = concat([
    {
      sid       = "ReadSessions"
      actions   = ["dynamodb:GetItem"]
      resources = [aws_dynamodb_table.sessions.arn]
    },
    {
      sid       = "RecordTaskStates"
      actions   = ["dynamodb:UpdateItem"]
      resources = [aws_dynamodb_table.sessions.arn]
    },
    {
      sid       = "CompleteTaskTokens"
      actions   = ["states:SendTaskSuccess", "states:SendTaskFailure"]
      resources = [local.state_machine_arn]
    },
  ], local.resolve_public_ips)
}

module "reaper" {
  source             = "./modules/function"
  crate              = "reaper"
  description        = "Reaper (scheduled): stops idle and over-age sessions, stops orphan tasks, closes sessions whose task or execution is gone or that are stuck."
  name_prefix        = var.name
  packages_dir       = local.packages_dir
  architecture       = var.function_architecture
  log_level          = var.log_level
  log_retention_days = var.log_retention_days
  alarm_topic_arn    = aws_sns_topic.alarms.arn
  timeout            = 120
  # One run at a time: overlapping runs would only repeat each other's ECS calls.
  reserved_concurrency = var.reserve_concurrency ? 1 : null

  environment = merge(local.tables_env, local.cluster_env, local.limits_env, {
    ORPHAN_GRACE_S        = tostring(var.orphan_grace_s)
    TRANSITION_DEADLINE_S = tostring(var.transition_deadline_s)
  })

  statements = [
    {
      sid       = "ReadSessions"
      actions   = ["dynamodb:GetItem"]
      resources = [aws_dynamodb_table.sessions.arn]
    },
    {
      # The active sessions' users, 100 a call.
      sid       = "ReadUsers"
      actions   = ["dynamodb:BatchGetItem"]
      resources = [aws_dynamodb_table.users.arn]
    },
    {
      sid       = "ReadActiveSessions"
      actions   = ["dynamodb:Scan"]
      resources = ["${aws_dynamodb_table.sessions.arn}/index/active"]
    },
    {
      sid       = "StopSessionsAndReleaseSlots"
      actions   = ["dynamodb:UpdateItem"]
      resources = [aws_dynamodb_table.sessions.arn, aws_dynamodb_table.users.arn]
    },
    {
      sid     = "FindClusterTasks"
      actions = ["ecs:ListTasks"]
      # ListTasks cannot be scoped to a resource ARN, only to the cluster (condition).
      resources = ["*"]
      conditions = [
        { test = "ArnEquals", variable = "ecs:cluster", values = [aws_ecs_cluster.sessions.arn] },
      ]
    },
    {
      sid       = "DescribeAndStopClusterTasks"
      actions   = ["ecs:DescribeTasks", "ecs:StopTask"]
      resources = [local.cluster_tasks]
      conditions = [
        { test = "ArnEquals", variable = "ecs:cluster", values = [aws_ecs_cluster.sessions.arn] },
      ]
    },
    {
      sid       = "CheckExecutions"
      actions   = ["states:DescribeExecution"]
      resources = ["arn:${local.partition}:states:${local.region}:${local.account}:execution:${local.state_machine_name}:*"]
    },
    {
      sid       = "StopStuckExecutions"
      actions   = ["states:StopExecution"]
      resources = ["arn:${local.partition}:states:${local.region}:${local.account}:execution:${local.state_machine_name}:*"]
    },
    {
      sid       = "ResumeStoppedSessions"
      actions   = ["states:SendTaskSuccess", "states:SendTaskFailure"]
      resources = [local.state_machine_arn]
    },
  ]
}
