# The cluster the session tasks run in, their log group, and the two roles every
# session task definition names. Launch registers the task definitions themselves
# (one per user and version), so they are not Terraform resources.

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

# Held by the session's containers: nothing but mounting the user's storage, and
# only through an access point (each user's task definition names their own).
resource "aws_iam_role" "task" {
  name               = "${var.name}-task"
  description        = "Session task containers: mount EFS user data through an access point, nothing else."
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "task" {
  statement {
    sid       = "MountUserDataThroughAccessPoints"
    actions   = ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"]
    resources = [aws_efs_file_system.user_data.arn]

    condition {
      test     = "Bool"
      variable = "elasticfilesystem:AccessedViaMountTarget"
      values   = ["true"]
    }

    condition {
      test     = "StringLike"
      variable = "elasticfilesystem:AccessPointArn"
      values   = ["arn:${local.partition}:elasticfilesystem:${local.region}:${local.account}:access-point/*"]
    }
  }
}

resource "aws_iam_role_policy" "task" {
  name   = "mount-user-data"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.task.json
}
