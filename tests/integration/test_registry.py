"""Training against a real `mlflow server` (PostgreSQL backend): register, aliases, rollback."""

import json
import os
import subprocess
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from sklearn.metrics import adjusted_rand_score

from persona.adapters import mlflow_registry
from persona.cli import main
from persona.composition import training_context
from persona.data.catalogue import load_catalogue
from persona.data.generator import generate_snapshot
from persona.data.schema import load_schema
from persona.errors import InvalidInputError
from persona.flows.train import DataRequest, run_training
from persona.model.preprocess import prepare_features
from persona.model.pyfunc import load_estimator
from persona.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests/fixtures"


@pytest.fixture
def settings_for(project_env, mlflow_server, monkeypatch):
    """Settings factory for one registered model name per test (tests do not share aliases)."""
    model_name = f"persona-test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    monkeypatch.setenv("PERSONA_MODEL_NAME", model_name)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", model_name)

    def build(params: str = "params_fast.yaml"):
        return load_settings(overrides={"params_path": FIXTURES / params})

    return build


def train(settings, seed=1, rows=4000):
    return run_training(
        training_context(settings),
        DataRequest(source="synthetic", rows=rows, seed=seed),
        progress=False,
    )


def test_train_register_alias_load_same_predictions(settings_for):
    settings = settings_for()
    result = train(settings)
    assert (result.version, result.alias) == ("1", "production")
    assert result.reason == "no model in production"
    client = MlflowClient(settings.mlflow_tracking_uri)
    version = client.get_model_version_by_alias(settings.model_name, "production")
    assert (
        version.tags["decision"] == "production"
        and version.tags["training_run_id"] == result.run_id
    )

    served = mlflow.pyfunc.load_model(f"models:/{settings.model_name}@production")
    customers = generate_snapshot(
        load_catalogue(settings.catalogue_path), 500, seed=9, progress=False
    )
    from_registry = served.predict(customers)
    in_process = served.unwrap_python_model().predict(None, customers)
    pd.testing.assert_frame_equal(
        from_registry.reset_index(drop=True), in_process.reset_index(drop=True)
    )
    assert set(from_registry.persona_name) <= set(result.personas)
    # ... and the registry serves the very estimator the search fitted: its cluster labels
    # and the served persona ids are the same partition of these customers.
    fitted = load_estimator(settings.home / "runs" / result.run_id / f"{result.winner}.skops")
    fitted_labels = fitted.predict(prepare_features(customers, load_schema(settings.schema_path)))
    assert adjusted_rand_score(fitted_labels, from_registry.persona_id) == 1.0
    assert list(from_registry.columns) == ["persona_id", "persona_name", "confidence", "distance"]

    # the parent run has one nested run per candidate, and the profile artifacts
    run = client.get_run(result.run_id)
    children = client.search_runs(
        [run.info.experiment_id], f"tags.mlflow.parentRunId = '{result.run_id}'"
    )
    assert len(children) == 5
    artifacts = {a.path for a in client.list_artifacts(result.run_id, "profile")}
    assert {
        "profile/persona_profile.png",
        "profile/persona_profile.csv",
        "profile/personas.json",
    } <= artifacts
    assert "winner_silhouette" in run.data.metrics and "winner_ari_truth" in run.data.metrics
    model_info = mlflow.models.get_model_info(f"models:/{settings.model_name}@production")
    assert model_info.signature is not None
    assert model_info.saved_input_example_info is not None


def test_worse_challenger_leaves_production_and_rollback_restores(settings_for, caplog):
    first = train(settings_for())
    worse = train(settings_for("params_worse.yaml"), seed=2)
    assert worse.alias == "challenger"
    assert worse.challenger_score < worse.production_score
    client = MlflowClient(settings_for().mlflow_tracking_uri)
    name = settings_for().model_name
    assert client.get_model_version_by_alias(name, "production").version == first.version
    assert client.get_model_version_by_alias(name, "challenger").version == worse.version
    assert (
        "challenger silhouette"
        in client.get_model_version(name, worse.version).tags["decision_reason"]
    )

    # force a promotion (margin -1), then roll it back from the CLI
    forced = train(
        settings_for("params_fast.yaml").with_overrides(params_path=_always_promote(settings_for)),
        seed=3,
    )
    assert forced.alias == "production" and forced.previous_production == first.version
    assert main(["model", "rollback"]) == 0
    assert client.get_model_version_by_alias(name, "production").version == first.version
    assert "rolled_back_at" in client.get_model_version(name, forced.version).tags
    # nothing older to go back to: a clear error, not a traceback
    assert main(["model", "rollback"]) == 1
    assert "replaced nothing; cannot roll back" in caplog.text


