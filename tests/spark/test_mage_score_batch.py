"""The Mage `score_batch` pipeline with engine=spark, headless (`persona pipeline run`): the block,
in Mage's environment (no pyspark), runs the Spark environment's `persona score --engine spark`
as its own process group on local[2], and the month lands in the scores table."""

from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest
import sqlalchemy as sa
from conftest import ROOT, VENVS

PERSONA = VENVS / "dev/bin/persona"
FAST_PARAMS = ROOT / "tests/fixtures/params_fast.yaml"
ROWS = 1500

# in the Spark suite (make test-spark installs .venv/spark); Mage itself runs in .venv/dev
pytestmark = pytest.mark.spark


def run_cli(env: dict[str, str], *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(PERSONA), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_headless_score_batch_on_spark_fills_the_scores_table(project_env, mlflow_server, tmp_path):
    model = f"persona-e2e-score-{uuid.uuid4().hex[:8]}"
    database = f"sqlite:///{tmp_path / 'project.db'}"
    env = {
        **os.environ,
        **project_env,
        "MLFLOW_TRACKING_URI": mlflow_server.url,
        "PERSONA_MODEL_NAME": model,
        "MLFLOW_EXPERIMENT_NAME": model,
        "PERSONA_PARAMS": str(FAST_PARAMS),
        "PERSONA_DATABASE_URL": database,
        "PERSONA_ENV_FILE": str(tmp_path / "none.env"),
        "SPARK_MASTER": "local[2]",
        "PERSONA_SPARK_COMMAND": str(VENVS / "spark/bin/persona"),
    }
    made = run_cli(env, "data", "generate", "--rows", str(ROWS), "--month", "2026-01")
    assert made.returncode == 0, made.stderr[-3000:]
    trained = run_cli(env, "train", "--source", "table", "--months", "2026-01")
    assert trained.returncode == 0, trained.stderr[-3000:]

    result = run_cli(
        env, "pipeline", "run", "score_batch", "--var", "engine=spark", "--var", "month=2026-01"
    )

    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout)
    assert [(b["block"], b["status"]) for b in outcome["blocks"]] == [("score_batch", "completed")]
    engine = sa.create_engine(database)
    with engine.connect() as connection:
        stored = connection.execute(
            sa.text(
                "SELECT count(*), count(persona_id), min(snapshot_month) FROM customer_personas"
            )
        ).one()
    assert tuple(stored) == (ROWS, ROWS, "2026-01")

    # a month with no rows: the block fails with the command's one line, not a stack trace
    failed = run_cli(
        env, "pipeline", "run", "score_batch", "--var", "engine=spark", "--var", "month=2030-01"
    )
    assert failed.returncode != 0
    assert "no rows in 'customers'" in failed.stderr, failed.stderr[-3000:]
