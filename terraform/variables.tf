variable "jwt_issuer" {
  description = "Issuer (iss) of the JWTs the API accepts, e.g. https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf or https://example.eu.auth0.com/."
  type        = string

  validation {
    condition     = startswith(var.jwt_issuer, "https://")
    error_message = "jwt_issuer must be an https:// URL: API Gateway fetches the issuer's keys from it."
  }
}

variable "jwt_audience" {
  description = "Audiences (aud, or client_id for Cognito access tokens) of the JWTs the API accepts."
  type        = list(string)

  validation {
    condition     = length(var.jwt_audience) > 0
    error_message = "jwt_audience needs at least one audience."
  }
}

variable "image_registry" {
  description = "ECR registry of the session images, {account}.dkr.ecr.{region}.amazonaws.com: images resolve to {registry}/{repository}:{version}."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{12}\\.dkr\\.ecr\\.[a-z0-9-]+\\.amazonaws\\.com(\\.cn)?$", var.image_registry))
    error_message = "image_registry must look like 123456789012.dkr.ecr.eu-west-1.amazonaws.com."
  }
}

variable "name" {
  description = "Prefix of every resource name: the ECS cluster, tables, functions (<name>-<function>), state machine (<name>-lifecycle) and task definition families (<name>-<user key>)."
  type        = string
  default     = "sessions"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.name))
    error_message = "name must be 2 to 31 characters of lowercase letters, digits and hyphens, starting with a letter."
  }

  # Names AWS refuses at apply time: the event bus is named var.name, and EventBridge
  # keeps "default" for its own; EC2 refuses security group names starting with "sg-".
  validation {
    condition     = var.name != "default" && !startswith("${var.name}-", "sg-")
    error_message = "name must not be \"default\" (EventBridge's own bus) nor start with \"sg-\" (EC2 refuses such security group names)."
  }
}

variable "region" {
  description = "AWS region to deploy to; null uses the region of the environment (AWS_REGION or the profile)."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags added to every resource, besides Project = name."
  type        = map(string)
  default     = {}
}

variable "session_template" {
  description = "The session template as JSON (see functions/session-core/src/template.rs and the README); null uses session_template.json, the seed's four containers. The task security group opens exactly its containers' ports and the execution role pulls exactly its repositories."
  type        = string
  default     = null
}

variable "max_sessions_per_user" {
  description = "Sessions a user may run at once unless their user item sets max_sessions. At most 1 while the session template mounts the user's data (a user item asking for more gets 1)."
  type        = number
  default     = 1

  validation {
    condition     = var.max_sessions_per_user >= 1 && floor(var.max_sessions_per_user) == var.max_sessions_per_user
    error_message = "max_sessions_per_user must be a whole number of at least 1."
  }

  # Two sessions of one user would run two PostgreSQL servers on one data directory.
  validation {
    condition = var.max_sessions_per_user == 1 || !anytrue([
      for c in jsondecode(coalesce(var.session_template, file("${path.module}/session_template.json"))).containers :
      try(c.user_data_path, null) != null
    ])
    error_message = "max_sessions_per_user must be 1 while the session template mounts the user's data (a container has user_data_path): a second session would run a second PostgreSQL on the same data."
  }
}

variable "check_images" {
  description = "Whether Authorize checks that every versioned image of the template exists before a session starts. It looks in the registry of this account and region, so image_registry must be that registry while it is on."
  type        = bool
  default     = true
}

variable "session_retention_days" {
  description = "Days a finished session stays in the sessions table before DynamoDB's TTL deletes it."
  type        = number
  default     = 30

  validation {
    condition     = var.session_retention_days >= 1 && floor(var.session_retention_days) == var.session_retention_days
    error_message = "session_retention_days must be a whole number of at least 1."
  }
}

