# `make tf-env` writes the outputs that name a setting into .env (persona.iac.TF_ENV_OUTPUTS).

output "gcs_bucket" {
  description = "Name of the MLflow artifact bucket (GCS_BUCKET)."
  value       = google_storage_bucket.artifacts.name
}

output "gcs_prefix" {
  description = "Folder inside the bucket for MLflow artifacts (GCS_PREFIX)."
  value       = var.gcs_prefix
}

output "mlflow_artifacts_destination" {
  description = "Artifact root the MLflow server proxies to, gs://BUCKET/PREFIX (MLFLOW_ARTIFACTS_DESTINATION)."
  value       = "gs://${google_storage_bucket.artifacts.name}/${var.gcs_prefix}"
}

output "mlflow_service_account_email" {
  description = "Service account to run the MLflow server as (attach it to the VM or Cloud Run service, or impersonate it locally)."
  value       = google_service_account.mlflow.email
}

output "bucket_url" {
  description = "gs:// URL of the bucket, for gcloud storage commands."
  value       = google_storage_bucket.artifacts.url
}
