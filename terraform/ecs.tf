# The cluster the session tasks run in, their log group, the execution role every
# session task definition names, and the policies of each user's own task role. Launch
# registers the task definitions (one per user and version) and creates the users'
# roles, so neither is a Terraform resource.

resource "aws_ecs_cluster" "sessions" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_ecs_cluster_capacity_providers" "sessions" {
  cluster_name       = aws_ecs_cluster.sessions.name
  capacity_providers = ["FARGATE", "FARGATE_SPOT"]

  default_capacity_provider_strategy {
    capacity_provider = var.capacity_provider
    weight            = 1
  }
}

resource "aws_cloudwatch_log_group" "tasks" {
  name              = local.task_log_group
  retention_in_days = var.log_retention_days
}

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

# Used by ECS to start a session task: pull its images, ship its logs.
resource "aws_iam_role" "task_execution" {
  name               = "${var.name}-task-execution"
  description        = "ECS starting a session task: pulls the template's images from the configured registry, writes the task log group."
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "task_execution" {
  statement {
    sid     = "RegistryLogin"
    actions = ["ecr:GetAuthorizationToken"]
    # GetAuthorizationToken has no resource-level permissions.
    resources = ["*"]
  }

  statement {
    sid       = "PullSessionImages"
    actions   = ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"]
    resources = local.registry_repository_arns
  }

  statement {
    sid       = "TaskLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.tasks.arn}:*"]
  }
}

resource "aws_iam_role_policy" "task_execution" {
  name   = "start-session-tasks"
  role   = aws_iam_role.task_execution.id
  policy = data.aws_iam_policy_document.task_execution.json
}

# Each user's tasks hold their own role, created by Launch on the user's first session
# (terraform never sees them): under local.task_role_path, bounded by task_boundary,
# tagged with the user's access point, and with task_user_data attached. A user with a
# shell in their task can use its credentials, so those credentials must reach that
# user's data and nothing else.

# The most a user's role can ever do, whatever is attached to it: mount and write the
# user data file system. No IAM, no STS, no other service.
data "aws_iam_policy_document" "task_boundary" {
  statement {
    sid       = "MountUserData"
    actions   = ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"]
    resources = [aws_efs_file_system.user_data.arn]
  }
}

resource "aws_iam_policy" "task_boundary" {
  name        = "${var.name}-task-boundary"
  path        = "/${var.name}/"
  description = "Permissions boundary of every session user's task role: EFS client mount and write on the user data file system, nothing else."
  policy      = data.aws_iam_policy_document.task_boundary.json
}

# The one policy every user's role has: mount through the access point its
# access_point_id tag names, and no other.
data "aws_iam_policy_document" "task_user_data" {
  statement {
    sid       = "MountOwnAccessPointOnly"
    actions   = ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"]
    resources = [aws_efs_file_system.user_data.arn]

    condition {
      test     = "Bool"
      variable = "elasticfilesystem:AccessedViaMountTarget"
      values   = ["true"]
    }

    condition {
      test     = "StringEquals"
      variable = "elasticfilesystem:AccessPointArn"
      values   = [local.own_access_point_arn]
    }
  }
}

resource "aws_iam_policy" "task_user_data" {
  name        = "${var.name}-task-user-data"
  path        = "/${var.name}/"
  description = "Attached to each session user's task role: mount the user's own EFS access point (its access_point_id tag) only."
  policy      = data.aws_iam_policy_document.task_user_data.json
}
