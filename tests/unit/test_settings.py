import dataclasses
from pathlib import Path

import pytest

from persona.errors import ConfigurationError
from persona.settings import VARIABLES, Settings, env_example_lines, load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_run_locally_without_docker_or_cloud(tmp_path):
    settings = load_settings(environ={"PERSONA_HOME": str(tmp_path)})
    assert settings.project_database_url == f"sqlite:///{tmp_path / 'persona.db'}"
    assert settings.backend_store_uri.startswith("sqlite:///")
    assert settings.artifacts_destination == str(tmp_path / "mlartifacts")
    assert settings.mage_db_url.startswith("sqlite:///")


def test_precedence_run_variable_over_environment_over_default():
    env = {"PERSONA_MODEL_NAME": "from-env"}
    assert load_settings(environ={}).model_name == "persona-segmentation"
    assert load_settings(environ=env).model_name == "from-env"
    assert load_settings(environ=env, overrides={"model_name": "from-run"}).model_name == "from-run"
    base = load_settings(environ=env)
    assert base.with_overrides(model_name="x").model_name == "x"
    assert base.with_overrides(model_name="x").mlflow_port == base.mlflow_port


def test_bad_integer_names_the_variable():
    with pytest.raises(ConfigurationError, match="MLFLOW_PORT must be an integer, got 'abc'"):
        load_settings(environ={"MLFLOW_PORT": "abc"})


@pytest.mark.parametrize(
    ("raw", "value"), [("true", True), ("ON", True), ("0", False), ("", False)]
)
def test_switches_read_common_spellings(raw, value):
    assert load_settings(environ={"PERSONA_SCORING_LOG": raw}).scoring_log is value


def test_a_bad_switch_names_the_variable():
    with pytest.raises(ConfigurationError, match="PERSONA_SCORING_LOG must be true or false"):
        load_settings(environ={"PERSONA_SCORING_LOG": "maybe"})


def test_unknown_override_is_rejected():
    with pytest.raises(ConfigurationError, match="unknown setting"):
        load_settings(environ={}, overrides={"no_such": 1})


def test_gcs_bucket_selects_gs_artifacts():
    settings = load_settings(environ={"GCS_BUCKET": "b", "GCS_PREFIX": "/mlflow/"})
    assert settings.artifacts_destination == "gs://b/mlflow"


def test_env_example_lists_exactly_the_settings_variables():
    committed = (ROOT / ".env.example").read_text().splitlines()
    assert committed == env_example_lines()
    names = {line.split("=", 1)[0] for line in committed if line and not line.startswith("#")}
    assert names == {var.env for var in VARIABLES.values()}


def test_every_settings_field_has_an_environment_variable():
    assert {field.name for field in dataclasses.fields(Settings)} == set(VARIABLES)


def test_a_first_env_file_gets_fresh_secrets_and_keeps_the_rest(tmp_path, capsys):
    from persona.cli import main
    from persona.settings import GENERATED_SECRETS

    path = tmp_path / ".env"
    assert main(["env-init", "--path", str(path)]) == 0
    written = dict(
        line.split("=", 1)
        for line in path.read_text().splitlines()
        if "=" in line and line[0] != "#"
    )
    assert all(len(written[name]) >= 24 for name in GENERATED_SECRETS)
    assert written["DEFAULT_OWNER_EMAIL"] == "admin@persona.local"
    assert set(written) == {var.env for var in VARIABLES.values()}
    assert path.stat().st_mode & 0o777 == 0o600
    before = path.read_text()
    assert main(["env-init", "--path", str(path)]) == 0  # never overwrites
    assert path.read_text() == before


def test_empty_values_mean_the_default_as_env_example_says():
    from persona.settings import VARIABLES, load_settings

    empty = load_settings(environ={var.env: "" for var in VARIABLES.values()})
    assert empty == load_settings(environ={})
