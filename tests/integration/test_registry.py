"""Training against a real `mlflow server` (PostgreSQL backend): register, aliases, rollback."""

import json
import uuid
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from sklearn.metrics import adjusted_rand_score

from persona.adapters import mlflow_registry
from persona.cli import main
from persona.data.catalogue import load_catalogue
from persona.data.generator import generate_snapshot
from persona.data.schema import load_schema
from persona.flows.train import DataRequest, TrainingContext, run_training
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
        TrainingContext.from_settings(settings),
        DataRequest(source="synthetic", rows=rows, seed=seed),
        progress=False,
    )


def test_train_register_alias_load_same_predictions(settings_for):
    settings = settings_for()
    result = train(settings)
    assert (result["version"], result["alias"]) == ("1", "production")
    assert result["reason"] == "no model in production"
    client = MlflowClient(settings.mlflow_tracking_uri)
    version = client.get_model_version_by_alias(settings.model_name, "production")
    assert (
        version.tags["decision"] == "production"
        and version.tags["training_run_id"] == result["run_id"]
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
    assert set(from_registry.persona_name) <= set(result["personas"])
    # ... and the registry serves the very estimator the search fitted: its cluster labels
    # and the served persona ids are the same partition of these customers.
    fitted = load_estimator(settings.home / "runs" / result["run_id"] / f"{result['winner']}.skops")
    fitted_labels = fitted.predict(prepare_features(customers, load_schema(settings.schema_path)))
    assert adjusted_rand_score(fitted_labels, from_registry.persona_id) == 1.0
    assert list(from_registry.columns) == ["persona_id", "persona_name", "confidence", "distance"]

    # the parent run has one nested run per candidate, and the profile artifacts
    run = client.get_run(result["run_id"])
    children = client.search_runs(
        [run.info.experiment_id], f"tags.mlflow.parentRunId = '{result['run_id']}'"
    )
    assert len(children) == 5
    artifacts = {a.path for a in client.list_artifacts(result["run_id"], "profile")}
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
    assert worse["alias"] == "challenger"
    assert worse["challenger_score"] < worse["production_score"]
    client = MlflowClient(settings_for().mlflow_tracking_uri)
    name = settings_for().model_name
    assert client.get_model_version_by_alias(name, "production").version == first["version"]
    assert client.get_model_version_by_alias(name, "challenger").version == worse["version"]
    assert (
        "challenger silhouette"
        in client.get_model_version(name, worse["version"]).tags["decision_reason"]
    )

    # force a promotion (margin -1), then roll it back from the CLI
    forced = train(
        settings_for("params_fast.yaml").with_overrides(params_path=_always_promote(settings_for)),
        seed=3,
    )
    assert forced["alias"] == "production" and forced["previous_production"] == first["version"]
    assert main(["model", "rollback"]) == 0
    assert client.get_model_version_by_alias(name, "production").version == first["version"]
    assert "rolled_back_at" in client.get_model_version(name, forced["version"]).tags
    # nothing older to go back to: a clear error, not a traceback
    assert main(["model", "rollback"]) == 1
    assert "replaced nothing; cannot roll back" in caplog.text


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
    with pytest.raises(Exception, match=r"MLflow server at http://127.0.0.1:9 did not answer"):
        mlflow_registry.connect("http://127.0.0.1:9", timeout_s=0.5)
