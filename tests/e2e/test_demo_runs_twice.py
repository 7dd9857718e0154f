"""`make demo`'s flow on the real local stack: MLflow server, Mage server, Gunicorn API and
Evidently UI started as `make local-up` starts them, on fresh PostgreSQL databases.

The registry starts with a @production version whose artifacts this server does not have (as
left by another checkout sharing the database): the first run must take the alias off it and
go on. The second run, through the `persona demo` command, must succeed on what the first
left behind. Headless Mage runs must not be executed a second time by the running Mage server.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from conftest import ROOT, VENVS, free_port
from mlflow.tracking import MlflowClient

from persona import composition
from persona.flows import demo
from persona.services import local_stack
from persona.settings import load_settings

ROWS, SAMPLE = 3000, 300
MONTHS = "2026-01 2026-02 2026-03"


@pytest.fixture
def stack(project_env, make_database, monkeypatch) -> Iterator[dict[str, str]]:
    """The four services of `make local-up`, each on a free port, with generous start timeouts."""
    ports = {name: free_port() for name in ("mlflow", "mage", "scoring", "evidently")}
    env = {
        **project_env,
        "PERSONA_PARAMS": str(ROOT / "tests/fixtures/params_fast.yaml"),
        "PERSONA_DATABASE_URL": make_database("persona_demo"),
        "MLFLOW_BACKEND_STORE_URI": make_database("persona_demo_mlflow"),
        "MAGE_DATABASE_CONNECTION_URL": make_database("persona_demo_mage"),
        "MLFLOW_PORT": str(ports["mlflow"]),
        "MLFLOW_WORKERS": "1",
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{ports['mlflow']}",
        "PERSONA_MAGE_PORT": str(ports["mage"]),
        "PERSONA_SCORING_PORT": str(ports["scoring"]),
        "PERSONA_SCORING_URL": f"http://127.0.0.1:{ports['scoring']}",
        "PERSONA_EVIDENTLY_PORT": str(ports["evidently"]),
        "PERSONA_MODEL_POLL_SECONDS": "2",
        "PERSONA_MODEL_NAME": f"persona-demo-{uuid.uuid4().hex[:6]}",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    started = []
    try:
        for service in local_stack.services(settings, VENVS):
            service = dataclasses.replace(service, start_timeout_s=300)
            started.append(local_stack.start(settings, service))
        yield env
    finally:
        for process in reversed(started):
            process.stop()


def _plant_broken_production(env: dict[str, str]) -> None:
    """A version registered elsewhere: its run exists here, its files do not."""
    import mlflow

    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    experiment = mlflow.set_experiment("elsewhere")
    with mlflow.start_run() as run:
        mlflow.log_param("checkout", "deleted")
    name = env["PERSONA_MODEL_NAME"]
    client.create_registered_model(name)
    source = f"mlflow-artifacts:/{experiment.experiment_id}/{run.info.run_id}/artifacts/model"
    version = client.create_model_version(name, source=source, run_id=run.info.run_id)
    client.set_registered_model_alias(name, "production", version.version)


def _training_sessions(env: dict[str, str]) -> int:
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("persona-segmentation")
    runs = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`persona.stage` = 'training'"
    )
    return len(runs)


def _customers_per_month(env: dict[str, str]) -> dict[str, int]:
    with sa.create_engine(env["PERSONA_DATABASE_URL"]).connect() as connection:
        rows = connection.execute(
            sa.text("SELECT snapshot_month, count(*) FROM customers GROUP BY 1 ORDER BY 1")
        )
        return {month: count for month, count in rows}


def test_demo_twice_on_the_real_stack_starting_from_a_broken_production(stack):
    env = stack
    name = env["PERSONA_MODEL_NAME"]
    _plant_broken_production(env)
    settings = load_settings()
    request = demo.DemoRequest.build(MONTHS, ROWS, SAMPLE, 7, "mix_shift", 1000, 120)

    first = demo.run_demo(
        composition.demo_stack(settings),
        composition.training_context(settings, seed=request.seed),
        request,
    )

    assert first.trained.retired and first.trained.retired.startswith("v1: its model files")
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    assert "retired_reason" in client.get_model_version(name, "1").tags
    history = client.get_registered_model(name).tags["persona.alias_history.production"]
    assert [(e["version"], e["action"]) for e in json.loads(history)][:2] == [
        ("1", "retire"),
        ("2", "register"),
    ]
    assert (first.trained.version, first.trained.alias) == ("2", "production")
    assert first.trained.production_version == "2"
    assert first.scored.model_versions == ("2",)  # the new version, served over HTTP
    assert first.scored.rows == SAMPLE and sum(first.scored.counts.values()) == SAMPLE
    assert len(first.scored.counts) >= 3
    monitored = first.monitored
    assert monitored.reference_version == "2" and monitored.dataset_drift
    assert monitored.drift_share >= monitored.threshold
    assert (monitored.action, monitored.new_version) == ("retrained", "3")
    assert monitored.promoted is not None and monitored.alert_status == "disabled"
    summary = demo.format_summary(first)
    for port in ("mlflow", "mage", "scoring", "evidently"):
        key = {"mlflow": "MLFLOW_PORT", "mage": "PERSONA_MAGE_PORT"}.get(
            port, f"PERSONA_{port.upper()}_PORT"
        )
        assert f"http://127.0.0.1:{env[key]}" in summary
    assert f"#/models/{name}/versions/{first.production_version}" in summary
    assert _customers_per_month(env) == {m: ROWS for m in MONTHS.split()}
    assert _training_sessions(env) == 2  # train + retrain: no block ran twice

    second = subprocess.run(
        [
            str(VENVS / "dev/bin/persona"),
            "demo",
            "--months",
            MONTHS,
            "--rows",
            str(ROWS),
            "--sample",
            str(SAMPLE),
            "--seed",
            "7",
        ],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )

    assert second.returncode == 0, second.stderr[-4000:]
    assert "Traceback" not in second.stderr
    summary = second.stdout
    assert "persona demo: done in" in summary and "make local-down" in summary
    assert f"{name} v4 -> @" in summary  # trained again: a new version
    assert "taken off" not in summary  # nothing broken this time
    assert f"{SAMPLE} customers of 2026-02 over HTTP" in summary
    assert "-> drift" in summary and "retrained: v5" in summary
    assert "Telegram is not configured" in summary
    assert "Data drift detected" in second.stderr  # the alert text itself, logged
    assert f"http://127.0.0.1:{env['PERSONA_EVIDENTLY_PORT']}" in summary
    assert _customers_per_month(env) == {m: ROWS for m in MONTHS.split()}  # replaced, no dupes
    assert _training_sessions(env) == 4
