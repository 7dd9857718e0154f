"""Offline checks of 05_iac/terraform (no Terraform binary, no cloud) and of `make tf-env`."""

from __future__ import annotations

import io
import json
import stat
from pathlib import Path

import pytest

from persona import iac
from persona.errors import ConfigurationError
from persona.settings import VARIABLES

ROOT = Path(__file__).resolve().parents[2]
TF = ROOT / "05_iac/terraform"
SETTING_ENVS = {var.env for var in VARIABLES.values()}
BUCKET_REF = "${google_storage_bucket.artifacts.name}"

# What `terraform output -json` prints after `make tf-apply`.
OUTPUTS_JSON = {
    "bucket_url": {"sensitive": False, "type": "string", "value": "gs://acme-persona"},
    "gcs_bucket": {"sensitive": False, "type": "string", "value": "acme-persona"},
    "gcs_prefix": {"sensitive": False, "type": "string", "value": "mlflow"},
    "mlflow_artifacts_destination": {
        "sensitive": False,
        "type": "string",
        "value": "gs://acme-persona/mlflow",
    },
    "mlflow_service_account_email": {
        "sensitive": False,
        "type": "string",
        "value": "persona-mlflow@acme.iam.gserviceaccount.com",
    },
}
EXPECTED_LINES = [
    "GCS_BUCKET=acme-persona",
    "GCS_PREFIX=mlflow",
    "MLFLOW_ARTIFACTS_DESTINATION=gs://acme-persona/mlflow",
]


@pytest.fixture(scope="module")
def hcl() -> dict:
    return iac.read_hcl(TF)


@pytest.fixture(scope="module")
def bucket(hcl) -> dict:
    buckets = iac.resources(hcl, "google_storage_bucket")
    assert list(buckets) == ["artifacts"], "one artifact bucket, named `artifacts`"
    return buckets["artifacts"]


# --- the configuration --------------------------------------------------------------------


def test_terraform_and_google_provider_are_pinned(hcl):
    (terraform,) = hcl["terraform"]
    assert terraform["required_version"].startswith(">=")
    (providers,) = terraform["required_providers"]
    google = providers["google"]
    assert google["source"] == "hashicorp/google"
    assert google["version"].startswith("~>") or "<" in google["version"]


def test_every_output_tf_env_needs_is_declared():
    assert set(iac.TF_ENV_OUTPUTS) <= set(iac.declared_outputs(TF))


def test_tf_env_writes_only_real_settings():
    assert set(iac.TF_ENV_OUTPUTS.values()) <= SETTING_ENVS


def test_every_variable_and_output_is_documented_and_typed():
    variables = iac.declared_variables(TF)
    outputs = iac.declared_outputs(TF)
    assert {"project_id", "region", "bucket_name", "gcs_prefix"} <= set(variables)
    assert "mlflow_service_account_email" in outputs
    for name, body in variables.items():
        assert str(body.get("description", "")).strip(), f"variable {name} has no description"
        assert body.get("type"), f"variable {name} has no type"
    for name, body in outputs.items():
        assert str(body.get("description", "")).strip(), f"output {name} has no description"


def test_cheap_inputs_are_validated():
    variables = iac.declared_variables(TF)
    for name in ("project_id", "region", "bucket_name", "gcs_prefix"):
        assert variables[name].get("validation"), f"variable {name} has no validation"


def test_prefix_default_matches_the_setting_default():
    assert iac.declared_variables(TF)["gcs_prefix"]["default"] == VARIABLES["gcs_prefix"].default


def test_tfvars_example_sets_every_required_variable_and_nothing_unknown():
    variables = iac.declared_variables(TF)
    example = iac.load_hcl_file(TF / "terraform.tfvars.example")
    required = {name for name, body in variables.items() if "default" not in body}
    assert required <= set(example)
    assert set(example) <= set(variables)


def test_bucket_is_private_versioned_and_protected(bucket):
    assert bucket["uniform_bucket_level_access"] is True
    assert bucket["public_access_prevention"] == "enforced"
    assert bucket["versioning"][0]["enabled"] is True
    assert bucket["force_destroy"] is False
    assert bucket["labels"]


def test_lifecycle_rules_delete_only_noncurrent_versions(bucket):
    rules = bucket["lifecycle_rule"]
    deletes = [rule for rule in rules if rule["action"][0]["type"] == "Delete"]
    assert deletes, "old versions must expire, or versioning grows the bill forever"
    for rule in deletes:
        (condition,) = rule["condition"]
        assert condition.get("with_state") == "ARCHIVED" or condition.get("is_live") is False
        assert {"num_newer_versions", "days_since_noncurrent_time"} & set(condition)


def test_mlflow_gets_object_access_on_the_bucket_only(hcl):
    resource_types = {rtype for entry in hcl["resource"] for rtype in entry}
    assert not {
        rtype
        for rtype in resource_types
        if rtype.startswith(("google_project_iam", "google_folder_iam", "google_organization_iam"))
    }
    # _member only: _binding/_policy are authoritative and would drop other grants.
    assert not {"google_storage_bucket_iam_binding", "google_storage_bucket_iam_policy"} & set(
        resource_types
    )
    grants = iac.resources(hcl, "google_storage_bucket_iam_member")
    assert len(grants) == 1
    (grant,) = grants.values()
    assert grant["bucket"] == BUCKET_REF
    assert grant["role"] in {"roles/storage.objectUser", "roles/storage.objectAdmin"}
    assert "google_service_account.mlflow" in grant["member"]
    members = [
        body["member"]
        for rtype in resource_types
        if rtype.endswith("_iam_member")
        for body in iac.resources(hcl, rtype).values()
    ]
    assert not [member for member in members if "allUsers" in member or "allAuth" in member]


