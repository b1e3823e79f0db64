# The session gateway (access_mode = "gateway"): the one way in to every session.
#
#   browser ──HTTPS 443──> load balancer ──HTTP 8080──> gateway tasks ──HTTP──> session task
#            *.{domain}    login.{domain}: signs the    (ECS service,           (private IP,
#                          user in (OpenID Connect),    private subnets)        template ports)
#                          forwards with its signed
#                          x-amzn-oidc-data; every
#                          other host: forwards as is
#
# Users sign in on one host, login.{domain}, the only callback URL the identity provider
# needs: the load balancer authenticates every request to it, and the gateway (gateway/)
# checks the load balancer's signature on who the user is and hands the browser a
# short-lived ticket for the session host it came from. On a session host the gateway
# turns the ticket into its own signed cookie (SIGN_IN_KEY, from Secrets Manager), sends
# a browser without one to the login host, reads the session the host names (GetItem, a
# few attributes) and forwards only the session's owner, only while it is running, to
# the task's private IP. The session tasks admit their ports from the gateway's
# security group and nothing else (network.tf). Nothing here exists in direct mode.
# docs/gateway.md says how to deploy it, and how a sign-in goes.

locals {
  # The attributes of a session the gateway may read, and so the only ones its role's
  # GetItem may name (the key included, as IAM requires).
  gateway_session_attributes = ["session_id", "user_id", "status", "private_ip", "service_ports"]

  gateway_log_group = "/ecs/${var.name}-gateway"
  # How long a connection may stay silent, WebSockets included, at the load balancer;
  # session UIs that keep a socket open ping well within it. The gateway keeps idle
  # connections from the load balancer open longer (AWS's advice for targets: else the
  # load balancer may send a request on a connection the gateway is closing, and answer
  # 502), and lets a service take as long to start its answer.
  gateway_idle_timeout_s = 300
  # The gateway's listening ports: proxied traffic, and the load balancer's health
  # checks apart from it.
  gateway_port        = 8080
  gateway_health_port = 8081

  oidc_issuer = coalesce(var.oidc_issuer, var.jwt_issuer)
  # Where users sign in: the one host the load balancer authenticates, and so the one
  # callback URL the identity provider knows (output oidc_callback_url). The gateway
  # finds it as the label `login` of SESSION_DOMAIN; no session host is one label
  # without `--`, so none can be this one.
  gateway_login_host = local.gateway ? "login.${var.domain_name}" : null

  # The repository gateway_image names, which alone the gateway's execution role may
  # pull from.
  gateway_image_parts = local.gateway ? regex("^([0-9]{12})\\.dkr\\.ecr\\.([a-z0-9-]+)\\.amazonaws\\.com(?:\\.cn)?/([^:@]+)", var.gateway_image) : []
  gateway_repository_arn = (
    local.gateway
    ? "arn:${local.partition}:ecr:${local.gateway_image_parts[1]}:${local.gateway_image_parts[0]}:repository/${local.gateway_image_parts[2]}"
    : null
  )
}

# ---------------------------------------------------------------------------------
# The certificate and the names.

resource "aws_acm_certificate" "gateway" {
  count = local.gateway ? 1 : 0

  domain_name               = var.domain_name
  subject_alternative_names = ["*.${var.domain_name}"]
  validation_method         = "DNS"

  lifecycle {
    create_before_destroy = true
  }
}

# ACM asks for the same validation record for the domain and its wildcard: one record
# validates both.
resource "aws_route53_record" "gateway_certificate_validation" {
  count = local.gateway ? 1 : 0

  zone_id         = var.hosted_zone_id
  name            = one([for o in aws_acm_certificate.gateway[0].domain_validation_options : o.resource_record_name if o.domain_name == var.domain_name])
  type            = one([for o in aws_acm_certificate.gateway[0].domain_validation_options : o.resource_record_type if o.domain_name == var.domain_name])
  records         = [one([for o in aws_acm_certificate.gateway[0].domain_validation_options : o.resource_record_value if o.domain_name == var.domain_name])]
  ttl             = 300
  allow_overwrite = true
}

