# Pinned so that `make tf-init` on any machine gets a provider whose google_storage_bucket
# schema matches main.tf. Commit .terraform.lock.hcl after the first init: it records the
# exact provider build (with checksums) inside this range.
terraform {
  required_version = ">= 1.5.0, < 2.0.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 7.0"
    }
  }
}
