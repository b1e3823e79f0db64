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

  # Ending with a letter or digit: the gateway's load balancer and target group are
  # named var.name, and Elastic Load Balancing refuses names ending with a hyphen.
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,29}[a-z0-9]$", var.name))
    error_message = "name must be 2 to 31 characters of lowercase letters, digits and hyphens, starting with a letter and ending with a letter or digit."
  }

  # Names AWS refuses at apply time: the event bus is named var.name, and EventBridge
  # keeps "default" for its own; EC2 refuses security group names starting with "sg-";
  # Elastic Load Balancing refuses load balancer names starting with "internal-".
  validation {
    condition     = var.name != "default" && !startswith("${var.name}-", "sg-") && !startswith(var.name, "internal-")
    error_message = "name must not be \"default\" (EventBridge's own bus) nor start with \"sg-\" (EC2 refuses such security group names) or \"internal-\" (Elastic Load Balancing refuses such load balancer names)."
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
  description = "Whether Authorize checks that every versioned image of the template exists before a session starts, and the API lists the versions present for every image (GET /versions; when off, it lists none and any valid tag may be started). It looks in the registry of this account and region, so image_registry must be that registry while it is on."
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
  description = "Availability zones to spread the task subnets (and EFS mount targets, and in gateway mode the load balancer and the gateway's tasks) over."
  type        = number
  default     = 2

  validation {
    condition     = var.availability_zone_count >= 1 && var.availability_zone_count <= 4
    error_message = "availability_zone_count must be between 1 and 4."
  }

  # An Application Load Balancer needs subnets in at least two zones (CreateLoadBalancer
  # refuses one), and the gateway's tasks are spread over them.
  validation {
    condition     = var.access_mode == "direct" || var.availability_zone_count >= 2
    error_message = "access_mode \"gateway\" needs availability_zone_count of at least 2: the load balancer must span two availability zones."
  }
}

variable "access_mode" {
  description = "How users reach their sessions. \"gateway\" (the default): tasks in private subnets without a public IP, every session service behind one HTTPS load balancer that signs users in with OpenID Connect and a gateway that lets only the session's owner through, at https://{service}--{session_id}.{domain_name} (see gateway.tf and docs/gateway.md). \"direct\": tasks in public subnets with a public IP, each service on its own port over plain HTTP, open to allowed_cidrs; for small setups without a domain, and only on networks you trust (traffic and cookies cross in clear text, and anyone in allowed_cidrs reaches every session)."
  type        = string
  default     = "gateway"

  validation {
    condition     = contains(["gateway", "direct"], var.access_mode)
    error_message = "access_mode must be \"gateway\" or \"direct\"."
  }
}