def test_a_configured_alias_is_the_one_training_promotes_compares_and_rolls_back(
    settings_for, monkeypatch
):
    """PERSONA_MODEL_ALIAS=live: training, champion/challenger and rollback all use @live."""
    monkeypatch.setenv("PERSONA_MODEL_ALIAS", "live")
    settings = settings_for()
    assert settings.model_alias == "live"
    client = MlflowClient(settings.mlflow_tracking_uri)
    name = settings.model_name

    def aliases() -> dict[str, str]:
        return dict(client.get_registered_model(name).aliases)

    first = train(settings, seed=1, rows=3000)
    assert (first.version, first.alias) == ("1", "live")
    assert aliases() == {"live": "1"}
    assert client.get_model_version(name, "1").tags["decision"] == "live"

    # a second training compares against @live: its labels are scored, the worse one waits
    worse = train(settings_for("params_worse.yaml"), seed=2, rows=3000)
    assert worse.alias == "challenger" and worse.production_score is not None
    assert worse.challenger_score < worse.production_score
    assert aliases() == {"live": "1", "challenger": "2"}
    assert client.get_run(worse.run_id).data.tags["persona.naming_reference"] == "@live v1"

    forced = train(settings.with_overrides(params_path=_always_promote(settings_for)), seed=3)
    assert (forced.alias, forced.previous_production) == ("live", "1")
    assert aliases() == {"live": "3", "challenger": "2"}

    # `persona model rollback` moves @live back, and @production never existed
    assert main(["model", "rollback"]) == 0
    assert aliases() == {"live": "1", "challenger": "2"}
    assert "rolled_back_at" in client.get_model_version(name, "3").tags
    tags = client.get_registered_model(name).tags
    assert "persona.alias_history.live" in tags
    assert "persona.alias_history.production" not in tags
    assert all(
        "previous_production" not in v.tags
        for v in client.search_model_versions(f"name = '{name}'")
    )


def test_cli_train_answers_json_only_on_stdout(settings_for, capsys, monkeypatch):
    settings_for()  # sets the tracking URI and a fresh model name in the environment
    monkeypatch.setenv("PERSONA_PARAMS", str(FIXTURES / "params_fast.yaml"))
    code = main(["train", "--source", "synthetic", "--rows", "3000", "--seed", "4"])
    out = capsys.readouterr().out
    assert code == 0
    result = json.loads(out)  # no MLflow "View run" lines mixed in
    assert (result["version"], result["alias"]) == ("1", "production")


def _always_promote(settings_for) -> Path:
    import yaml

    raw = yaml.safe_load((FIXTURES / "params_fast.yaml").read_text())
    raw["promotion"]["margin"] = -1.0
    path = settings_for().home / "params_always.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw))
    return path


def test_unreachable_server_is_a_named_error(project_env, monkeypatch, caplog):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    with pytest.raises(Exception, match=r"MLflow at http://127.0.0.1:9 did not answer"):
        mlflow_registry.connect("http://127.0.0.1:9", timeout_s=0.5)


# --- operator commands: promote, rollback after any promotion path, promotion info ----------


class _Constant(mlflow.pyfunc.PythonModel):
    """A model that is only registered, never loaded: the registry tests need versions fast."""

    def predict(self, context, model_input: list[str], params=None) -> list[str]:
        return model_input


@pytest.fixture
def registry(settings_for):
    """A fresh registered model on the real server and a way to add versions to it."""
    settings = settings_for()
    client = mlflow_registry.connect(settings.mlflow_tracking_uri, settings.model_name)

    def add(promote: bool, reason: str = "test registration") -> str:
        with mlflow.start_run():
            info = mlflow.pyfunc.log_model(
                name="model", python_model=_Constant(), pip_requirements=["mlflow"]
            )
        return mlflow_registry.register(
            client, settings.model_name, info.model_uri, promote, reason, {}, alias="production"
        ).version

    return SimpleNamespace(client=client, name=settings.model_name, add=add)


def _holder(registry, alias="production") -> str:
    return registry.client.get_model_version_by_alias(registry.name, alias).version


def _tags(registry, version) -> dict[str, str]:
    return registry.client.get_model_version(registry.name, version).tags


def _history(registry, alias="production") -> list[dict]:
    model = registry.client.get_registered_model(registry.name)
    return json.loads(model.tags[f"persona.alias_history.{alias}"])


def _one_line_error(caplog) -> str:
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors and "\n" not in errors[-1]
    return errors[-1]


