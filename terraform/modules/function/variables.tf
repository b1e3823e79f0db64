variable "crate" {
  description = "The function's crate under functions/ (e.g. wait-for-ip): names the package and, after name_prefix, the function."
  type        = string
}

variable "name_prefix" {
  description = "Prefix of the function name: <name_prefix>-<crate>."
  type        = string
}

variable "packages_dir" {
  description = "Directory of the cargo-lambda packages: the function's code is <packages_dir>/<crate>/bootstrap.zip."
  type        = string
}

variable "architecture" {
  description = "Instruction set the package was built for: arm64 (Graviton, cheaper per GB-second) or x86_64."
  type        = string
  default     = "arm64"
}

variable "description" {
  description = "What the function does, shown in the Lambda console."
  type        = string
}

variable "environment" {
  description = "The function's environment: exactly the variables its configuration reads (functions/session-core/src/config.rs)."
  type        = map(string)
}

variable "statements" {
  description = "The IAM statements of the AWS actions the function's code calls, each scoped to ARNs; the module adds what the Lambda runtime itself needs (its log group, X-Ray, the dead-letter queue)."
  type = list(object({
    sid       = string
    actions   = list(string)
    resources = list(string)
    conditions = optional(list(object({
      test     = string
      variable = string
      values   = list(string)
    })), [])
  }))
}

variable "memory_size" {
  description = "Memory in MB (CPU scales with it)."
  type        = number
  default     = 256
}

variable "timeout" {
  description = "Seconds an invocation may run."
  type        = number
  default     = 30
}

variable "reserved_concurrency" {
  description = "Reserved concurrent executions, where they protect an AWS API's rate limit; null reserves none."
  type        = number
  default     = null
}

variable "dead_letter_queue_arn" {
  description = "SQS queue that receives the events of asynchronous invocations that failed every retry; null for functions invoked synchronously."
  type        = string
  default     = null
}

variable "log_level" {
  description = "Application log level."
  type        = string
}

variable "log_retention_days" {
  description = "Days CloudWatch keeps the function's logs."
  type        = number
}

variable "error_alarm_threshold" {
  description = "Errors in 15 minutes that raise the function's alarm. A step that refuses a request on purpose (Authorize: not authorized, at the limit) reports it as an error, so its threshold is higher."
  type        = number
  default     = 1
}

variable "alarm_topic_arn" {
  description = "SNS topic the function's error alarm notifies."
  type        = string
}