variable "allowed_cidrs" {
  description = "Direct mode only: the CIDR blocks that may reach the session ports (the template's container ports) on the tasks' public IPs. No default: the session services answer plain HTTP, so name your users' networks. Ignored in gateway mode, where only the gateway reaches the session ports."
  type        = list(string)
  default     = null

  validation {
    condition     = var.access_mode != "direct" || (var.allowed_cidrs == null ? 0 : length(var.allowed_cidrs)) > 0
    error_message = "access_mode \"direct\" needs allowed_cidrs: the CIDR blocks of the networks your users reach the sessions from (plain HTTP on public IPs; [\"0.0.0.0/0\"] opens every session to the internet)."
  }

  validation {
    condition     = alltrue([for cidr in(var.allowed_cidrs == null ? [] : var.allowed_cidrs) : can(cidrnetmask(cidr))])
    error_message = "allowed_cidrs must be IPv4 CIDR blocks such as 203.0.113.0/24."
  }
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

# The session gateway (access_mode = "gateway"; gateway.tf). None of these is read in
# direct mode.

variable "domain_name" {
  description = "Gateway mode: the sessions' domain, e.g. sessions.example.com. Each session service gets the host {service}--{session_id}.{domain_name}, and users sign in at login.{domain_name}; the load balancer's certificate covers the domain and *.{domain_name}, and Route 53 points *.{domain_name} at it."
  type        = string
  default     = null

  validation {
    condition     = var.access_mode == "direct" || var.domain_name != null
    error_message = "access_mode \"gateway\" needs domain_name, the sessions' domain (e.g. sessions.example.com)."
  }

  validation {
    condition     = var.domain_name == null || can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$", var.domain_name))
    error_message = "domain_name must be a lowercase DNS name of at least two labels, such as sessions.example.com (no scheme, no trailing dot)."
  }

  # ACM puts the certificate's first name in its subject's common name, which holds at
  # most 64 characters: RequestCertificate refuses a longer one.
  validation {
    condition     = var.domain_name == null || length(coalesce(var.domain_name, "-")) <= 64
    error_message = "domain_name must be at most 64 characters: ACM refuses a longer first name of a certificate."
  }
}

variable "hosted_zone_id" {
  description = "Gateway mode: the Route 53 hosted zone (public) that holds domain_name: the certificate's DNS validation record and the sessions' alias records are written there."
  type        = string
  default     = null

  validation {
    condition     = var.access_mode == "direct" || var.hosted_zone_id != null
    error_message = "access_mode \"gateway\" needs hosted_zone_id, the Route 53 hosted zone of domain_name."
  }
}

variable "oidc_issuer" {
  description = "Gateway mode: the OpenID Connect issuer the load balancer signs users in with. null is jwt_issuer: the same provider as the API's, so that a user's sub, and so their user id, is the same at the API and the gateway."
  type        = string
  default     = null

  validation {
    condition     = var.oidc_issuer == null || startswith(coalesce(var.oidc_issuer, "-"), "https://")
    error_message = "oidc_issuer must be an https:// URL."
  }
}

variable "oidc_authorization_endpoint" {
  description = "Gateway mode: the identity provider's authorization endpoint (authorization_endpoint of its /.well-known/openid-configuration), e.g. https://{your domain}.auth.eu-west-1.amazoncognito.com/oauth2/authorize."
  type        = string
  default     = null

  validation {
    condition     = var.access_mode == "direct" || startswith(coalesce(var.oidc_authorization_endpoint, "-"), "https://")
    error_message = "access_mode \"gateway\" needs oidc_authorization_endpoint, an https:// URL."
  }
}

variable "oidc_token_endpoint" {
  description = "Gateway mode: the identity provider's token endpoint (token_endpoint of its /.well-known/openid-configuration)."
  type        = string
  default     = null

  validation {
    condition     = var.access_mode == "direct" || startswith(coalesce(var.oidc_token_endpoint, "-"), "https://")
    error_message = "access_mode \"gateway\" needs oidc_token_endpoint, an https:// URL."
  }
}

variable "oidc_user_info_endpoint" {
  description = "Gateway mode: the identity provider's user info endpoint (userinfo_endpoint of its /.well-known/openid-configuration)."
  type        = string
  default     = null

  validation {
    condition     = var.access_mode == "direct" || startswith(coalesce(var.oidc_user_info_endpoint, "-"), "https://")
    error_message = "access_mode \"gateway\" needs oidc_user_info_endpoint, an https:// URL."
  }
}

variable "oidc_client_id" {
  description = "Gateway mode: the client id of the load balancer's confidential client at the identity provider. Its allowed callback URLs must include https://login.{domain_name}/oauth2/idpresponse (terraform output oidc_callback_url), the one host where the load balancer signs users in; no wildcard (see docs/gateway.md)."
  type        = string
  default     = null

  validation {
    condition     = var.access_mode == "direct" || var.oidc_client_id != null
    error_message = "access_mode \"gateway\" needs oidc_client_id."
  }
}

variable "oidc_client_secret" {
  description = "Gateway mode: the client secret of oidc_client_id. Terraform keeps it in its state, in clear: keep the state encrypted and access to it restricted."
  type        = string
  default     = null
  sensitive   = true

  validation {
    condition     = var.access_mode == "direct" || var.oidc_client_secret != null
    error_message = "access_mode \"gateway\" needs oidc_client_secret: the load balancer authenticates to the token endpoint with it."
  }
}

variable "oidc_session_timeout_s" {
  description = "Gateway mode: seconds a sign-in at the login host (login.{domain_name}) lasts before the user is sent to the identity provider again (the load balancer's session cookie's lifetime there). While it lasts, a session host's expired or missing sign-in cookie is renewed without a prompt."
  type        = number
  default     = 28800

  # The load balancer's SessionTimeout: 1 to 604800 seconds (7 days).
  validation {
    condition     = var.oidc_session_timeout_s >= 1 && var.oidc_session_timeout_s <= 604800 && floor(var.oidc_session_timeout_s) == var.oidc_session_timeout_s
    error_message = "oidc_session_timeout_s must be a whole number of seconds from 1 to 604800 (7 days), the load balancer's limits."
  }
}

variable "gateway_sign_in_ttl_s" {
  description = "Gateway mode: seconds a sign-in on a session host lasts (the gateway's signed cookie there, SIGN_IN_TTL_S) before the browser goes through the login host again, silently while the sign-in there (oidc_session_timeout_s) lasts. The gateway still checks, on every request, that the user owns the session and that it runs."
  type        = number
  default     = 28800

  validation {
    condition     = var.gateway_sign_in_ttl_s >= 300 && var.gateway_sign_in_ttl_s <= 604800 && floor(var.gateway_sign_in_ttl_s) == var.gateway_sign_in_ttl_s
    error_message = "gateway_sign_in_ttl_s must be a whole number of seconds from 300 (5 minutes) to 604800 (7 days)."
  }
}

variable "gateway_sign_in_key_version" {
  description = "Gateway mode: the version of the gateway's sign-in key (SIGN_IN_KEY, which signs its sign-in tickets and session-host cookies). Terraform writes a new random key to its secret, without keeping it in its state, whenever this number changes, and the gateway's tasks are replaced to read it: raise it to rotate the key (every user is signed out of the session hosts, and signs in again without a prompt while their sign-in at the login host lasts)."
  type        = number
  default     = 1

  validation {
    condition     = var.gateway_sign_in_key_version >= 1 && floor(var.gateway_sign_in_key_version) == var.gateway_sign_in_key_version
    error_message = "gateway_sign_in_key_version must be a whole number of at least 1; raise it to rotate the sign-in key."
  }
}

variable "gateway_image" {
  description = "Gateway mode: the gateway's container image in ECR, {account}.dkr.ecr.{region}.amazonaws.com/{repository}:{tag} (or @sha256:{digest}), arm64, built from gateway/Dockerfile by the release workflow (.github/workflows/release.yml pushes {registry}/{name}-gateway:{release tag}). The gateway's execution role may pull from that repository only."
  type        = string
  default     = null

  validation {
    condition     = var.access_mode == "direct" || var.gateway_image != null
    error_message = "access_mode \"gateway\" needs gateway_image, the gateway's image in ECR (built by .github/workflows/release.yml)."
  }

  validation {
    condition     = var.gateway_image == null || can(regex("^[0-9]{12}\\.dkr\\.ecr\\.[a-z0-9-]+\\.amazonaws\\.com(\\.cn)?/[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[a-f0-9]{64})$", coalesce(var.gateway_image, "-")))
    error_message = "gateway_image must be an ECR image with a tag or digest, e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/sessions-gateway:v1.2.0."
  }
}

variable "gateway_min_tasks" {
  description = "Gateway mode: the fewest gateway tasks that run, spread over the availability zones. At least 2, so that one zone or one task failing leaves the sessions reachable."
  type        = number
  default     = 2

  validation {
    condition     = var.gateway_min_tasks >= 2 && floor(var.gateway_min_tasks) == var.gateway_min_tasks
    error_message = "gateway_min_tasks must be a whole number of at least 2: one task is a single point of failure for every session."
  }
}

variable "gateway_max_tasks" {
  description = "Gateway mode: the most gateway tasks autoscaling may run."
  type        = number
  default     = 10

  # Application Auto Scaling refuses a MaxCapacity below MinCapacity.
  validation {
    condition     = var.gateway_max_tasks >= var.gateway_min_tasks && floor(var.gateway_max_tasks) == var.gateway_max_tasks
    error_message = "gateway_max_tasks must be a whole number no smaller than gateway_min_tasks."
  }
}

variable "gateway_cpu" {
  description = "Gateway mode: CPU units of each gateway task (1024 = 1 vCPU), arm64 Fargate."
  type        = number
  default     = 256

  validation {
    condition     = contains([256, 512, 1024, 2048, 4096, 8192, 16384], var.gateway_cpu)
    error_message = "gateway_cpu must be one of Fargate's task sizes: 256, 512, 1024, 2048, 4096, 8192 or 16384."
  }
}

variable "gateway_memory" {
  description = "Gateway mode: memory (MiB) of each gateway task; Fargate allows only certain amounts for each gateway_cpu."
  type        = number
  default     = 512

  # RegisterTaskDefinition refuses a CPU and memory pair Fargate does not offer.
  # https://docs.aws.amazon.com/AmazonECS/latest/developerguide/fargate-tasks-services.html#fargate-tasks-size
  validation {
    condition = anytrue([
      var.gateway_cpu == 256 && contains([512, 1024, 2048], var.gateway_memory),
      var.gateway_cpu == 512 && var.gateway_memory >= 1024 && var.gateway_memory <= 4096 && var.gateway_memory % 1024 == 0,
      var.gateway_cpu == 1024 && var.gateway_memory >= 2048 && var.gateway_memory <= 8192 && var.gateway_memory % 1024 == 0,
      var.gateway_cpu == 2048 && var.gateway_memory >= 4096 && var.gateway_memory <= 16384 && var.gateway_memory % 1024 == 0,
      var.gateway_cpu == 4096 && var.gateway_memory >= 8192 && var.gateway_memory <= 30720 && var.gateway_memory % 1024 == 0,
      var.gateway_cpu == 8192 && var.gateway_memory >= 16384 && var.gateway_memory <= 61440 && var.gateway_memory % 4096 == 0,
      var.gateway_cpu == 16384 && var.gateway_memory >= 32768 && var.gateway_memory <= 122880 && var.gateway_memory % 8192 == 0,
    ])
    error_message = "gateway_memory must be an amount Fargate offers for gateway_cpu: 512, 1024 or 2048 for 256; 1024 to 4096 in steps of 1024 for 512; 2048 to 8192 for 1024; 4096 to 16384 for 2048; 8192 to 30720 for 4096 (steps of 1024); 16384 to 61440 in steps of 4096 for 8192; 32768 to 122880 in steps of 8192 for 16384."
  }
}

variable "gateway_requests_per_task" {
  description = "Gateway mode: requests per minute per gateway task that autoscaling aims at (ALBRequestCountPerTarget); CPU (60%) and memory (70%) targets scale it too, for WebSocket traffic that makes few requests."
  type        = number
  default     = 6000

  validation {
    condition     = var.gateway_requests_per_task > 0
    error_message = "gateway_requests_per_task must be positive."
  }
}

variable "gateway_allowed_cidrs" {
  description = "Gateway mode: the IPv4 CIDR blocks that may reach the load balancer (HTTPS 443, and 80, which only redirects to 443). Anywhere by default: every request must sign in, and only the session's owner gets through."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = length(var.gateway_allowed_cidrs) > 0 && alltrue([for cidr in var.gateway_allowed_cidrs : can(cidrnetmask(cidr))])
    error_message = "gateway_allowed_cidrs must be one or more IPv4 CIDR blocks."
  }
}
