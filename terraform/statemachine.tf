# The session lifecycle: statemachine/lifecycle.asl.json, one Standard execution per
# session, with each `${<function>_arn}` placeholder bound to our function.

resource "aws_cloudwatch_log_group" "lifecycle" {
  # Under /aws/vendedlogs/ so that Step Functions' log delivery does not grow the
  # account's CloudWatch Logs resource policy with one entry per log group.
  name              = "/aws/vendedlogs/states/${local.state_machine_name}"
  retention_in_days = var.log_retention_days
}

data "aws_iam_policy_document" "lifecycle_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["states.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
}

resource "aws_iam_role" "lifecycle" {
  name               = local.state_machine_name
  description        = "The session lifecycle state machine: invokes the lifecycle functions, nothing else."
  assume_role_policy = data.aws_iam_policy_document.lifecycle_assume.json
}

data "aws_iam_policy_document" "lifecycle" {
  statement {
    sid     = "InvokeLifecycleFunctions"
    actions = ["lambda:InvokeFunction"]
    resources = [
      module.authorize.arn,
      module.launch.arn,
      module.wait_for_ip.arn,
      module.record.arn,
      module.stop.arn,
    ]
  }

  statement {
    sid = "LogDelivery"
    actions = [
      "logs:CreateLogDelivery",
      "logs:GetLogDelivery",
      "logs:UpdateLogDelivery",
      "logs:DeleteLogDelivery",
      "logs:ListLogDeliveries",
      "logs:PutResourcePolicy",
      "logs:DescribeResourcePolicies",
      "logs:DescribeLogGroups",
    ]
    # CloudWatch Logs' log delivery APIs have no resource-level permissions.
    resources = ["*"]
  }

  statement {
    sid     = "Tracing"
    actions = ["xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules", "xray:GetSamplingTargets"]
    # X-Ray's trace APIs have no resource-level permissions.
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "lifecycle" {
  name   = "run-lifecycle"
  role   = aws_iam_role.lifecycle.id
  policy = data.aws_iam_policy_document.lifecycle.json
}

resource "aws_sfn_state_machine" "lifecycle" {
  name     = local.state_machine_name
  type     = "STANDARD"
  role_arn = aws_iam_role.lifecycle.arn

  definition = templatefile("${path.module}/../statemachine/lifecycle.asl.json", {
    authorize_arn   = module.authorize.arn
    launch_arn      = module.launch.arn
    wait_for_ip_arn = module.wait_for_ip.arn
    record_arn      = module.record.arn
    stop_arn        = module.stop.arn
  })

  logging_configuration {
    log_destination        = "${aws_cloudwatch_log_group.lifecycle.arn}:*"
    include_execution_data = true
    level                  = "ERROR"
  }

  tracing_configuration {
    enabled = true
  }

  # Creating the state machine checks that its role may deliver logs.
  depends_on = [aws_iam_role_policy.lifecycle]

  lifecycle {
    postcondition {
      condition     = self.arn == local.state_machine_arn
      error_message = "The state machine's ARN differs from local.state_machine_arn, which the functions' policies use."
    }
  }
}
