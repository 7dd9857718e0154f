# The MLflow artifact store: one versioned, private GCS bucket and the service account the
# MLflow server runs as, with object access on that bucket only (no project-level roles).

provider "google" {
  project = var.project_id
  region  = var.region
}

locals {
  labels = merge(
    {
      app          = "persona"
      component    = "mlflow-artifacts"
      "managed-by" = "terraform"
    },
    var.labels,
  )
}

# A fresh project may not have these APIs on yet; leaving them enabled on destroy avoids
# breaking anything else in the project that uses them.
resource "google_project_service" "required" {
  for_each = toset(["iam.googleapis.com", "storage.googleapis.com"])

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

resource "google_storage_bucket" "artifacts" {
  #checkov:skip=CKV_GCP_62:Usage logs need a second bucket to receive them (which would then fail this check itself); they are opt-in via var.access_log_bucket, and Cloud Audit Logs already record admin access.
  name     = var.bucket_name
  project  = var.project_id
  location = var.region

  storage_class = "STANDARD"
  # Registered models live here: `terraform destroy` must fail on a non-empty bucket rather
  # than silently delete every model version.
  force_destroy = false

  # IAM only (no per-object ACLs), and never public whatever IAM says.
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  # An overwrite or delete (e.g. `mlflow gc`) keeps the previous version recoverable.
  versioning {
    enabled = true
  }

  # Lifecycle rules only ever delete non-current (ARCHIVED) versions; live artifacts stay
  # until MLflow deletes them. Keep at most N older versions of an object ...
  lifecycle_rule {
    condition {
      with_state         = "ARCHIVED"
      num_newer_versions = var.noncurrent_versions_kept + 1
    }
    action {
      type = "Delete"
    }
  }

  # ... and none of them longer than the recovery window.
  lifecycle_rule {
    condition {
      with_state                 = "ARCHIVED"
      days_since_noncurrent_time = var.noncurrent_version_retention_days
    }
    action {
      type = "Delete"
    }
  }

  dynamic "logging" {
    for_each = var.access_log_bucket == null ? [] : [var.access_log_bucket]
    content {
      log_bucket        = logging.value
      log_object_prefix = var.bucket_name
    }
  }

  labels = local.labels

  depends_on = [google_project_service.required]
}

resource "google_service_account" "mlflow" {
  project      = var.project_id
  account_id   = var.mlflow_service_account_id
  display_name = "persona MLflow server"
  description  = "Runs the MLflow tracking server; reads and writes artifacts in gs://${var.bucket_name} only."

  depends_on = [google_project_service.required]
}

# Object create/read/list/delete on this bucket only: no bucket admin, no ACLs, nothing
# elsewhere in the project.
resource "google_storage_bucket_iam_member" "mlflow_objects" {
  bucket = google_storage_bucket.artifacts.name
  role   = "roles/storage.objectUser"
  member = "serviceAccount:${google_service_account.mlflow.email}"
}

# Who may act as the service account (short-lived tokens, no key files). Granted on the
# service account itself, not on the project.
resource "google_service_account_iam_member" "mlflow_impersonators" {
  for_each = toset(var.mlflow_impersonators)

  service_account_id = google_service_account.mlflow.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = each.value
}
