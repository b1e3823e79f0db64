# EventBridge: the ECS task state changes of our cluster go to task-events, a schedule
# runs the reaper, and the project's own bus carries the sessions' lifecycle events.

resource "aws_cloudwatch_event_bus" "sessions" {
  name = var.name
}

resource "aws_cloudwatch_event_rule" "task_state_change" {
  name        = "${var.name}-task-state-change"
  description = "ECS task state changes of the ${aws_ecs_cluster.sessions.name} cluster, to task-events."

  event_pattern = jsonencode({
    source        = ["aws.ecs"]
    "detail-type" = ["ECS Task State Change"]
    detail = {
      clusterArn = [aws_ecs_cluster.sessions.arn]
    }
  })
}

resource "aws_cloudwatch_event_target" "task_events" {
  rule      = aws_cloudwatch_event_rule.task_state_change.name
  target_id = "task-events"
  arn       = module.task_events.arn

  # A RUNNING event late by more than its WaitForIp timeout is of no use.
  retry_policy {
    maximum_event_age_in_seconds = 900
    maximum_retry_attempts       = 20
  }

  dead_letter_config {
    arn = aws_sqs_queue.task_events_failed.arn
  }
}

resource "aws_lambda_permission" "task_events" {
  statement_id  = "task-state-changes"
  action        = "lambda:InvokeFunction"
  function_name = module.task_events.function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.task_state_change.arn
}

# Task state changes that could not be delivered (EventBridge) or handled after every
# retry (task-events' asynchronous invocations): kept 14 days for a look and a replay.
resource "aws_sqs_queue" "task_events_failed" {
  name                      = "${var.name}-task-events-failed"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true
}

data "aws_iam_policy_document" "task_events_failed" {
  statement {
    sid       = "UndeliveredTaskStateChanges"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.task_events_failed.arn]

    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }

    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_cloudwatch_event_rule.task_state_change.arn]
    }
  }
}

resource "aws_sqs_queue_policy" "task_events_failed" {
  queue_url = aws_sqs_queue.task_events_failed.id
  policy    = data.aws_iam_policy_document.task_events_failed.json
}

resource "aws_cloudwatch_event_rule" "reaper" {
  name                = "${var.name}-reaper"
  description         = "Runs the reaper: idle and over-age sessions, orphan tasks, lost sessions."
  schedule_expression = var.reaper_schedule
}

resource "aws_cloudwatch_event_target" "reaper" {
  rule      = aws_cloudwatch_event_rule.reaper.name
  target_id = "reaper"
  arn       = module.reaper.arn

  # A missed run is made good by the next one.
  retry_policy {
    maximum_event_age_in_seconds = 60
    maximum_retry_attempts       = 0
  }
}

resource "aws_lambda_permission" "reaper" {
  statement_id  = "schedule"
  action        = "lambda:InvokeFunction"
  function_name = module.reaper.function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.reaper.arn
}
