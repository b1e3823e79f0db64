output "api_endpoint" {
  description = "Base URL of the HTTP API (e.g. POST <api_endpoint>/sessions)."
  value       = aws_apigatewayv2_api.sessions.api_endpoint
}

output "state_machine_arn" {
  description = "The session lifecycle state machine; each execution is one session, named by its session id."
  value       = aws_sfn_state_machine.lifecycle.arn
}

output "users_table" {
  description = "DynamoDB table of users: add a user with an item {user_id, authorized = true}."
  value       = aws_dynamodb_table.users.name
}

output "sessions_table" {
  description = "DynamoDB table of sessions."
  value       = aws_dynamodb_table.sessions.name
}

output "cluster_name" {
  description = "ECS cluster the session tasks run in."
  value       = aws_ecs_cluster.sessions.name
}

output "task_log_group" {
  description = "CloudWatch log group of the session tasks' containers."
  value       = aws_cloudwatch_log_group.tasks.name
}

output "efs_file_system_id" {
  description = "EFS file system holding every user's data, one access point per user."
  value       = aws_efs_file_system.user_data.id
}

output "event_bus_name" {
  description = "The project's EventBridge bus for session lifecycle events."
  value       = aws_cloudwatch_event_bus.sessions.name
}

output "function_names" {
  description = "The Lambda functions by crate."
  value = {
    api           = module.api.function_name
    authorize     = module.authorize.function_name
    launch        = module.launch.function_name
    "wait-for-ip" = module.wait_for_ip.function_name
    record        = module.record.function_name
    stop          = module.stop.function_name
    "task-events" = module.task_events.function_name
    reaper        = module.reaper.function_name
  }
}

output "alarm_topic_arn" {
  description = "SNS topic of the alarms and budget alerts: subscribe your on-call tooling."
  value       = aws_sns_topic.alarms.arn
}

output "dashboard_url" {
  description = "The CloudWatch dashboard of the sessions."
  value       = "https://${local.region}.console.aws.amazon.com/cloudwatch/home?region=${local.region}#dashboards:name=${aws_cloudwatch_dashboard.sessions.dashboard_name}"
}

output "session_url_pattern" {
  description = "Where each session service answers: https://{service}--{session_id}.{domain_name} in gateway mode ({service} is the template's url_key in lowercase, _ as -), http://{public ip}:{port} in direct mode."
  value       = local.gateway ? "https://{service}--{session_id}.${var.domain_name}" : "http://{public ip}:{port}"
}

output "gateway_load_balancer_dns_name" {
  description = "Gateway mode: the load balancer's DNS name, which *.{domain_name} (the session hosts and login.{domain_name}) points at (null in direct mode)."
  value       = one(aws_lb.gateway[*].dns_name)
}

output "gateway_service_name" {
  description = "Gateway mode: the gateway's ECS service in the cluster (null in direct mode)."
  value       = one(aws_ecs_service.gateway[*].name)
}

output "oidc_callback_url" {
  description = "Gateway mode: the one callback URL to register, exactly, for the load balancer's client at the identity provider: users sign in on the login host only (see docs/gateway.md). null in direct mode."
  value       = local.gateway ? "https://login.${var.domain_name}/oauth2/idpresponse" : null
}
