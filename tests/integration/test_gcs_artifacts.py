"""The `gs://` artifact destination, against the GCS emulator, through a real MLflow server."""

from pathlib import Path

import mlflow
import pytest
from conftest import start_mlflow_server
from google.cloud import storage

from persona.composition import training_context
from persona.data.catalogue import load_catalogue
from persona.data.generator import generate_snapshot
from persona.flows.train import DataRequest, run_training
from persona.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def gcs_mlflow(tmp_path, gcs_emulator, make_database):
    emulator, bucket = gcs_emulator
    server = start_mlflow_server(
        tmp_path,
        make_database("persona_mlflow_gcs"),
        extra_env={"GCS_BUCKET": bucket, "GCS_PREFIX": "mlflow", "STORAGE_EMULATOR_HOST": emulator},
    )
    yield server, emulator, bucket
    server.stop()


def test_model_artifacts_land_in_the_bucket_and_load_back(gcs_mlflow, project_env, monkeypatch):
    server, emulator, bucket = gcs_mlflow
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    settings = load_settings(overrides={"params_path": ROOT / "tests/fixtures/params_fast.yaml"})
    result = run_training(
        training_context(settings),
        DataRequest(source="synthetic", rows=3000),
        progress=False,
    )
    assert result.alias == "production"

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator)
    client = storage.Client(project="test")
    names = [blob.name for blob in client.list_blobs(bucket, prefix="mlflow/")]
    assert any(name.endswith("persona_profile.png") for name in names)
    assert any(name.endswith("MLmodel") for name in names)
    assert any(name.endswith(".skops") for name in names)

    # clients never talk to GCS: the server proxies; loading works without emulator settings
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    model = mlflow.pyfunc.load_model(f"models:/{settings.model_name}@production")
    customers = generate_snapshot(
        load_catalogue(settings.catalogue_path), 100, seed=4, progress=False
    )
    assert len(model.predict(customers)) == 100
