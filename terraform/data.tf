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

# Only TLS, and only through an access point by the session task role: no client can
# mount the file system root, where every user's directory is.
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
    sid       = "SessionTasksThroughAccessPoints"
    actions   = ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"]
    resources = [aws_efs_file_system.user_data.arn]

    principals {
      type        = "AWS"
      identifiers = [aws_iam_role.task.arn]
    }

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
    hash_key        = "user_id"
    range_key       = "created_at"
    projection_type = "ALL"
  }

  # Sparse: active_user_id exists only while a session is not terminal, so whoever
  # scans active sessions pays for active sessions, never for history.
  global_secondary_index {
    name            = "active"
    hash_key        = "active_user_id"
    range_key       = "created_at"
    projection_type = "ALL"
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
