# Alarms to one topic, a dashboard of the sessions, and an optional budget.
#
# The session metrics are the CloudWatch embedded metrics the functions write
# (functions/session-core/src/metrics.rs); tests/tests/terraform.rs checks that
# local.metrics names exactly those.

locals {
  metrics = {
    namespace     = "SessionProvisioner"
    active        = "ActiveSessions"
    start_seconds = "SessionStartSeconds"
    pull_seconds  = "ImagePullSeconds"
    # From a task's RUNNING to its HEALTHY: how long its services take to answer.
    healthy_seconds = "TaskHealthySeconds"
    # One count per ended session, with dimensions Status (stopped, failed) and Reason.
    ended   = "SessionsEnded"
    orphans = "OrphansFound"
    lost    = "LostSessions"
    # Sessions and tasks a reaper run could not act on (an AWS call failed); the next
    # run tries them again.
    reaper_errors = "ReaperErrors"
  }
  # Ended sessions by reason, for each status.
  ended_by_reason = {
    for status in ["stopped", "failed"] : status =>
    "SEARCH('{${local.metrics.namespace},Reason,Status} MetricName=\"${local.metrics.ended}\" Status=\"${status}\"', 'Sum', 300)"
  }
}

# Not encrypted: CloudWatch alarms and AWS Budgets cannot publish to a topic encrypted
# with the AWS-managed SNS key, and alarm notifications carry no secrets.
resource "aws_sns_topic" "alarms" {
  name = "${var.name}-alarms"
}

data "aws_iam_policy_document" "alarms" {
  statement {
    sid       = "AlarmsAndBudgets"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alarms.arn]

    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com", "budgets.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
}

resource "aws_sns_topic_policy" "alarms" {
  arn    = aws_sns_topic.alarms.arn
  policy = data.aws_iam_policy_document.alarms.json
}

resource "aws_sns_topic_subscription" "alarm_emails" {
  for_each  = toset(var.alarm_emails)
  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = each.value
}

