# The VPC the session tasks run in. In gateway mode (the default) the tasks sit in
# private subnets behind a NAT gateway, without public IPs, and only the gateway
# (gateway.tf) reaches their ports; in direct mode they sit in public subnets with a
# public IP each, their ports open to allowed_cidrs: http://<public ip>:<port>.

data "aws_availability_zones" "available" {
  state = "available"
}

locals {
  azs = slice(data.aws_availability_zones.available.names, 0, var.availability_zone_count)
  # The subnets the session tasks (and in gateway mode the gateway's tasks) and the EFS
  # mount targets are placed in.
  task_subnet_ids = local.gateway ? aws_subnet.private[*].id : aws_subnet.public[*].id
}

resource "aws_vpc" "this" {
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true

  tags = { Name = var.name }
}

# Closed: nothing may use the VPC's default security group.
resource "aws_default_security_group" "this" {
  vpc_id = aws_vpc.this.id
}

resource "aws_internet_gateway" "this" {
  vpc_id = aws_vpc.this.id

  tags = { Name = var.name }
}

resource "aws_subnet" "public" {
  count             = length(local.azs)
  vpc_id            = aws_vpc.this.id
  availability_zone = local.azs[count.index]
  cidr_block        = cidrsubnet(var.vpc_cidr, 4, count.index)
  # Direct mode: RunTask's assignPublicIp gives tasks their public IP. Nothing else
  # launched here should get one (the load balancer gets its own addresses).
  map_public_ip_on_launch = false

  tags = { Name = "${var.name}-public-${local.azs[count.index]}" }
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.this.id

  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.this.id
  }

  tags = { Name = "${var.name}-public" }
}

resource "aws_route_table_association" "public" {
  count          = length(aws_subnet.public)
  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public.id
}

resource "aws_subnet" "private" {
  count             = local.gateway ? length(local.azs) : 0
  vpc_id            = aws_vpc.this.id
  availability_zone = local.azs[count.index]
  cidr_block        = cidrsubnet(var.vpc_cidr, 4, count.index + 8)

  tags = { Name = "${var.name}-private-${local.azs[count.index]}" }
}

resource "aws_eip" "nat" {
  count  = local.gateway ? 1 : 0
  domain = "vpc"

  tags = { Name = "${var.name}-nat" }
}

# One NAT gateway for every zone: tasks only pull images, ship logs and (the gateway)
# fetch the load balancer's public keys through it. A zone's outage that takes it
# down stops new tasks from starting until it is back; running sessions and the
# gateway's cached keys go on.
resource "aws_nat_gateway" "this" {
  count         = local.gateway ? 1 : 0
  allocation_id = aws_eip.nat[0].id
  subnet_id     = aws_subnet.public[0].id

  tags = { Name = var.name }

  depends_on = [aws_internet_gateway.this]
}

resource "aws_route_table" "private" {
  count  = local.gateway ? 1 : 0
  vpc_id = aws_vpc.this.id

  route {
    cidr_block     = "0.0.0.0/0"
    nat_gateway_id = aws_nat_gateway.this[0].id
  }

  tags = { Name = "${var.name}-private" }
}

resource "aws_route_table_association" "private" {
  count          = length(aws_subnet.private)
  subnet_id      = aws_subnet.private[count.index].id
  route_table_id = aws_route_table.private[0].id
}

# The session tasks' ports: in gateway mode open to the gateway's tasks only, by their
# security group (no address range at all); in direct mode to allowed_cidrs.
resource "aws_security_group" "tasks" {
  name        = "${var.name}-tasks"
  description = local.gateway ? "Session tasks: ports of the session template from the gateway only; out to HTTPS and to the EFS storage of users." : "Session tasks: ports of the session template from allowed_cidrs; out to HTTPS and to the EFS storage of users."
  vpc_id      = aws_vpc.this.id
}

resource "aws_vpc_security_group_ingress_rule" "tasks_from_gateway" {
  for_each = local.gateway ? { for port in local.session_ports : tostring(port) => port } : {}

  security_group_id            = aws_security_group.tasks.id
  description                  = "Session port ${each.value} from the gateway"
  ip_protocol                  = "tcp"
  from_port                    = each.value
  to_port                      = each.value
  referenced_security_group_id = aws_security_group.gateway[0].id
}

resource "aws_vpc_security_group_ingress_rule" "tasks" {
  for_each = { for pair in setproduct(local.session_ports, local.gateway ? [] : var.allowed_cidrs) : "${pair[0]} from ${pair[1]}" => pair }

  security_group_id = aws_security_group.tasks.id
  description       = "Session port ${each.value[0]}"
  ip_protocol       = "tcp"
  from_port         = each.value[0]
  to_port           = each.value[0]
  cidr_ipv4         = each.value[1]
}

resource "aws_vpc_security_group_egress_rule" "tasks_https" {
  security_group_id = aws_security_group.tasks.id
  description       = "Image pulls (ECR, ECR Public), CloudWatch Logs and other HTTPS"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "tasks_efs" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "NFS to the EFS storage of users"
  ip_protocol                  = "tcp"
  from_port                    = 2049
  to_port                      = 2049
  referenced_security_group_id = aws_security_group.efs.id
}

resource "aws_cloudwatch_log_group" "flow_log" {
  name              = "/vpc/${var.name}-flow-log"
  retention_in_days = var.log_retention_days
}

resource "aws_flow_log" "this" {
  vpc_id               = aws_vpc.this.id
  traffic_type         = var.flow_log_traffic_type
  log_destination_type = "cloud-watch-logs"
  log_destination      = aws_cloudwatch_log_group.flow_log.arn
  iam_role_arn         = aws_iam_role.flow_log.arn
}

data "aws_iam_policy_document" "flow_log_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["vpc-flow-logs.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
}

resource "aws_iam_role" "flow_log" {
  name               = "${var.name}-flow-log"
  description        = "VPC flow log delivery to its log group."
  assume_role_policy = data.aws_iam_policy_document.flow_log_assume.json
}

data "aws_iam_policy_document" "flow_log" {
  statement {
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    resources = ["${aws_cloudwatch_log_group.flow_log.arn}:*"]
  }

  statement {
    actions   = ["logs:DescribeLogGroups"]
    resources = ["arn:${local.partition}:logs:${local.region}:${local.account}:log-group:*"]
  }
}

resource "aws_iam_role_policy" "flow_log" {
  name   = "deliver"
  role   = aws_iam_role.flow_log.id
  policy = data.aws_iam_policy_document.flow_log.json
}