def test_outputs_point_at_the_managed_bucket():
    outputs = iac.declared_outputs(TF)
    assert outputs["gcs_bucket"]["value"] == BUCKET_REF
    assert outputs["mlflow_artifacts_destination"]["value"].startswith(f"gs://{BUCKET_REF}/")


# --- make tf-env ---------------------------------------------------------------------------


def test_env_lines_follow_the_output_mapping():
    assert iac.env_lines_from_outputs(OUTPUTS_JSON) == EXPECTED_LINES


def test_missing_outputs_name_what_to_do():
    with pytest.raises(ConfigurationError, match="make tf-apply"):
        iac.env_lines_from_outputs({})
    partial = {key: value for key, value in OUTPUTS_JSON.items() if key != "gcs_prefix"}
    with pytest.raises(ConfigurationError, match="'gcs_prefix' .*GCS_PREFIX"):
        iac.env_lines_from_outputs(partial)


def test_merge_keeps_comments_and_other_keys_and_is_idempotent(tmp_path):
    env = tmp_path / ".env"
    env.write_text(
        "# my settings\n"
        "PERSONA_API_TOKEN=s3cret\n"
        "# GCS_BUCKET=commented-out-stays\n"
        "export GCS_BUCKET=old-bucket\n"
        "\n"
        "PERSONA_LOG_LEVEL=DEBUG\n"
    )
    updates = {"GCS_BUCKET": "acme-persona", "GCS_PREFIX": "mlflow"}
    iac.merge_env_file(env, updates)
    first = env.read_text()
    assert first.splitlines() == [
        "# my settings",
        "PERSONA_API_TOKEN=s3cret",
        "# GCS_BUCKET=commented-out-stays",
        "export GCS_BUCKET=acme-persona",
        "",
        "PERSONA_LOG_LEVEL=DEBUG",
        "",
        "# From Terraform outputs (make tf-env)",
        "GCS_PREFIX=mlflow",
    ]
    iac.merge_env_file(env, updates)
    assert env.read_text() == first


def test_merge_rewrites_every_duplicate(tmp_path):
    env = tmp_path / ".env"
    env.write_text("GCS_BUCKET=a\nGCS_BUCKET = b\n")
    iac.merge_env_file(env, {"GCS_BUCKET": "c"})
    assert env.read_text() == "GCS_BUCKET=c\nGCS_BUCKET=c\n"


def test_absent_env_file_starts_from_the_example(tmp_path):
    env = tmp_path / ".env"
    iac.merge_env_file(env, {"GCS_BUCKET": "acme-persona"}, ROOT / ".env.example")
    example = (ROOT / ".env.example").read_text().splitlines()
    written = env.read_text().splitlines()
    assert len(written) == len(example), "every key is in the example: nothing appended"
    assert [line for line in written if line not in example] == ["GCS_BUCKET=acme-persona"]
    assert stat.S_IMODE(env.stat().st_mode) == 0o600


def test_default_template_is_the_example_next_to_the_env_file(tmp_path):
    (tmp_path / ".env.example").write_text("# doc\nGCS_BUCKET=\n")
    iac.merge_env_file(tmp_path / ".env", {"GCS_BUCKET": "acme-persona"})
    assert (tmp_path / ".env").read_text() == "# doc\nGCS_BUCKET=acme-persona\n"


@pytest.mark.parametrize("value", ["two words", "a#b", "$HOME", 'q"uote', "new\nline"])
def test_values_make_cannot_read_unquoted_are_refused(tmp_path, value):
    env = tmp_path / ".env"
    env.write_text("KEEP=1\n")
    with pytest.raises(ConfigurationError, match="GCS_PREFIX"):
        iac.merge_env_file(env, {"GCS_PREFIX": value})
    assert env.read_text() == "KEEP=1\n"


def test_cli_reads_outputs_from_a_file(tmp_path, capsys):
    outputs, env = tmp_path / "outputs.json", tmp_path / ".env"
    outputs.write_text(json.dumps(OUTPUTS_JSON))
    env.write_text("PERSONA_LOG_LEVEL=INFO\n")
    argv = ["tf-env", "--outputs-json", str(outputs), "--env-file", str(env)]
    assert iac.main(argv) == 0
    assert capsys.readouterr().out.splitlines() == EXPECTED_LINES
    assert env.read_text().splitlines()[0] == "PERSONA_LOG_LEVEL=INFO"
    assert set(EXPECTED_LINES) <= set(env.read_text().splitlines())


def test_cli_reads_outputs_from_stdin(tmp_path, monkeypatch, capsys):
    env = tmp_path / ".env"
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(OUTPUTS_JSON)))
    argv = ["tf-env", "--outputs-json", "-", "--env-file", str(env), "--template", "/nonexistent"]
    assert iac.main(argv) == 0
    assert capsys.readouterr().out.splitlines() == EXPECTED_LINES
    assert env.read_text().splitlines()[-3:] == EXPECTED_LINES


def test_cli_fails_cleanly_before_apply(tmp_path, monkeypatch, capsys):
    env = tmp_path / ".env"
    monkeypatch.setattr("sys.stdin", io.StringIO("{}\n"))
    assert iac.main(["tf-env", "--outputs-json", "-", "--env-file", str(env)]) == 2
    assert capsys.readouterr().out == ""
    assert not env.exists()