variable "capacity_provider" {
  description = "FARGATE, or FARGATE_SPOT (up to ~70% cheaper, but AWS may reclaim a task with two minutes' notice and there is no automatic fallback to on-demand)."
  type        = string
  default     = "FARGATE"

  validation {
    condition     = contains(["FARGATE", "FARGATE_SPOT"], var.capacity_provider)
    error_message = "capacity_provider must be FARGATE or FARGATE_SPOT."
  }
}

variable "vpc_cidr" {
  description = "CIDR block of the VPC the session tasks run in."
  type        = string
  default     = "10.42.0.0/16"
}

variable "availability_zone_count" {
  description = "Availability zones to spread the task subnets (and EFS mount targets) over."
  type        = number
  default     = 2

  validation {
    condition     = var.availability_zone_count >= 1 && var.availability_zone_count <= 4
    error_message = "availability_zone_count must be between 1 and 4."
  }
}

variable "private_mode" {
  description = "Run tasks in private subnets behind a NAT gateway, without public IPs, for users who reach the VPC privately. Not supported by the functions yet: wait-for-ip resolves only a task's public IP, so every session would fail with NoPublicIp."
  type        = bool
  default     = false

  validation {
    condition     = !var.private_mode
    error_message = "private_mode is not supported yet: wait-for-ip resolves only public IPs, so every session would fail with NoPublicIp."
  }
}

