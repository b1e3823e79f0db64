# The front door: an HTTP API whose every route requires a JWT from the configured
# issuer, with throttling and access logs. Each route goes to the api function
# (functions/api, payload format 2.0), which matches the request itself and reads the
# caller from the authorizer's claims.

locals {
  # Exactly api::Route::KEYS (functions/api/src/lib.rs); tests/tests/terraform.rs
  # checks that the two agree.
  api_route_keys = [
    "POST /session",
    "POST /sessions",
    "GET /sessions",
    "GET /sessions/{id}",
    "DELETE /sessions/{id}",
    "POST /sessions/{id}/heartbeat",
    "GET /versions",
  ]
}

resource "aws_apigatewayv2_api" "sessions" {
  name          = var.name
  description   = "Session provisioner API: start, stop, status, list, heartbeat, versions."
  protocol_type = "HTTP"
}

resource "aws_apigatewayv2_authorizer" "jwt" {
  api_id           = aws_apigatewayv2_api.sessions.id
  name             = "jwt"
  authorizer_type  = "JWT"
  identity_sources = ["$request.header.Authorization"]

  jwt_configuration {
    issuer = var.jwt_issuer
    # In gateway mode the web console calls the API through the gateway with the access
    # token the load balancer got for the user (docs/gateway.md): its client is the
    # load balancer's. A Cognito access token has no aud; API Gateway matches its
    # client_id against these audiences instead.
    audience = local.gateway ? distinct(concat(var.jwt_audience, [var.oidc_client_id])) : var.jwt_audience
  }
}

resource "aws_cloudwatch_log_group" "api_access" {
  name              = "/aws/apigateway/${var.name}-access"
  retention_in_days = var.log_retention_days
}

resource "aws_apigatewayv2_stage" "default" {
  api_id      = aws_apigatewayv2_api.sessions.id
  name        = "$default"
  auto_deploy = true

  default_route_settings {
    throttling_rate_limit    = var.api_throttling_rate_limit
    throttling_burst_limit   = var.api_throttling_burst_limit
    detailed_metrics_enabled = true
  }

  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.api_access.arn
    format = jsonencode({
      requestId          = "$context.requestId"
      requestTime        = "$context.requestTime"
      sourceIp           = "$context.identity.sourceIp"
      routeKey           = "$context.routeKey"
      status             = "$context.status"
      responseLength     = "$context.responseLength"
      latencyMs          = "$context.responseLatency"
      integrationLatency = "$context.integrationLatency"
      integrationError   = "$context.integrationErrorMessage"
      authorizerError    = "$context.authorizer.error"
      caller             = "$context.authorizer.claims.sub"
    })
  }
}

resource "aws_apigatewayv2_integration" "api" {
  api_id                 = aws_apigatewayv2_api.sessions.id
  description            = "The api function."
  integration_type       = "AWS_PROXY"
  integration_method     = "POST"
  integration_uri        = module.api.invoke_arn
  payload_format_version = "2.0"
}

resource "aws_apigatewayv2_route" "api" {
  for_each = toset(local.api_route_keys)

  api_id             = aws_apigatewayv2_api.sessions.id
  route_key          = each.value
  target             = "integrations/${aws_apigatewayv2_integration.api.id}"
  authorization_type = "JWT"
  authorizer_id      = aws_apigatewayv2_authorizer.jwt.id
}

resource "aws_lambda_permission" "api" {
  statement_id  = "http-api"
  action        = "lambda:InvokeFunction"
  function_name = module.api.function_name
  principal     = "apigateway.amazonaws.com"
  # Any stage and route of this API only.
  source_arn = "${aws_apigatewayv2_api.sessions.execution_arn}/*/*"
}
