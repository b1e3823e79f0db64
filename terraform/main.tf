# What several files share: where we are, and the session template.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account   = data.aws_caller_identity.current.account_id
  partition = data.aws_partition.current.partition
  region    = data.aws_region.current.region

  # Gateway mode (var.access_mode): private tasks behind the session gateway.
  gateway = var.access_mode == "gateway"

  # The session template is configuration, not code: the functions get it whole
  # (SESSION_TEMPLATE), and the infrastructure follows it, opening exactly its ports
  # and allowing exactly its image repositories.
  session_template_json = jsonencode(jsondecode(coalesce(var.session_template, file("${path.module}/session_template.json"))))
  session_template      = jsondecode(local.session_template_json)
  session_ports         = distinct([for c in local.session_template.containers : c.port if lookup(c, "port", null) != null])
  session_repositories  = distinct([for c in local.session_template.containers : c.repository if lookup(c, "repository", null) != null])

  registry_account = regex("^([0-9]{12})\\.dkr\\.ecr\\.([a-z0-9-]+)\\.", var.image_registry)[0]
  registry_region  = regex("^([0-9]{12})\\.dkr\\.ecr\\.([a-z0-9-]+)\\.", var.image_registry)[1]
  # The repositories the tasks pull from, in the configured registry.
  registry_repository_arns = [
    for r in local.session_repositories : "arn:${local.partition}:ecr:${local.registry_region}:${local.registry_account}:repository/${r}"
  ]

  # Names the functions and the infrastructure agree on.
  task_family_prefix = var.name
  task_log_group     = "/ecs/${var.name}-sessions"
  state_machine_name = "${var.name}-lifecycle"
  # Built rather than referenced: the functions that complete task tokens need it in
  # their policies, and the state machine needs their ARNs.
  state_machine_arn = "arn:${local.partition}:states:${local.region}:${local.account}:stateMachine:${local.state_machine_name}"
  packages_dir      = coalesce(var.function_packages_dir, "${path.module}/../target/lambda")

  # Each user's task role (created by Launch) lives under this path and nowhere else:
  # the file-system policy admits principals by it.
  task_role_path  = "/${var.name}/users/"
  user_task_roles = "arn:${local.partition}:iam::${local.account}:role${local.task_role_path}*"
  # The access point a user's role may mount: the one its access_point_id tag names.
  # $${...} is an IAM policy variable, left for IAM to fill in.
  own_access_point_arn = "arn:${local.partition}:elasticfilesystem:${local.region}:${local.account}:access-point/$${aws:PrincipalTag/access_point_id}"
}
