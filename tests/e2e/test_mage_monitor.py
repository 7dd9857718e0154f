"""The Mage `monitor` pipeline headless (`make monitor`), against a real MLflow server.

A drifted month retrains, registers a new version and alerts a local Bot API stand-in with
the drifted columns; a month without drift stores its drift row and retrains nothing. The
conditionals decide which blocks run, as they would in the Mage UI or from the trigger.
"""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from mlflow.tracking import MlflowClient
from test_mage_train import mage_env, run_cli  # noqa: F401 - mage_env is a fixture

from persona.data.catalogue import load_catalogue
from persona.data.generator import generate_snapshot
from persona_tools.telegram_stub import TelegramStub

CHAT_ID = "-100424242"


@pytest.fixture
def telegram():
    with TelegramStub() as stub:
        yield stub


@pytest.fixture
def monitor_env(mage_env, pg_url, telegram) -> dict[str, str]:  # noqa: F811 - the fixture
    """The train tests' project (own model, fast search, real MLflow) on PostgreSQL, plus Telegram."""
    return {
        **mage_env,
        "PERSONA_DATABASE_URL": pg_url,
        "TELEGRAM_BOT_TOKEN": "123456:e2e-secret-token",
        "TELEGRAM_CHAT_ID": CHAT_ID,
        "TELEGRAM_BASE_URL": telegram.base_url,
        "TELEGRAM_RETRIES": "1",
    }


def _statuses(result) -> dict[str, str]:
    assert result.returncode == 0, result.stderr[-4000:]
    return {b["block"]: b["status"] for b in json.loads(result.stdout)["blocks"]}


def _versions(env: dict[str, str]) -> list[str]:
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    found = client.search_model_versions(f"name = '{env['PERSONA_MODEL_NAME']}'")
    return sorted(v.version for v in found)


def _drift_rows(env: dict[str, str]) -> list[dict]:
    with sa.create_engine(env["PERSONA_DATABASE_URL"]).connect() as connection:
        rows = connection.execute(sa.text("SELECT * FROM drift_runs ORDER BY checked_at"))
        return [dict(r._mapping) for r in rows]


def test_monitor_retrains_on_drift_records_a_quiet_month_and_a_broken_one(
    monitor_env, telegram, tmp_path
):
    env = monitor_env
    for month, scenario in (("2026-01", "none"), ("2026-02", "none"), ("2026-03", "mix_shift")):
        generated = run_cli(
            env, "data", "generate", "--rows", "5000", "--month", month, "--scenario", scenario
        )
        assert generated.returncode == 0, generated.stderr
    trained = run_cli(env, "train", "--months", "2026-01")
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert _versions(env) == ["1"]

    drifted = _statuses(run_cli(env, "pipeline", "run", "monitor", "--var", "month=2026-03"))

    assert drifted["retrain_on_drift"] == "completed"
    assert drifted["alert_retrained"] == "completed"
    assert drifted["alert_no_retrain"] == "condition_failed"
    assert _versions(env) == ["1", "2"]
    (message,) = telegram.messages
    assert message["chat_id"] == CHAT_ID
    (run,) = _drift_rows(env)
    assert run["dataset_drift"] and run["action"] == "retrained"
    assert run["new_model_version"] == "2" and run["alert_status"] == "sent"
    assert run["data_window"] == "2026-03" and run["model_version"] == "1"
    with sa.create_engine(env["PERSONA_DATABASE_URL"]).connect() as connection:
        drifted_columns = (
            connection.execute(
                sa.text("SELECT column_name FROM drift_columns WHERE run_id = :r AND drifted"),
                {"r": run["run_id"]},
            )
            .scalars()
            .all()
        )
    assert drifted_columns and all(column in message["text"] for column in drifted_columns)

    quiet = _statuses(run_cli(env, "pipeline", "run", "monitor", "--var", "month=2026-02"))

    assert quiet["retrain_on_drift"] == "condition_failed"
    assert quiet["alert_no_retrain"] == "completed"
    assert _versions(env) == ["1", "2"]
    runs = _drift_rows(env)
    assert len(runs) == 2 and runs[1]["data_window"] == "2026-02"
    assert runs[1]["dataset_drift"] is False and runs[1]["action"] == "no_drift"
    assert runs[1]["model_version"] == str(
        MlflowClient(env["MLFLOW_TRACKING_URI"])
        .get_model_version_by_alias(env["PERSONA_MODEL_NAME"], "production")
        .version
    )
    assert len(telegram.messages) == 2  # the all-clear alert (on by default)

    # a month whose file holds a channel never allowed: the run completes, stored and alerted
    broken = tmp_path / "broken.csv"
    frame = generate_snapshot(
        load_catalogue(env["PERSONA_CATALOGUE"]), 5000, "2026-04", 3, progress=False
    )
    frame.loc[frame.index[:250], "channel"] = "tiktok"
    frame.to_csv(broken, sep=";", index=False)

    bad = _statuses(
        run_cli(
            env,
            "pipeline",
            "run",
            "monitor",
            "--var",
            "source=file",
            "--var",
            f"path={broken}",
            "--var",
            "month=2026-04",
        )
    )

    assert bad["retrain_on_drift"] == "condition_failed"
    assert bad["alert_no_retrain"] == "completed"
    assert _versions(env) == ["1", "2"]
    last = _drift_rows(env)[-1]
    assert last["action"] == "data_quality_failed" and last["alert_status"] == "sent"
    assert "channel" in last["detail"] and "5%" in last["detail"]
    assert "Data quality failed" in telegram.messages[-1]["text"]
    assert "tiktok" in telegram.messages[-1]["text"]
