"""``persona monitor --engine spark`` end to end: the monitor (pipeline environment, no pyspark)
runs the Spark environment's ``persona drift-sketch`` on local[*] and on the standalone cluster,
and stores the same verdicts as the pandas engine on the same month.

Training and the monitor run as subprocesses of ``.venv/dev/bin/persona`` (they need Evidently,
matplotlib ...), against a real MLflow server and PostgreSQL.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import ROOT, VENVS

from persona.adapters import drift_store
from persona.data.catalogue import load_catalogue
from persona.data.generator import generate_snapshot

pytestmark = pytest.mark.spark

DEV_PERSONA = VENVS / "dev/bin/persona"
SPARK_PERSONA = VENVS / "spark/bin/persona"
ROWS = 60_000


def _persona(env: dict[str, str], *args: str) -> dict:
    done = subprocess.run(
        [str(DEV_PERSONA), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def project(mlflow_server, tmp_path_factory):
    """A production model trained by this release (so it logged a reference sketch) and a
    month with a shifted channel mix, as Parquet."""
    home = tmp_path_factory.mktemp("monitor-spark")
    model = f"persona-spark-{uuid.uuid4().hex[:8]}"
    env = {
        "PERSONA_HOME": str(home),
        "PERSONA_CATALOGUE": str(ROOT / "00_create_data/personas.yaml"),
        "PERSONA_SCHEMA": str(ROOT / "00_create_data/schema.yaml"),
        "PERSONA_PARAMS": str(ROOT / "tests/fixtures/params_fast.yaml"),
        "PERSONA_DRIFT_CONFIG": str(ROOT / "04_monitoring/drift.yaml"),
        "MLFLOW_TRACKING_URI": mlflow_server.url,
        "PERSONA_MODEL_NAME": model,
        "MLFLOW_EXPERIMENT_NAME": model,
        "PERSONA_SPARK_COMMAND": str(SPARK_PERSONA),
    }
    _persona(env, "train", "--source", "synthetic", "--rows", "5000", "--seed", "11")
    catalogue = load_catalogue(ROOT / "00_create_data/personas.yaml")
    month = generate_snapshot(catalogue, ROWS, "2026-04", 5, "channel_shift", progress=False)
    path = home / "month.parquet"
    month.to_parquet(path, index=False)
    return env, path


def _monitor(env, path: Path, database: str, engine: str, master: str = "local[*]") -> dict:
    env = {**env, "PERSONA_DATABASE_URL": database, "SPARK_MASTER": master}
    return _persona(
        env,
        "monitor",
        *("--source", "file", "--path", str(path), "--month", "2026-04"),
        *("--engine", engine, "--retrain", "false"),
    )


def _columns(database: str, run_id: str) -> dict[str, bool]:
    frame = drift_store.read_columns(sa.create_engine(database), run_id)
    return dict(zip(frame["column_name"], frame["drifted"], strict=True))


@pytest.fixture(scope="module")
def pandas_verdicts(project, make_database):
    env, path = project
    database = make_database("persona_spark_pandas")
    outcome = _monitor(env, path, database, "pandas")
    return outcome["decision"], _columns(database, outcome["run_id"])


@pytest.mark.parametrize("where", ["local", "cluster"])
def test_the_spark_engine_stores_the_pandas_engines_verdicts(
    project, pandas_verdicts, make_database, request, where
):
    env, path = project
    master = "local[*]"
    if where == "cluster":
        master = request.getfixturevalue("spark_cluster").master_url
    database = make_database("persona_spark_engine")
    outcome = _monitor(env, path, database, "spark", master)

    decision, columns = pandas_verdicts
    assert outcome["decision"] == decision == "drift_no_retrain"
    assert _columns(database, outcome["run_id"]) == columns
    assert columns["channel"]
    (run,) = drift_store.read_runs(sa.create_engine(database)).to_dict("records")
    assert run["n_current"] == ROWS  # the whole month was judged, not the sample
    page = Path(env["PERSONA_HOME"]) / "monitoring" / Path(run["report_location"]).name
    text = page.read_text("utf-8")
    assert f"all {ROWS:,} rows" in text and "random sample of 20,000 rows" in text


def test_a_method_the_sketches_cannot_answer_is_one_line(project, make_database, tmp_path):
    env, path = project
    config = tmp_path / "drift.yaml"
    config.write_text("columns:\n  age: {method: ks, threshold: 0.05}\n")
    env = {
        **env,
        "PERSONA_DRIFT_CONFIG": str(config),
        "PERSONA_DATABASE_URL": make_database("persona_spark_ks"),
    }
    done = subprocess.run(
        [str(DEV_PERSONA), "monitor", "--source", "file", "--path", str(path)]
        + ["--month", "2026-04", "--engine", "spark", "--retrain", "false"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 2
    assert "'ks' for column age needs the rows" in done.stderr
    assert "Traceback" not in done.stderr