variable "allowed_cidrs" {
  description = "CIDR blocks that may reach the session ports (the template's container ports). The default, anywhere, matches the seed's public URLs: the session services answer plain HTTP, so narrow it to your users' networks where you can."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "flow_log_traffic_type" {
  description = "Which VPC traffic the flow log records: REJECT (refused connections, cheap), ACCEPT or ALL."
  type        = string
  default     = "REJECT"

  validation {
    condition     = contains(["ACCEPT", "REJECT", "ALL"], var.flow_log_traffic_type)
    error_message = "flow_log_traffic_type must be ACCEPT, REJECT or ALL."
  }
}

variable "function_packages_dir" {
  description = "Directory of the function packages built by `cargo lambda build --release --arm64 --output-format zip` (<dir>/<crate>/bootstrap.zip); null is the repository's target/lambda."
  type        = string
  default     = null
}

variable "function_architecture" {
  description = "Instruction set of the function packages: arm64 (the default build, `cargo lambda build --release --arm64`) or x86_64 (`--x86-64`, for a build machine without the aarch64 Rust target)."
  type        = string
  default     = "arm64"

  validation {
    condition     = contains(["arm64", "x86_64"], var.function_architecture)
    error_message = "function_architecture must be arm64 or x86_64."
  }
}

variable "reserve_concurrency" {
  description = "Reserve concurrency where it protects AWS API rate limits: launch_concurrency for launch, 1 for the reaper. Accounts whose Lambda concurrency quota is still the initial 10 cannot reserve any: set false there."
  type        = bool
  default     = true
}

variable "launch_concurrency" {
  description = "Reserved concurrency of the launch function: caps the rate of RegisterTaskDefinition (about 1 call/s sustained) and RunTask (Fargate: 20 launches/s), so a burst of starts waits in Step Functions' retries instead of being throttled by ECS."
  type        = number
  default     = 10
}

variable "idle_timeout_s" {
  description = "Seconds without a heartbeat after which the reaper stops a session (reason idle), unless the user's item sets idle_timeout_s. At least twice heartbeat_interval_s; a user's shorter idle_timeout_s is raised to that."
  type        = number
  default     = 1800

  validation {
    condition     = var.idle_timeout_s >= 2 * var.heartbeat_interval_s
    error_message = "idle_timeout_s must be at least twice heartbeat_interval_s: heartbeats are written at most once per interval, so a shorter timeout stops users who are active."
  }
}

variable "max_lifetime_s" {
  description = "Seconds after which the reaper stops a session (reason max_lifetime), unless the user's item sets max_lifetime_s. The state machine's AwaitStop timeout (24 h) is the backstop."
  type        = number
  default     = 28800
}

variable "orphan_grace_s" {
  description = "Seconds a task may run before the reaper calls it an orphan when no active session claims it (the active index is eventually consistent)."
  type        = number
  default     = 300
}

variable "transition_deadline_s" {
  description = "Seconds a session may stay starting, provisioning or stopping (counted from entering that status) before the reaper stops its execution and tasks and ends it failed (reason lost). Keep it well above WaitForIp's TimeoutSeconds (600) plus Launch's retries: 1200 by default."
  type        = number
  default     = 1200

  validation {
    condition     = var.transition_deadline_s >= 1 && floor(var.transition_deadline_s) == var.transition_deadline_s
    error_message = "transition_deadline_s must be a whole number of seconds, at least 1."
  }
}

variable "reaper_schedule" {
  description = "How often the reaper runs: an EventBridge schedule expression, rate(1 minute) to rate(5 minutes)."
  type        = string
  default     = "rate(1 minute)"
}

variable "log_level" {
  description = "Application log level of the functions (TRACE, DEBUG, INFO, WARN, ERROR, FATAL)."
  type        = string
  default     = "INFO"

  validation {
    condition     = contains(["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"], var.log_level)
    error_message = "log_level must be one of TRACE, DEBUG, INFO, WARN, ERROR, FATAL."
  }
}

variable "log_retention_days" {
  description = "Days CloudWatch keeps the logs of the functions, the state machine, the API, the session tasks and the VPC flow log."
  type        = number
  default     = 365
}

variable "api_throttling_rate_limit" {
  description = "Steady-state requests per second the API accepts, across all callers."
  type        = number
  default     = 20
}

variable "api_throttling_burst_limit" {
  description = "Burst of requests the API accepts above the steady rate."
  type        = number
  default     = 50
}

variable "identity_claim" {
  description = "The JWT claim the API reads the caller's user id from: the key of the caller's item in the users table. Only \"sub\" is accepted: other claims (email, username) can be changed by their user or reused, and would hand one user's sessions and data to another."
  type        = string
  default     = "sub"

  validation {
    condition     = var.identity_claim == "sub"
    error_message = "identity_claim must be \"sub\": other claims can be changed by their user or reused."
  }
}

variable "admin_scope" {
  description = "The OAuth scope that, together with admin = true on the caller's item in the users table, lets a caller act for other users through the API (start, list, read and stop their sessions by user_id)."
  type        = string
  default     = "sessions/admin"

  validation {
    condition     = length(trimspace(var.admin_scope)) > 0
    error_message = "admin_scope must name a scope."
  }
}

variable "heartbeat_interval_s" {
  description = "The API writes a session's last_activity_at at most once per this many seconds, however often its client sends heartbeats. Keep it well under idle_timeout_s."
  type        = number
  default     = 60

  validation {
    condition     = var.heartbeat_interval_s >= 0 && floor(var.heartbeat_interval_s) == var.heartbeat_interval_s
    error_message = "heartbeat_interval_s must be a whole number of seconds, 0 or more."
  }
}

variable "failed_executions_alarm_threshold" {
  description = "Failed session executions in 15 minutes that raise the alarm. Refused starts (not authorized, at the session limit) also end as failed executions, so keep it above their usual rate."
  type        = number
  default     = 5
}

variable "alarm_emails" {
  description = "Email addresses subscribed to the alarm topic (each must confirm the subscription)."
  type        = list(string)
  default     = []
}

variable "monthly_budget_usd" {
  description = "Monthly cost budget of the account in USD; null creates no budget. Alerts at 80% of actual and 100% of forecast spend go to alarm_emails. (Account-wide: a budget filtered on the Project tag reads $0 until that cost allocation tag is activated in the Billing console.)"
  type        = number
  default     = null
}

variable "deletion_protection" {
  description = "Protect the users and sessions tables from deletion (terraform destroy fails until this is false and applied)."
  type        = bool
  default     = true
}
