# Persistent state: the users' storage (one EFS access point per user on one file
# system, created by Launch on a user's first session) and the two tables.

resource "aws_efs_file_system" "user_data" {
  creation_token   = "${var.name}-user-data"
  encrypted        = true
  performance_mode = "generalPurpose"
  throughput_mode  = "elastic"

  tags = { Name = "${var.name}-user-data" }
}

resource "aws_efs_backup_policy" "user_data" {
  file_system_id = aws_efs_file_system.user_data.id

  backup_policy {
    status = "ENABLED"
  }
}

resource "aws_security_group" "efs" {
  name        = "${var.name}-efs"
  description = "EFS storage of users: NFS from session tasks only."
  vpc_id      = aws_vpc.this.id
}

resource "aws_vpc_security_group_ingress_rule" "efs_from_tasks" {
  security_group_id            = aws_security_group.efs.id
  description                  = "NFS from session tasks"
  ip_protocol                  = "tcp"
  from_port                    = 2049
  to_port                      = 2049
  referenced_security_group_id = aws_security_group.tasks.id
}

resource "aws_efs_mount_target" "user_data" {
  count           = length(local.task_subnet_ids)
  file_system_id  = aws_efs_file_system.user_data.id
  subnet_id       = local.task_subnet_ids[count.index]
  security_groups = [aws_security_group.efs.id]
}

# Only TLS, only users' task roles, each only through its own access point: no client
# can mount the file system root, where every user's directory is, nor another user's
# access point. The denies hold whatever any identity policy of this account allows.
data "aws_iam_policy_document" "user_data" {
  statement {
    sid       = "TlsOnly"
    effect    = "Deny"
    actions   = ["*"]
    resources = [aws_efs_file_system.user_data.arn]

    principals {
      type        = "AWS"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  statement {
    sid       = "OnlyUserTaskRoles"
    effect    = "Deny"
    actions   = ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite", "elasticfilesystem:ClientRootAccess"]
    resources = [aws_efs_file_system.user_data.arn]

    principals {
      type        = "AWS"
      identifiers = ["*"]
    }

    condition {
      test     = "ArnNotLike"
      variable = "aws:PrincipalArn"
      values   = [local.user_task_roles]
    }
  }

  statement {
    sid       = "OnlyTaggedRoles"
    effect    = "Deny"
    actions   = ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite", "elasticfilesystem:ClientRootAccess"]
    resources = [aws_efs_file_system.user_data.arn]

    principals {
      type        = "AWS"
      identifiers = ["*"]
    }

    condition {
      test     = "Null"
      variable = "aws:PrincipalTag/access_point_id"
      values   = ["true"]
    }
  }

  # Also denies a mount without an access point: a key missing from the request
  # makes a negated condition true.
  statement {
    sid       = "OwnAccessPointOnly"
    effect    = "Deny"
    actions   = ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite", "elasticfilesystem:ClientRootAccess"]
    resources = [aws_efs_file_system.user_data.arn]

    principals {
      type        = "AWS"
      identifiers = ["*"]
    }

    condition {
      test     = "StringNotEquals"
      variable = "elasticfilesystem:AccessPointArn"
      values   = [local.own_access_point_arn]
    }
  }

  statement {
    sid       = "UserTaskRolesThroughTheirAccessPoint"
    actions   = ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"]
    resources = [aws_efs_file_system.user_data.arn]

    principals {
      type        = "AWS"
      identifiers = ["*"]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:PrincipalArn"
      values   = [local.user_task_roles]
    }

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

resource "aws_efs_file_system_policy" "user_data" {
  file_system_id = aws_efs_file_system.user_data.id
  policy         = data.aws_iam_policy_document.user_data.json
}

resource "aws_dynamodb_table" "users" {
  name                        = "${var.name}-users"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "user_id"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "user_id"
    type = "S"
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled = true
  }
}

resource "aws_dynamodb_table" "sessions" {
  name                        = "${var.name}-sessions"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "session_id"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "session_id"
    type = "S"
  }

  attribute {
    name = "user_id"
    type = "S"
  }

  attribute {
    name = "active_user_id"
    type = "S"
  }

  attribute {
    name = "created_at"
    type = "S"
  }

  # A user's sessions, newest first.
  global_secondary_index {
    name            = "by-user"
    projection_type = "ALL"

    key_schema {
      attribute_name = "user_id"
      key_type       = "HASH"
    }

    key_schema {
      attribute_name = "created_at"
      key_type       = "RANGE"
    }
  }

  # Sparse: active_user_id exists only while a session is not terminal, so whoever
  # scans active sessions pays for active sessions, never for history.
  global_secondary_index {
    name            = "active"
    projection_type = "ALL"

    key_schema {
      attribute_name = "active_user_id"
      key_type       = "HASH"
    }

    key_schema {
      attribute_name = "created_at"
      key_type       = "RANGE"
    }
  }

  ttl {
    attribute_name = "expires_at"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled = true
  }
}