resource "aws_acm_certificate_validation" "gateway" {
  count = local.gateway ? 1 : 0

  certificate_arn         = aws_acm_certificate.gateway[0].arn
  validation_record_fqdns = [aws_route53_record.gateway_certificate_validation[0].fqdn]
}

# Every session service's host, and the login host (login.{domain}), which the
# certificate's wildcard covers too. Not the domain itself: nothing answers there.
resource "aws_route53_record" "gateway" {
  count = local.gateway ? 1 : 0

  zone_id = var.hosted_zone_id
  name    = "*.${var.domain_name}"
  type    = "A"

  alias {
    name                   = aws_lb.gateway[0].dns_name
    zone_id                = aws_lb.gateway[0].zone_id
    evaluate_target_health = true
  }
}

# ---------------------------------------------------------------------------------
# The load balancer: HTTPS only; sign-in with the identity provider on the login host.

resource "aws_security_group" "gateway_lb" {
  count = local.gateway ? 1 : 0

  name        = "${var.name}-gateway-lb"
  description = "Session gateway load balancer: HTTPS (and HTTP, redirected) from gateway_allowed_cidrs; out to the gateway tasks and to the identity provider."
  vpc_id      = aws_vpc.this.id
}

resource "aws_vpc_security_group_ingress_rule" "gateway_lb" {
  for_each = { for pair in setproduct(local.gateway ? [80, 443] : [], var.gateway_allowed_cidrs) : "${pair[0]} from ${pair[1]}" => pair }

  security_group_id = aws_security_group.gateway_lb[0].id
  description       = each.value[0] == 443 ? "HTTPS" : "HTTP, redirected to HTTPS"
  ip_protocol       = "tcp"
  from_port         = each.value[0]
  to_port           = each.value[0]
  cidr_ipv4         = each.value[1]
}

resource "aws_vpc_security_group_egress_rule" "gateway_lb" {
  for_each = local.gateway ? { proxy = local.gateway_port, health = local.gateway_health_port } : {}

  security_group_id            = aws_security_group.gateway_lb[0].id
  description                  = "To the gateway tasks (${each.key})"
  ip_protocol                  = "tcp"
  from_port                    = each.value
  to_port                      = each.value
  referenced_security_group_id = aws_security_group.gateway[0].id
}