def test_promote_from_the_cli_tags_and_records_like_training_does(registry, capsys):
    assert [registry.add(True), registry.add(False), registry.add(False)] == ["1", "2", "3"]
    capsys.readouterr()

    assert main(["model", "promote", "2"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["version"] == "2" and answer["previous_production"] == "1"
    assert answer["changed"] is True and answer["alias"] == "production"
    assert _holder(registry) == "2"
    tags = _tags(registry, "2")
    assert tags["decision"] == "production"
    assert tags["decision_reason"] == "manual promote by operator"
    assert tags["previous_production"] == "1" and tags["promoted_at"] == answer["promoted_at"]
    history = _history(registry)
    assert [(e["version"], e["action"], e["by"]) for e in history] == [
        ("1", "register", "persona"),
        ("2", "promote", "persona"),
    ]
    assert history[-1]["previous"] == "1" and history[-1]["at"] == tags["promoted_at"]
    assert mlflow_registry.promotion_info(registry.client, registry.name, "production", "2") == {
        "promoted_at": tags["promoted_at"],
        "promoted_by": "persona",
    }

    # promoting what already serves changes nothing and says so
    assert main(["model", "promote", "2"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["changed"] is False and "already holds @production" in again["reason"]
    assert len(_history(registry)) == 2

    # and the promotion is undone by a rollback, which stamps a fresh promoted_at
    old_stamp = _tags(registry, "1")["promoted_at"]
    time.sleep(1.1)  # promoted_at has one-second resolution
    assert main(["model", "rollback"]) == 0
    assert _holder(registry) == "1"
    restored = _tags(registry, "1")
    assert (
        restored["promoted_at"] > old_stamp and restored["restored_at"] == restored["promoted_at"]
    )
    assert "rolled_back_at" in _tags(registry, "2")
    assert _history(registry)[-1]["action"] == "rollback"


def test_rollback_after_a_promotion_in_the_mlflow_ui(registry, caplog):
    registry.add(True)
    registry.add(True)
    registry.add(False)
    old_stamp = _tags(registry, "2")["promoted_at"]
    # someone moves the alias in the MLflow UI: no tags, no history of ours
    registry.client.set_registered_model_alias(registry.name, "production", "3")
    assert mlflow_registry.promotion_info(registry.client, registry.name, "production", "3") == {
        "promoted_at": None,
        "promoted_by": "outside persona (e.g. the MLflow UI)",
    }
    time.sleep(1.1)

    assert main(["model", "rollback"]) == 0
    assert _holder(registry) == "2"
    tags = _tags(registry, "2")
    assert tags["promoted_at"] > old_stamp
    assert "rolled_back_at" in _tags(registry, "3")
    last = _history(registry)[-1]
    assert (last["version"], last["previous"], last["action"]) == ("2", "3", "rollback")
    assert "outside persona" in last["reason"]
    assert mlflow_registry.promotion_info(registry.client, registry.name, "production", "2") == {
        "promoted_at": tags["promoted_at"],
        "promoted_by": "persona",
    }
    # a second rollback undoes our own promotion of v2; then nothing is older
    assert main(["model", "rollback"]) == 0
    assert _holder(registry) == "1"
    assert main(["model", "rollback"]) == 1
    message = _one_line_error(caplog)
    assert "v1 replaced nothing; cannot roll back" in message
    assert "persona model promote N" in message and "versions: 1, 2, 3" in message


def test_without_any_history_rollback_names_the_promote_command(registry, caplog):
    registry.add(False)
    registry.add(False)
    registry.client.set_registered_model_alias(registry.name, "production", "2")  # the UI
    assert main(["model", "rollback"]) == 1
    message = _one_line_error(caplog)
    assert "persona model promote N" in message and "make promote VERSION=N" in message
    assert message.endswith("versions: 1, 2") and _holder(registry) == "2"

    # a version that does not exist is refused, naming those that do
    assert main(["model", "promote", "7"]) == InvalidInputError.exit_code
    message = _one_line_error(caplog)
    assert "has no version '7'" in message and message.endswith("versions: 1, 2")
    assert _holder(registry) == "2"

    # promote makes the UI's choice ours; rollback --to is recorded as a rollback
    assert main(["model", "promote", "1"]) == 0
    assert main(["model", "rollback"]) == 0 and _holder(registry) == "2"
    assert main(["model", "rollback", "--to", "1"]) == 0 and _holder(registry) == "1"
    assert [(e["version"], e["action"]) for e in _history(registry)] == [
        ("1", "promote"),
        ("2", "rollback"),
        ("1", "rollback"),
    ]


def test_promote_and_rollback_move_the_configured_alias(registry, monkeypatch):
    registry.add(True)
    registry.add(False)
    monkeypatch.setenv("PERSONA_MODEL_ALIAS", "staging")
    assert main(["model", "promote", "1"]) == 0
    assert main(["model", "promote", "2"]) == 0
    assert _holder(registry, "staging") == "2" and _holder(registry) == "1"
    assert _tags(registry, "2")["previous_staging"] == "1"
    assert [e["version"] for e in _history(registry, "staging")] == ["1", "2"]
    assert main(["model", "rollback"]) == 0
    assert _holder(registry, "staging") == "1" and _holder(registry) == "1"
    assert [e["version"] for e in _history(registry)] == ["1"]  # production untouched
    info = mlflow_registry.promotion_info(registry.client, registry.name, "staging", "1")
    assert info["promoted_by"] == "persona"
    assert info["promoted_at"] == _tags(registry, "1")["promoted_at"]


def test_make_promote_passes_the_version_to_the_cli():
    done = subprocess.run(
        ["make", "-n", "promote", "VERSION=3"],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "persona model promote 3" in done.stdout
