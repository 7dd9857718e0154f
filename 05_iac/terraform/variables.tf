# Inputs of the artifact store. Only project_id and bucket_name have no default; set them in
# terraform.tfvars (copy terraform.tfvars.example).

variable "project_id" {
  description = "Google Cloud project that owns the bucket and the MLflow service account."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a project ID (6-30 characters: lowercase letters, digits, hyphens), not its name or number."
  }
}

variable "region" {
  description = "Region of the bucket, and the provider's default region. A single region is the cheapest class and keeps artifacts next to where MLflow runs."
  type        = string
  default     = "europe-west1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must be a single Google Cloud region such as europe-west1 or us-central1."
  }
}

variable "bucket_name" {
  description = "Globally unique name of the MLflow artifact bucket (becomes GCS_BUCKET)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9_-]{1,61}[a-z0-9]$", var.bucket_name)) && !startswith(var.bucket_name, "goog") && !strcontains(var.bucket_name, "google")
    error_message = "bucket_name must be 3-63 characters of lowercase letters, digits, '-' and '_' (no dots), start and end with a letter or digit, and not start with 'goog' or contain 'google'."
  }
}

variable "gcs_prefix" {
  description = "Folder inside the bucket that holds MLflow artifacts (becomes GCS_PREFIX)."
  type        = string
  default     = "mlflow"

  validation {
    condition     = can(regex("^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$", var.gcs_prefix))
    error_message = "gcs_prefix must be a relative object path without leading or trailing '/', e.g. mlflow or team/mlflow."
  }
}

variable "noncurrent_versions_kept" {
  description = "How many older (non-current) versions of each object to keep; older ones are deleted. Live objects are never deleted by lifecycle rules."
  type        = number
  default     = 3

  validation {
    condition     = var.noncurrent_versions_kept >= 1 && var.noncurrent_versions_kept <= 100 && floor(var.noncurrent_versions_kept) == var.noncurrent_versions_kept
    error_message = "noncurrent_versions_kept must be a whole number from 1 to 100."
  }
}

variable "noncurrent_version_retention_days" {
  description = "Days an overwritten or deleted artifact version is kept before the lifecycle rule removes it (the window to recover from a bad `mlflow gc` or overwrite)."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_version_retention_days >= 1 && floor(var.noncurrent_version_retention_days) == var.noncurrent_version_retention_days
    error_message = "noncurrent_version_retention_days must be a whole number of days, at least 1."
  }
}

variable "mlflow_service_account_id" {
  description = "Account ID (the part before @) of the service account the MLflow server runs as."
  type        = string
  default     = "persona-mlflow"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.mlflow_service_account_id))
    error_message = "mlflow_service_account_id must be 6-30 characters: a lowercase letter, then lowercase letters, digits or hyphens."
  }
}

variable "mlflow_impersonators" {
  description = "Principals (user:..., group:..., serviceAccount:...) allowed to impersonate the MLflow service account, so a laptop or CI can run the server with its rights and no key file."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for member in var.mlflow_impersonators : can(regex("^(user|group|serviceAccount):[^@\\s]+@[^@\\s]+$", member))])
    error_message = "Each impersonator must be user:EMAIL, group:EMAIL or serviceAccount:EMAIL (never allUsers or allAuthenticatedUsers)."
  }
}

variable "access_log_bucket" {
  description = "Optional existing bucket that receives hourly usage logs of the artifact bucket; null = no usage logs (Cloud Audit Logs still record admin activity)."
  type        = string
  default     = null

  validation {
    condition     = var.access_log_bucket == null || can(regex("^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$", var.access_log_bucket))
    error_message = "access_log_bucket must be a bucket name (without gs://) or null."
  }
}

variable "labels" {
  description = "Extra labels for the bucket (cost reports, ownership); merged over the defaults app/component/managed-by."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for key, value in var.labels : can(regex("^[a-z][a-z0-9_-]{0,62}$", key)) && can(regex("^[a-z0-9_-]{0,63}$", value))])
    error_message = "Label keys must start with a lowercase letter; keys and values may use lowercase letters, digits, '_' and '-' (at most 63 characters)."
  }
}