# The load balancer itself calls the identity provider's token and user info endpoints
# to complete a sign-in, from its nodes and through this security group: their
# addresses are the provider's, known to no list.
resource "aws_vpc_security_group_egress_rule" "gateway_lb_identity_provider" {
  count = local.gateway ? 1 : 0

  security_group_id = aws_security_group.gateway_lb[0].id
  description       = "HTTPS to the identity provider token and user info endpoints"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

# Access logs: every request the load balancer answers, those refused at sign-in
# included, to an S3 bucket of this account (SSE-S3: the only encryption they support).
# Elastic Load Balancing writes them as its account of the region in regions opened
# before August 2022, as its service principal in later ones (the table of AWS CDK's
# region facts, after the ALB guide's "Attach a policy to your S3 bucket").
locals {
  elb_log_accounts = {
    "af-south-1"     = "098369216593"
    "ap-east-1"      = "754344448648"
    "ap-northeast-1" = "582318560864"
    "ap-northeast-2" = "600734575887"
    "ap-northeast-3" = "383597477331"
    "ap-south-1"     = "718504428378"
    "ap-southeast-1" = "114774131450"
    "ap-southeast-2" = "783225319266"
    "ap-southeast-3" = "589379963580"
    "ca-central-1"   = "985666609251"
    "cn-north-1"     = "638102146993"
    "cn-northwest-1" = "037604701340"
    "eu-central-1"   = "054676820928"
    "eu-north-1"     = "897822967062"
    "eu-south-1"     = "635631232127"
    "eu-west-1"      = "156460612806"
    "eu-west-2"      = "652711504416"
    "eu-west-3"      = "009996457667"
    "me-south-1"     = "076674570225"
    "sa-east-1"      = "507241528517"
    "us-east-1"      = "127311923021"
    "us-east-2"      = "033677994240"
    "us-gov-east-1"  = "190560391635"
    "us-gov-west-1"  = "048591011584"
    "us-west-1"      = "027434742980"
    "us-west-2"      = "797873946194"
  }
  elb_log_account   = lookup(local.elb_log_accounts, local.region, null)
  gateway_logs_path = "gateway"
}

resource "aws_s3_bucket" "gateway_logs" {
  count = local.gateway ? 1 : 0

  # A prefix, not a name: bucket names are global, and S3 completes it to a unique one.
  bucket_prefix = "${var.name}-logs-"
  force_destroy = !var.deletion_protection
}

resource "aws_s3_bucket_public_access_block" "gateway_logs" {
  count = local.gateway ? 1 : 0

  bucket                  = aws_s3_bucket.gateway_logs[0].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "gateway_logs" {
  count = local.gateway ? 1 : 0

  bucket = aws_s3_bucket.gateway_logs[0].id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "gateway_logs" {
  count = local.gateway ? 1 : 0

  bucket = aws_s3_bucket.gateway_logs[0].id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_versioning" "gateway_logs" {
  count = local.gateway ? 1 : 0

  bucket = aws_s3_bucket.gateway_logs[0].id

  versioning_configuration {
    status = "Enabled"
  }
}

# Kept as long as the other logs (log_retention_days).
resource "aws_s3_bucket_lifecycle_configuration" "gateway_logs" {
  count = local.gateway ? 1 : 0

  bucket = aws_s3_bucket.gateway_logs[0].id

  rule {
    id     = "retention"
    status = "Enabled"

    filter {}

    expiration {
      days = var.log_retention_days
    }

    noncurrent_version_expiration {
      noncurrent_days = 1
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  depends_on = [aws_s3_bucket_versioning.gateway_logs]
}

data "aws_iam_policy_document" "gateway_logs" {
  count = local.gateway ? 1 : 0

  statement {
    sid       = "LoadBalancerLogDelivery"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.gateway_logs[0].arn}/${local.gateway_logs_path}/AWSLogs/${local.account}/*"]

    principals {
      type        = local.elb_log_account == null ? "Service" : "AWS"
      identifiers = [local.elb_log_account == null ? "logdelivery.elasticloadbalancing.amazonaws.com" : "arn:${local.partition}:iam::${local.elb_log_account}:root"]
    }
  }

  statement {
    sid       = "TlsOnly"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.gateway_logs[0].arn, "${aws_s3_bucket.gateway_logs[0].arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "gateway_logs" {
  count = local.gateway ? 1 : 0

  bucket = aws_s3_bucket.gateway_logs[0].id
  policy = data.aws_iam_policy_document.gateway_logs[0].json

  depends_on = [aws_s3_bucket_public_access_block.gateway_logs]
}

resource "aws_lb" "gateway" {
  count = local.gateway ? 1 : 0

  name               = var.name
  load_balancer_type = "application"
  internal           = false
  subnets            = aws_subnet.public[*].id
  security_groups    = [aws_security_group.gateway_lb[0].id]
  # A header that is not valid HTTP is dropped rather than passed on to the gateway.
  drop_invalid_header_fields = true
  # Requests with ambiguous framing (Content-Length with Transfer-Encoding, ...) are
  # refused here too, not only by the gateway.
  desync_mitigation_mode     = "strictest"
  enable_deletion_protection = var.deletion_protection
  idle_timeout               = local.gateway_idle_timeout_s

  access_logs {
    enabled = true
    bucket  = aws_s3_bucket.gateway_logs[0].id
    prefix  = local.gateway_logs_path
  }

  # The load balancer checks that it may write to the bucket when logging is turned on.
  depends_on = [aws_s3_bucket_policy.gateway_logs]

  tags = { Name = "${var.name}-gateway" }
}

resource "aws_lb_target_group" "gateway" {
  count = local.gateway ? 1 : 0

  name        = var.name
  target_type = "ip"
  protocol    = "HTTP"
  port        = local.gateway_port
  vpc_id      = aws_vpc.this.id
  # A task leaving (a deployment, scaling in) gets this long to finish its requests;
  # WebSockets still open then are closed, and their clients reconnect.
  deregistration_delay = 60

  health_check {
    protocol            = "HTTP"
    port                = tostring(local.gateway_health_port)
    path                = "/healthz"
    matcher             = "200"
    interval            = 10
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }
}

# On 443 every host but the login host goes straight to the gateway: a session host is
# signed in by the gateway itself, with its own signed cookie, and a browser without
# one is sent to the login host. The load balancer's own sign-in on every host would
# need a callback URL per host, made per session, which most identity providers refuse
# (docs/gateway.md, "The identity provider: one callback, on the login host").
resource "aws_lb_listener" "gateway_https" {
  count = local.gateway ? 1 : 0

  load_balancer_arn = aws_lb.gateway[0].arn
  port              = 443
  protocol          = "HTTPS"
  # TLS 1.3 and 1.2 with forward-secret ciphers only.
  ssl_policy      = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn = aws_acm_certificate_validation.gateway[0].certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.gateway[0].arn
  }
}

# The login host signs in first: the authenticate-oidc action answers every request
# without a valid sign-in cookie with a redirect to the identity provider (callback
# https://login.{domain}/oauth2/idpresponse), and forwards the rest with the user's
# claims signed by the load balancer (x-amzn-oidc-data), which the gateway verifies
# before it hands out a sign-in ticket for a session host.
resource "aws_lb_listener_rule" "gateway_login" {
  count = local.gateway ? 1 : 0

  listener_arn = aws_lb_listener.gateway_https[0].arn
  priority     = 1

  condition {
    host_header {
      values = [local.gateway_login_host]
    }
  }

  action {
    type  = "authenticate-oidc"
    order = 1

    authenticate_oidc {
      issuer                     = local.oidc_issuer
      authorization_endpoint     = var.oidc_authorization_endpoint
      token_endpoint             = var.oidc_token_endpoint
      user_info_endpoint         = var.oidc_user_info_endpoint
      client_id                  = var.oidc_client_id
      client_secret              = var.oidc_client_secret
      scope                      = "openid"
      on_unauthenticated_request = "authenticate"
      session_timeout            = var.oidc_session_timeout_s
    }
  }

  action {
    type             = "forward"
    order            = 2
    target_group_arn = aws_lb_target_group.gateway[0].arn
  }
}

resource "aws_lb_listener" "gateway_http" {
  count = local.gateway ? 1 : 0

  load_balancer_arn = aws_lb.gateway[0].arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type = "redirect"

    redirect {
      protocol    = "HTTPS"
      port        = "443"
      status_code = "HTTP_301"
    }
  }
}

# ---------------------------------------------------------------------------------
# The gateway's tasks: private subnets, no public IP, reachable from the load balancer
# only; out to the session tasks' ports, and to HTTPS (the load balancer's public keys,
# DynamoDB, ECR, Secrets Manager, CloudWatch Logs, the HTTP API for the web console)
# through the NAT gateway or the DynamoDB endpoint.

resource "aws_security_group" "gateway" {
  count = local.gateway ? 1 : 0

  name        = "${var.name}-gateway"
  description = "Session gateway tasks: 8080 and 8081 from the load balancer only; out to the session ports and to HTTPS."
  vpc_id      = aws_vpc.this.id
}

resource "aws_vpc_security_group_ingress_rule" "gateway" {
  for_each = local.gateway ? { proxy = local.gateway_port, health = local.gateway_health_port } : {}

  security_group_id            = aws_security_group.gateway[0].id
  description                  = "From the load balancer (${each.key})"
  ip_protocol                  = "tcp"
  from_port                    = each.value
  to_port                      = each.value
  referenced_security_group_id = aws_security_group.gateway_lb[0].id
}

resource "aws_vpc_security_group_egress_rule" "gateway_to_sessions" {
  for_each = local.gateway ? { for port in local.session_ports : tostring(port) => port } : {}

  security_group_id            = aws_security_group.gateway[0].id
  description                  = "Session port ${each.value}"
  ip_protocol                  = "tcp"
  from_port                    = each.value
  to_port                      = each.value
  referenced_security_group_id = aws_security_group.tasks.id
}

resource "aws_vpc_security_group_egress_rule" "gateway_https" {
  count = local.gateway ? 1 : 0

  security_group_id = aws_security_group.gateway[0].id
  description       = "HTTPS: the load balancer public keys, DynamoDB, image pulls, the sign-in key, CloudWatch Logs, the HTTP API"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

# DynamoDB from the private subnets without the NAT gateway: lower latency for the
# gateway's look-ups, and no NAT data charge. The endpoint lets through only what the
# gateway does, reading the sessions table: nothing else in the VPC (a user's session
# included) can reach DynamoDB through it.
resource "aws_vpc_endpoint" "dynamodb" {
  count = local.gateway ? 1 : 0

  vpc_id            = aws_vpc.this.id
  service_name      = "com.amazonaws.${local.region}.dynamodb"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = aws_route_table.private[*].id
  policy            = data.aws_iam_policy_document.dynamodb_endpoint[0].json

  tags = { Name = "${var.name}-dynamodb" }
}

# A gateway endpoint's policy names its principals by condition: its Principal is "*".
data "aws_iam_policy_document" "dynamodb_endpoint" {
  count = local.gateway ? 1 : 0

  statement {
    sid       = "ReadSessionsOnly"
    actions   = ["dynamodb:GetItem"]
    resources = [aws_dynamodb_table.sessions.arn]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:PrincipalAccount"
      values   = [local.account]
    }
  }
}

resource "aws_cloudwatch_log_group" "gateway" {
  count = local.gateway ? 1 : 0

  name              = local.gateway_log_group
  retention_in_days = var.log_retention_days
}

# The gateway's own role: read the few attributes of a session it routes by, and
# nothing else.
data "aws_iam_policy_document" "gateway_assume" {
  count = local.gateway ? 1 : 0

  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:ecs:${local.region}:${local.account}:*"]
    }
  }
}

resource "aws_iam_role" "gateway_task" {
  count = local.gateway ? 1 : 0

  name               = "${var.name}-gateway"
  description        = "The session gateway's tasks: GetItem of a few attributes of the sessions table, nothing else."
  assume_role_policy = data.aws_iam_policy_document.gateway_assume[0].json
}

# GetItem of the listed attributes only: ForAllValues holds every attribute a request
# names (ProjectionExpression) to the list, and dynamodb:Select keeps a request from
# asking for all of them. StringEqualsIfExists, as AWS's own example of attribute-level
# access has it: GetItem carries dynamodb:Select only when it selects.
data "aws_iam_policy_document" "gateway_task" {
  count = local.gateway ? 1 : 0

  statement {
    sid       = "ReadSessionRoutes"
    actions   = ["dynamodb:GetItem"]
    resources = [aws_dynamodb_table.sessions.arn]

    condition {
      test     = "ForAllValues:StringEquals"
      variable = "dynamodb:Attributes"
      values   = local.gateway_session_attributes
    }

    condition {
      test     = "StringEqualsIfExists"
      variable = "dynamodb:Select"
      values   = ["SPECIFIC_ATTRIBUTES"]
    }
  }
}

resource "aws_iam_role_policy" "gateway_task" {
  count = local.gateway ? 1 : 0

  name   = "read-session-routes"
  role   = aws_iam_role.gateway_task[0].id
  policy = data.aws_iam_policy_document.gateway_task[0].json
}

# ---------------------------------------------------------------------------------
# The sign-in key: what the gateway signs its sign-in tickets and its session hosts'
# cookies with (HMAC-SHA256), SIGN_IN_KEY to it. 64 random letters and digits from
# Secrets Manager's GetRandomPassword, written to the secret as a write-only value:
# Terraform never keeps it, in its state or its plan (ephemeral resources need
# Terraform 1.10, write-only arguments 1.11). ECS reads it when it starts a gateway task
# and hands it to the container as an environment variable, never in the task
# definition. Rotating it (gateway_sign_in_key_version) signs every user out of the
# session hosts; they sign in again without a prompt while their sign-in at the login
# host lasts.

ephemeral "aws_secretsmanager_random_password" "gateway_sign_in_key" {
  count = local.gateway ? 1 : 0

  password_length = 64
  # Letters and digits only: nothing a shell, an env file or a JSON string would treat
  # differently.
  exclude_punctuation        = true
  include_space              = false
  require_each_included_type = true
}

# Encrypted with the account's AWS managed key of Secrets Manager (aws/secretsmanager),
# which lets the execution role decrypt through Secrets Manager only.
resource "aws_secretsmanager_secret" "gateway_sign_in_key" {
  count = local.gateway ? 1 : 0

  # A prefix: a deleted secret's name stays taken for its recovery window.
  name_prefix = "${var.name}-gateway-sign-in-key-"
  description = "The session gateway's sign-in key: signs its sign-in tickets and session cookies (SIGN_IN_KEY). Replacing it signs users out of the session hosts."
  # Nothing to recover: a new key only signs users out once.
  recovery_window_in_days = 0
}

resource "aws_secretsmanager_secret_version" "gateway_sign_in_key" {
  count = local.gateway ? 1 : 0

  secret_id                = aws_secretsmanager_secret.gateway_sign_in_key[0].id
  secret_string_wo         = ephemeral.aws_secretsmanager_random_password.gateway_sign_in_key[0].random_password
  secret_string_wo_version = var.gateway_sign_in_key_version
}

# ECS starting a gateway task: pull its image, read its sign-in key, ship its logs.
resource "aws_iam_role" "gateway_execution" {
  count = local.gateway ? 1 : 0

  name               = "${var.name}-gateway-execution"
  description        = "ECS starting a session gateway task: pulls the gateway image from its repository, reads the gateway's sign-in key secret, writes the gateway log group."
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "gateway_execution" {
  count = local.gateway ? 1 : 0

  statement {
    sid     = "RegistryLogin"
    actions = ["ecr:GetAuthorizationToken"]
    # GetAuthorizationToken has no resource-level permissions.
    resources = ["*"]
  }

  statement {
    sid       = "PullGatewayImage"
    actions   = ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"]
    resources = [local.gateway_repository_arn]
  }

  # The one secret the container gets (secrets in its definition); the AWS managed key
  # it is encrypted with needs no grant of its own.
  statement {
    sid       = "ReadSignInKey"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.gateway_sign_in_key[0].arn]
  }

  statement {
    sid       = "GatewayLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["arn:${local.partition}:logs:${local.region}:${local.account}:log-group:${local.gateway_log_group}:*"]
  }
}

resource "aws_iam_role_policy" "gateway_execution" {
  count = local.gateway ? 1 : 0

  name   = "start-gateway-tasks"
  role   = aws_iam_role.gateway_execution[0].id
  policy = data.aws_iam_policy_document.gateway_execution[0].json
}

resource "aws_ecs_task_definition" "gateway" {
  count = local.gateway ? 1 : 0

  family                   = "${var.name}-gateway"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = tostring(var.gateway_cpu)
  memory                   = tostring(var.gateway_memory)
  execution_role_arn       = aws_iam_role.gateway_execution[0].arn
  task_role_arn            = aws_iam_role.gateway_task[0].arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "ARM64"
  }

  container_definitions = jsonencode([
    {
      name                   = "gateway"
      image                  = var.gateway_image
      essential              = true
      readonlyRootFilesystem = true
      portMappings = [
        { containerPort = local.gateway_port, protocol = "tcp" },
        { containerPort = local.gateway_health_port, protocol = "tcp" },
      ]
      environment = [for name, value in local.gateway_env : { name = name, value = value }]
      # Read by ECS from Secrets Manager when the task starts, with the execution role.
      secrets = [for name, value_from in local.gateway_secrets : { name = name, valueFrom = value_from }]
      # A connection each way per proxied request: room for many at once.
      ulimits = [{ name = "nofile", softLimit = 65535, hardLimit = 65535 }]
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = local.gateway_log_group
          awslogs-region        = local.region
          awslogs-stream-prefix = "gateway"
          # A slow log stream must never hold up proxied requests.
          mode            = "non-blocking"
          max-buffer-size = "25m"
        }
      }
    }
  ])

  depends_on = [aws_cloudwatch_log_group.gateway]
}

# The gateway container's environment: variables gateway/src/config.rs reads (its
# Config::VARS; tests/tests/terraform.rs checks the names), the rest at their defaults.
# Secrets only in gateway_secrets, never in plain environment.
locals {
  gateway_env = local.gateway ? {
    GATEWAY_LISTEN        = "0.0.0.0:${local.gateway_port}"
    GATEWAY_HEALTH_LISTEN = "0.0.0.0:${local.gateway_health_port}"
    SESSIONS_TABLE        = aws_dynamodb_table.sessions.name
    SESSION_DOMAIN        = var.domain_name
    # The signer the gateway accepts in x-amzn-oidc-data: this load balancer only.
    ALB_ARN                     = aws_lb.gateway[0].arn
    AWS_REGION                  = local.region
    HEADER_READ_TIMEOUT_S       = tostring(local.gateway_idle_timeout_s + 5)
    UPSTREAM_RESPONSE_TIMEOUT_S = tostring(local.gateway_idle_timeout_s)
    # How long a session host's sign-in cookie lasts.
    SIGN_IN_TTL_S = tostring(var.gateway_sign_in_ttl_s)
    # Where the web console's /_gateway/api/* calls go: this API, over HTTPS through
    # the NAT gateway (gateway_https).
    API_URL = aws_apigatewayv2_api.sessions.api_endpoint
  } : {}

  # Name -> the secret ECS reads it from. The version is named (the ARN's :json-key:
  # version-stage:version-id suffix, the first two empty), so that a new key is a new
  # task definition, which rolls the gateway's tasks onto it.
  gateway_secrets = local.gateway ? {
    SIGN_IN_KEY = "${aws_secretsmanager_secret.gateway_sign_in_key[0].arn}:::${aws_secretsmanager_secret_version.gateway_sign_in_key[0].version_id}"
  } : {}
}

resource "aws_ecs_service" "gateway" {
  count = local.gateway ? 1 : 0

  name            = "gateway"
  cluster         = aws_ecs_cluster.sessions.id
  task_definition = aws_ecs_task_definition.gateway[0].arn
  desired_count   = var.gateway_min_tasks
  # On-demand Fargate whatever capacity_provider says for the sessions: a Spot
  # interruption of the gateway would cut every session's connections.
  capacity_provider_strategy {
    capacity_provider = "FARGATE"
    weight            = 1
  }
  # ECS spreads a Fargate service's tasks over the subnets' availability zones.
  network_configuration {
    subnets          = aws_subnet.private[*].id
    security_groups  = [aws_security_group.gateway[0].id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.gateway[0].arn
    container_name   = "gateway"
    container_port   = local.gateway_port
  }

  health_check_grace_period_seconds  = 30
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200

  # A release whose tasks never become healthy is rolled back to the last good one.
  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  propagate_tags          = "SERVICE"
  enable_ecs_managed_tags = true

  lifecycle {
    # Autoscaling owns the number of tasks once the service runs.
    ignore_changes = [desired_count]
  }

  # The target group must be attached to the load balancer before a service can use it.
  depends_on = [aws_lb_listener.gateway_https, aws_lb_listener_rule.gateway_login, aws_iam_role_policy.gateway_execution]
}

# ---------------------------------------------------------------------------------
# Scaling: between gateway_min_tasks and gateway_max_tasks, on requests per task, CPU
# and memory (WebSockets hold memory and CPU with few requests). Out when any target
# is exceeded, in only when all allow it.

resource "aws_appautoscaling_target" "gateway" {
  count = local.gateway ? 1 : 0

  service_namespace  = "ecs"
  resource_id        = "service/${aws_ecs_cluster.sessions.name}/${aws_ecs_service.gateway[0].name}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = var.gateway_min_tasks
  max_capacity       = var.gateway_max_tasks
}

resource "aws_appautoscaling_policy" "gateway" {
  for_each = local.gateway ? {
    requests = { metric = "ALBRequestCountPerTarget", target = var.gateway_requests_per_task }
    cpu      = { metric = "ECSServiceAverageCPUUtilization", target = 60 }
    memory   = { metric = "ECSServiceAverageMemoryUtilization", target = 70 }
  } : {}

  name               = "${var.name}-gateway-${each.key}"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.gateway[0].service_namespace
  resource_id        = aws_appautoscaling_target.gateway[0].resource_id
  scalable_dimension = aws_appautoscaling_target.gateway[0].scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = each.value.target
    scale_out_cooldown = 60
    scale_in_cooldown  = 300

    predefined_metric_specification {
      predefined_metric_type = each.value.metric
      resource_label         = each.key == "requests" ? "${aws_lb.gateway[0].arn_suffix}/${aws_lb_target_group.gateway[0].arn_suffix}" : null
    }
  }
}

# ---------------------------------------------------------------------------------
# Alarms: the sessions unreachable, the load balancer failing requests, sign-in failing.

resource "aws_cloudwatch_metric_alarm" "gateway_unhealthy" {
  count = local.gateway ? 1 : 0

  alarm_name          = "${var.name}-gateway-unhealthy"
  alarm_description   = "No healthy gateway task behind the load balancer: no session can be reached. See the gateway service's events and its log group."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "HealthyHostCount"
  dimensions          = { LoadBalancer = aws_lb.gateway[0].arn_suffix, TargetGroup = aws_lb_target_group.gateway[0].arn_suffix }
  statistic           = "Minimum"
  period              = 60
  evaluation_periods  = 3
  threshold           = 1
  comparison_operator = "LessThanThreshold"
  treat_missing_data  = "breaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "gateway_lb_errors" {
  count = local.gateway ? 1 : 0

  alarm_name          = "${var.name}-gateway-lb-errors"
  alarm_description   = "The load balancer answered 5xx itself (502, 503, 504): the gateway tasks refused, failed or timed out."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "HTTPCode_ELB_5XX_Count"
  dimensions          = { LoadBalancer = aws_lb.gateway[0].arn_suffix }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 10
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "gateway_sign_in_errors" {
  count = local.gateway ? 1 : 0

  alarm_name          = "${var.name}-gateway-sign-in-errors"
  alarm_description   = "The load balancer could not complete sign-ins with the identity provider (ELBAuthError): a wrong client secret or endpoint, or the provider unreachable."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "ELBAuthError"
  dimensions          = { LoadBalancer = aws_lb.gateway[0].arn_suffix }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
}