resource "aws_cloudwatch_metric_alarm" "failed_executions" {
  alarm_name          = "${local.state_machine_name}-failed-executions"
  alarm_description   = "Session executions failed: open them in the Step Functions console; each session's stop_reason and failure_cause say why."
  namespace           = "AWS/States"
  metric_name         = "ExecutionsFailed"
  dimensions          = { StateMachineArn = aws_sfn_state_machine.lifecycle.arn }
  statistic           = "Sum"
  period              = 900
  evaluation_periods  = 1
  threshold           = var.failed_executions_alarm_threshold
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "orphans_found" {
  alarm_name          = "${var.name}-orphans-found"
  alarm_description   = "The reaper found tasks without an active session (and stopped them): something launched outside the lifecycle or a session was lost."
  namespace           = local.metrics.namespace
  metric_name         = local.metrics.orphans
  statistic           = "Sum"
  period              = 900
  evaluation_periods  = 1
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "lost_sessions" {
  alarm_name          = "${var.name}-lost-sessions"
  alarm_description   = "The reaper closed sessions (reason lost) whose task or execution had ended without stopping them, or that stayed starting, provisioning or stopping past transition_deadline_s: look for failed, aborted or stuck executions."
  namespace           = local.metrics.namespace
  metric_name         = local.metrics.lost
  statistic           = "Sum"
  period              = 900
  evaluation_periods  = 1
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "reaper_errors" {
  alarm_name          = "${var.name}-reaper-errors"
  alarm_description   = "Reaper runs could not act on some sessions or tasks for 15 minutes (each is retried on the next run): look for throttling or errors in the reaper's log, by session_id."
  namespace           = local.metrics.namespace
  metric_name         = local.metrics.reaper_errors
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 3
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "task_events_failed" {
  alarm_name          = "${var.name}-task-events-failed"
  alarm_description   = "Task state changes task-events could not handle are waiting in ${aws_sqs_queue.task_events_failed.name}."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.task_events_failed.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_dashboard" "sessions" {
  dashboard_name = var.name
  dashboard_body = jsonencode({
    widgets = [
      {
        type = "metric", x = 0, y = 0, width = 8, height = 6
        properties = {
          title   = "Active sessions"
          region  = local.region
          stat    = "Maximum"
          period  = 60
          metrics = [[local.metrics.namespace, local.metrics.active]]
        }
      },
      {
        type = "metric", x = 8, y = 0, width = 8, height = 6
        properties = {
          title  = "Start seconds (request to running)"
          region = local.region
          period = 300
          metrics = [
            [local.metrics.namespace, local.metrics.start_seconds, { stat = "p50", label = "p50" }],
            [local.metrics.namespace, local.metrics.start_seconds, { stat = "p90", label = "p90" }],
          ]
        }
      },
      {
        type = "metric", x = 16, y = 0, width = 8, height = 6
        properties = {
          title  = "Image pull, and RUNNING to healthy, seconds"
          region = local.region
          period = 300
          metrics = [
            [local.metrics.namespace, local.metrics.pull_seconds, { stat = "p50", label = "pull p50" }],
            [local.metrics.namespace, local.metrics.pull_seconds, { stat = "p90", label = "pull p90" }],
            [local.metrics.namespace, local.metrics.healthy_seconds, { stat = "p50", label = "healthy p50" }],
            [local.metrics.namespace, local.metrics.healthy_seconds, { stat = "p90", label = "healthy p90" }],
          ]
        }
      },
      {
        type = "metric", x = 0, y = 6, width = 12, height = 6
        properties = {
          title  = "Failures"
          region = local.region
          stat   = "Sum"
          period = 300
          metrics = [
            ["AWS/States", "ExecutionsFailed", "StateMachineArn", aws_sfn_state_machine.lifecycle.arn],
            [{ expression = local.ended_by_reason.failed, id = "failed_by_reason" }],
          ]
        }
      },
      {
        type = "metric", x = 12, y = 6, width = 12, height = 6
        properties = {
          title  = "Stops by reason"
          region = local.region
          period = 300
          metrics = [
            [{ expression = local.ended_by_reason.stopped, id = "stopped_by_reason" }],
          ]
        }
      },
      {
        type = "metric", x = 0, y = 12, width = 8, height = 6
        properties = {
          title  = "Orphan tasks, lost sessions and errors (reaper)"
          region = local.region
          stat   = "Sum"
          period = 300
          metrics = [
            [local.metrics.namespace, local.metrics.orphans],
            [local.metrics.namespace, local.metrics.lost],
            [local.metrics.namespace, local.metrics.reaper_errors],
          ]
        }
      },
      {
        type = "metric", x = 8, y = 12, width = 16, height = 6
        properties = {
          title  = "Function errors"
          region = local.region
          period = 300
          metrics = [
            [{ expression = "SEARCH('{AWS/Lambda,FunctionName} MetricName=\"Errors\" FunctionName=\"${var.name}-\"', 'Sum', 300)", id = "function_errors" }],
          ]
        }
      },
    ]
  })
}

resource "aws_budgets_budget" "monthly" {
  count        = var.monthly_budget_usd == null ? 0 : 1
  name         = "${var.name}-monthly"
  budget_type  = "COST"
  limit_amount = tostring(var.monthly_budget_usd)
  limit_unit   = "USD"
  time_unit    = "MONTHLY"

  notification {
    comparison_operator        = "GREATER_THAN"
    threshold                  = 80
    threshold_type             = "PERCENTAGE"
    notification_type          = "ACTUAL"
    subscriber_sns_topic_arns  = [aws_sns_topic.alarms.arn]
    subscriber_email_addresses = var.alarm_emails
  }

  notification {
    comparison_operator        = "GREATER_THAN"
    threshold                  = 100
    threshold_type             = "PERCENTAGE"
    notification_type          = "FORECASTED"
    subscriber_sns_topic_arns  = [aws_sns_topic.alarms.arn]
    subscriber_email_addresses = var.alarm_emails
  }

  depends_on = [aws_sns_topic_policy.alarms]
}
