"""The monitoring steps in one process (`make monitor-local`), on real PostgreSQL and MLflow.

Each branch the Mage conditionals can take, the stored history and the alert status when
Telegram is slow, down or not configured. The Mage pipeline itself is tested in tests/e2e.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from conftest import ROOT
from mlflow.tracking import MlflowClient

from persona import composition
from persona.adapters import drift_store
from persona.adapters.telegram import TelegramNotifier
from persona.errors import InvalidInputError, UpstreamUnavailableError
from persona.flows import monitor, persona_mix, train
from persona.services.processes import free_port
from persona.settings import load_settings
from persona_tools.telegram_stub import TelegramStub

FAST_PARAMS = ROOT / "tests/fixtures/params_fast.yaml"
TOKEN = "987654:integration-secret"
CHAT = "4242"


@pytest.fixture(scope="module")
def trained(mlflow_server, make_database, tmp_path_factory) -> dict[str, str]:
    """One production model for the module; each test gets its own project database."""
    model = f"persona-monitor-{uuid.uuid4().hex[:8]}"
    env = {
        "PERSONA_HOME": str(tmp_path_factory.mktemp("monitor-home")),
        "PERSONA_CATALOGUE": str(ROOT / "00_create_data/personas.yaml"),
        "PERSONA_SCHEMA": str(ROOT / "00_create_data/schema.yaml"),
        "PERSONA_PARAMS": str(FAST_PARAMS),
        "PERSONA_DRIFT_CONFIG": str(ROOT / "04_monitoring/drift.yaml"),
        "MLFLOW_TRACKING_URI": mlflow_server.url,
        "PERSONA_MODEL_NAME": model,
        "MLFLOW_EXPERIMENT_NAME": model,
    }
    context = composition.training_context(load_settings(environ=env))
    train.run_training(context, train.DataRequest(source="synthetic", rows=5000, seed=11))
    return env


def _context(env: dict[str, str], database: str, notifier: TelegramNotifier):
    settings = load_settings(environ={**env, "PERSONA_DATABASE_URL": database})
    return composition.monitor_context(settings, notifier=notifier)


def _request(**variables) -> monitor.MonitorRequest:
    return monitor.MonitorRequest.from_variables({"source": "synthetic", **variables})


def _runs(database: str) -> list[dict]:
    return drift_store.read_runs(sa.create_engine(database)).to_dict("records")


def _versions(env: dict[str, str]) -> int:
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    return len(client.search_model_versions(f"name = '{env['PERSONA_MODEL_NAME']}'"))


def test_drift_without_retraining_alerts_with_the_drifted_columns(trained, pg_url):
    with TelegramStub() as stub:
        notifier = TelegramNotifier(TOKEN, CHAT, base_url=stub.base_url, backoff=0.01)
        context = _context(trained, pg_url, notifier)
        before = _versions(trained)

        outcome = monitor.run_monitoring(
            context, _request(month="2026-04", scenario="channel_shift", retrain="false")
        )

        assert outcome.decision == monitor.DRIFT_NO_RETRAIN and outcome.retrained is None
        assert _versions(trained) == before
        (message,) = stub.messages
        assert message["chat_id"] == CHAT and "channel" in message["text"]
    (run,) = _runs(pg_url)
    assert run["dataset_drift"] and run["action"] == monitor.DRIFT_NO_RETRAIN
    assert (
        run["alert_status"] == "sent" and run["data_window"] == "2026-04 (synthetic, channel_shift)"
    )
    assert run["report_location"].endswith(".html")
    columns = drift_store.read_columns(sa.create_engine(pg_url), run["run_id"])
    assert set(columns["column_name"]) == set(context.training.schema.features)
    assert columns.set_index("column_name").loc["channel", "drifted"]
    workspace = context.reports.workspace_dir
    assert workspace.is_dir() and any(workspace.iterdir())


def test_too_little_data_is_said_and_nothing_is_retrained(trained, pg_url):
    with TelegramStub() as stub:
        notifier = TelegramNotifier(TOKEN, CHAT, base_url=stub.base_url, backoff=0.01)
        outcome = monitor.run_monitoring(
            _context(trained, pg_url, notifier),
            _request(month="2026-05", rows=100, scenario="income_inflation"),
        )
        assert outcome.decision == monitor.INSUFFICIENT_DATA
        assert "100" in stub.messages[0]["text"]
    (run,) = _runs(pg_url)
    assert not run["enough_data"] and run["action"] == monitor.INSUFFICIENT_DATA
    assert run["report_location"] is None and run["alert_status"] == "sent"


def test_telegram_down_or_unconfigured_never_fails_the_run(trained, pg_url):
    closed = f"http://127.0.0.1:{free_port()}/bot"
    down = TelegramNotifier(TOKEN, CHAT, base_url=closed, retries=1, backoff=0.01, timeout=2)
    outcome = monitor.run_monitoring(_context(trained, pg_url, down), _request(month="2026-06"))
    assert outcome.decision == monitor.NO_DRIFT and outcome.alert.status == "failed"

    quiet = TelegramNotifier(None, None)
    outcome = monitor.run_monitoring(_context(trained, pg_url, quiet), _request(month="2026-07"))
    assert outcome.alert.status == "disabled"

    skipped = monitor.run_monitoring(
        _context(trained, pg_url, quiet), _request(month="2026-08", all_clear_alert="false")
    )
    assert skipped.alert.status == "skipped"
    statuses = {r["data_window"].split()[0]: r["alert_status"] for r in _runs(pg_url)}
    assert statuses == {"2026-06": "failed", "2026-07": "disabled", "2026-08": "skipped"}


def test_a_month_missing_from_the_table_is_a_clear_error(trained, pg_url):
    from persona.adapters import database
    from persona.data.generator import generate_snapshot

    context = _context(trained, pg_url, TelegramNotifier(None, None))
    frame = generate_snapshot(context.training.catalogue, 600, "2026-01", progress=False)
    engine = database.make_engine(pg_url)
    table = context.training.customers.table
    database.upsert_frame(engine, table, frame, context.training.schema)
    with pytest.raises(InvalidInputError, match=r"2031-01"):
        monitor.load_current_step(
            context, monitor.MonitorRequest.from_variables({"month": "2031-01"})
        )
    assert len(monitor.load_current_step(context, _table_request("2026-01"))) == 600


def test_a_configured_alias_is_the_reference_and_what_a_retrained_model_takes(
    mlflow_server, pg_url, tmp_path
):
    """PERSONA_MODEL_ALIAS=live: monitor checks @live's reference and a promotion moves @live."""
    raw = yaml.safe_load(FAST_PARAMS.read_text())
    raw["promotion"]["margin"] = -1.0  # the retrained model is promoted whatever it scores
    params = tmp_path / "params_always.yaml"
    params.write_text(yaml.safe_dump(raw))
    model = f"persona-monitor-live-{uuid.uuid4().hex[:8]}"
    env = {
        "PERSONA_HOME": str(tmp_path / "home"),
        "PERSONA_CATALOGUE": str(ROOT / "00_create_data/personas.yaml"),
        "PERSONA_SCHEMA": str(ROOT / "00_create_data/schema.yaml"),
        "PERSONA_PARAMS": str(params),
        "PERSONA_DRIFT_CONFIG": str(ROOT / "04_monitoring/drift.yaml"),
        "MLFLOW_TRACKING_URI": mlflow_server.url,
        "PERSONA_MODEL_NAME": model,
        "MLFLOW_EXPERIMENT_NAME": model,
        "PERSONA_MODEL_ALIAS": "live",
    }
    first = train.run_training(
        composition.training_context(load_settings(environ=env)),
        train.DataRequest(source="synthetic", rows=5000, seed=11),
    )
    assert (first.version, first.alias) == ("1", "live")
    with TelegramStub() as stub:
        notifier = TelegramNotifier(TOKEN, CHAT, base_url=stub.base_url, backoff=0.01)
        context = _context(env, pg_url, notifier)
        assert context.alias == "live"
        outcome = monitor.run_monitoring(
            context, _request(month="2026-04", scenario="channel_shift", retrain="true")
        )
        assert outcome.decision == monitor.RETRAIN
        retrained = outcome.retrained
        assert (retrained.version, retrained.alias, retrained.promoted) == (
            "2",
            "live",
            True,
        )
        (message,) = stub.messages
        assert "promoted to production (@live)" in message["text"]
    (run,) = _runs(pg_url)
    assert (run["model_version"], run["new_model_version"], run["promoted"]) == ("1", "2", True)
    assert dict(MlflowClient(mlflow_server.url).get_registered_model(model).aliases) == {
        "live": "2"
    }


def _table_request(month: str) -> monitor.MonitorRequest:
    return monitor.MonitorRequest.from_variables({"month": month})


def test_a_month_the_model_was_trained_on_retrains_with_the_current_rows_winning(trained, pg_url):
    """The reference sample holds 2026-01 (its training month); monitoring 2026-01 again with
    drifted values shares every key with it. The current rows win, nothing crashes, and the
    run ends in a final state with its alert sent."""
    with TelegramStub() as stub:
        notifier = TelegramNotifier(TOKEN, CHAT, base_url=stub.base_url, backoff=0.01)
        context = _context(trained, pg_url, notifier)
        outcome = monitor.run_monitoring(
            context, _request(month="2026-01", rows=3000, scenario="income_inflation")
        )
        assert outcome.decision == monitor.Decision.RETRAIN
        assert outcome.retrained is not None and not outcome.retrained.failed
        # the 3,000 current customers replace their reference rows (at most the 5,000 trained
        # on, all of month 2026-01) instead of adding to them
        assert outcome.retrained.n_rows <= 5000
        (run,) = [r for r in _runs(pg_url) if r["run_id"] == outcome.run_id]
        assert run["action"] == "retrained" and run["alert_status"] == "sent"
        assert len(stub.messages) == 1


def test_a_month_of_bad_data_is_stored_and_alerted_as_data_quality_failed(
    trained, pg_url, tmp_path
):
    """An unseen level, 30% missing incomes, duplicate ids: three files as a team might send
    them (one `;`-separated, no month column); each run ends stored and alerted, none retrains."""
    from persona.data.generator import generate_snapshot

    context = _context(trained, pg_url, TelegramNotifier(None, None))
    base = generate_snapshot(context.training.catalogue, 1500, "2026-09", 5, progress=False)
    unseen = base.assign(channel=np.where(base.index % 20 == 0, "tiktok", base["channel"]))
    missing = base.assign(annual_income=base["annual_income"].mask(base.index % 10 < 3))
    duplicated = pd.concat([base, base.head(25)], ignore_index=True)
    files = {
        "channel": (unseen.drop(columns="snapshot_month"), ";"),
        "annual_income": (missing, ","),
        "customer_id, snapshot_month": (duplicated, ","),
    }
    before = _versions(trained)
    with TelegramStub() as stub:
        notifier = TelegramNotifier(TOKEN, CHAT, base_url=stub.base_url, backoff=0.01)
        for column, (frame, separator) in files.items():
            path = tmp_path / f"{len(stub.messages)}.csv"
            frame.to_csv(path, sep=separator, index=False)
            outcome = monitor.run_monitoring(
                _context(trained, pg_url, notifier),
                _request(source="file", path=str(path), month="2026-09"),
            )
            assert outcome.decision == monitor.DATA_QUALITY_FAILED and outcome.retrained is None
            assert column in outcome.detail
            assert "Data quality failed" in stub.messages[-1]["text"]
            assert column in stub.messages[-1]["text"]
        assert len(stub.messages) == 3
    assert _versions(trained) == before
    engine = sa.create_engine(pg_url)
    runs = _runs(pg_url)
    assert [r["action"] for r in runs] == [monitor.DATA_QUALITY_FAILED] * 3
    assert {r["alert_status"] for r in runs} == {"sent"}
    failed = {
        row["column_name"]: row
        for run in runs
        for row in drift_store.read_quality(engine, run["run_id"]).to_dict("records")
        if row["failed"]
    }
    assert set(failed) == set(files)
    assert (
        failed["channel"]["share"] == pytest.approx(0.05)
        and "tiktok" in failed["channel"]["examples"]
    )
    assert failed["annual_income"]["share"] == pytest.approx(0.3)
    assert failed["annual_income"]["reference_share"] == 0


def test_a_drifted_month_with_a_new_persona_is_retrained_and_promoted_on_its_customers(
    trained, pg_url, tmp_path, monkeypatch
):
    """Issue 14, points 2 and 3: a failed retrain ends its row `failed` and a rerun of the
    month completes; the retrain after a month where a new segment appeared fits that month's
    held-out customers better than the served model, is promoted, and the run's row, the
    version's tags and the alert carry both pairs of scores and the rule. Its own model, so the
    module's production model stays as the other tests expect."""
    model = f"persona-monitor-new-{uuid.uuid4().hex[:8]}"
    env = {
        **trained,
        "PERSONA_HOME": str(tmp_path / "home"),
        "PERSONA_MODEL_NAME": model,
        "MLFLOW_EXPERIMENT_NAME": model,
    }
    train.run_training(
        composition.training_context(load_settings(environ=env)),
        train.DataRequest(source="synthetic", rows=5000, seed=11),
    )
    with TelegramStub() as stub:
        notifier = TelegramNotifier(TOKEN, CHAT, base_url=stub.base_url, backoff=0.01)
        # first the registry fails while the month retrains: the row ends `failed`, the alert
        # says so, and the month can be run again
        context = _context(env, pg_url, notifier)

        def registry_down(*args, **kwargs):
            raise UpstreamUnavailableError("MLflow registry did not answer")

        with monkeypatch.context() as patch:
            patch.setattr(context.training.registry, "register", registry_down)
            failed = monitor.run_monitoring(
                context, _request(month="2026-03", rows=5000, scenario="new_persona")
            )
        assert failed.retrained is not None and failed.retrained.failed
        assert "did not answer" in stub.messages[-1]["text"]

        outcome = monitor.run_monitoring(
            _context(env, pg_url, notifier),
            _request(month="2026-03", rows=5000, scenario="new_persona"),
        )
        retrained = outcome.retrained
        assert outcome.decision == monitor.RETRAIN and not retrained.failed
        assert (retrained.version, retrained.promoted) == ("2", True), retrained.reason
        message = stub.messages[-1]
        assert len(stub.messages) == 2
        assert "promoted to production" in message["text"] and "rule: silhouette" in message["text"]
    failed_run, run = sorted(_runs(pg_url), key=lambda r: r["run_id"] != failed.run_id)
    assert failed_run["action"] == "failed" and "did not answer" in failed_run["detail"]
    assert run["promoted"] and run["new_model_version"] == "2"
    assert run["challenger_score"] >= run["production_score"] + 0.01  # on the new month
    assert run["reference_challenger_score"] is not None  # the guard looked at the old one
    assert run["reference_production_score"] is not None
    assert run["promotion_rule"] == retrained.rule and "reference holdout" in run["promotion_rule"]
    client = MlflowClient(trained["MLFLOW_TRACKING_URI"])
    tags = client.get_model_version(model, "2").tags
    assert float(tags["challenger_score"]) == pytest.approx(run["challenger_score"], abs=1e-5)
    assert float(tags["reference_production_score"]) == pytest.approx(
        run["reference_production_score"], abs=1e-5
    )
    assert tags["promotion_rule"] == retrained.rule
    assert tags["decided_on"] == "current period holdout"
    assert dict(client.get_registered_model(model).aliases)["production"] == "2"


def test_each_run_reads_back_the_earlier_months_of_its_model_version(trained, pg_url):
    """The slow-drift CUSUM and the retrain policy look back through PostgreSQL."""
    quiet = TelegramNotifier(None, None)
    for month in ("2026-09", "2026-10"):
        outcome = monitor.run_monitoring(
            _context(trained, pg_url, quiet), _request(month=month, retrain="false")
        )
        assert outcome.decision == monitor.NO_DRIFT
    engine = sa.create_engine(pg_url)
    latest, *_ = _runs(pg_url)
    history = drift_store.read_history(
        engine, trained["PERSONA_MODEL_NAME"], latest["model_version"]
    )
    assert [run.data_window.split()[0] for run in history] == ["2026-09", "2026-10"]
    assert all(len(run.shifts) == 8 and run.n_current == 10_000 for run in history)
    assert latest["slow_drift"] is False and latest["retrain_rule"] is None
    columns = drift_store.read_columns(engine, latest["run_id"]).set_index("column_name")
    assert columns["cumulative_shift"].notna().sum() == 8  # the numeric inputs
    assert columns["mean_shift"].isna()["channel"]
    assert drift_store.read_history(engine, trained["PERSONA_MODEL_NAME"], "no such version") == []


def test_two_monitored_months_leave_persona_rows_and_a_trend_chart_of_both(
    trained, pg_url, tmp_path
):
    """Issue 14, point 4: each run stores one persona_mix row per served persona, logs its
    persona page beside the Evidently report, and the trend chart holds both months."""
    context = _context(trained, pg_url, TelegramNotifier(None, None))
    outcomes = [
        monitor.run_monitoring(
            context, _request(month=month, rows=3000, scenario=scenario, retrain="false")
        )
        for month, scenario in (("2026-09", "none"), ("2026-10", "mix_shift"))
    ]
    assert [o.decision for o in outcomes] == [monitor.NO_DRIFT, monitor.DRIFT_NO_RETRAIN]
    engine = sa.create_engine(pg_url)
    with engine.connect() as connection:
        rows = pd.read_sql(sa.select(drift_store.persona_mix), connection)
    served = context.training.registry.load(context.training.registry.alias_uri("production"))
    personas = {p.persona_id for p in served.unwrap_python_model().personas.values()}
    for outcome, month in zip(outcomes, ("2026-09", "2026-10"), strict=True):
        mine = rows[rows["run_id"] == outcome.run_id]
        assert set(mine["persona_id"]) == personas and set(mine["period"]) == {month}
        assert mine["current_share"].sum() == pytest.approx(1.0)
    shifted = rows[rows["run_id"] == outcomes[1].run_id]
    assert shifted["flagged"].any() and shifted["mix_drifted"].all()
    assert not rows[rows["run_id"] == outcomes[0].run_id]["flagged"].any()
    assert {r["persona_drift"] for r in _runs(pg_url)} == {False, True}

    client = MlflowClient(trained["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name(trained["MLFLOW_EXPERIMENT_NAME"])
    drift_runs = client.search_runs(
        [experiment.experiment_id], "tags.`persona.stage` = 'monitoring'"
    )
    pages = {
        a.path.split("/")[-1][:9]
        for r in drift_runs
        for a in client.list_artifacts(r.info.run_id, "drift")
    }
    assert {"drift-202", "personas-", "persona-t"} <= pages

    report = persona_mix.write_trend_report(
        context.drift_store, context.model_name, tmp_path / "trend.html"
    )
    page = report.read_text()
    assert "2026-09" in page and "2026-10" in page
    assert shifted.loc[shifted["flagged"], "persona_name"].iloc[0] in page


def _wait_for(condition, process: subprocess.Popen, what: str, timeout_s: float = 300.0):
    """Poll ``condition`` until it returns something; fail if the process ends first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        if process.poll() is not None:
            pytest.fail(f"the monitor run ended (exit {process.returncode}) before {what}")
        time.sleep(0.05)  # a poll interval, not a wait for time to pass
    pytest.fail(f"no {what} within {timeout_s:.0f} s")


def test_a_monitor_run_killed_while_retraining_is_closed_and_its_rerun_is_the_months_answer(
    trained, pg_url
):
    """kill -9 during retrain_on_drift leaves a retraining/pending row and a RUNNING MLflow
    run; `persona runs reconcile` closes both (and takes its report out of the Evidently UI),
    and a rerun leaves one current row."""
    env = {
        **os.environ,
        **trained,
        "PERSONA_DATABASE_URL": pg_url,
        # the full search keeps the retrain busy long enough to be killed in it
        "PERSONA_PARAMS": str(ROOT / "01_model/params.yaml"),
    }
    drift_store.ensure_tables(sa.create_engine(pg_url))  # polled below while the run stores
    month = ["--source", "synthetic", "--month", "2026-03", "--rows", "3000"]
    command = [sys.executable, "-m", "persona.cli", "monitor", *month]
    process = subprocess.Popen(
        [*command, "--scenario", "income_inflation"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = MlflowClient(trained["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name(trained["MLFLOW_EXPERIMENT_NAME"])
    owned = f":{process.pid}:"

    def retraining() -> tuple[dict, object] | None:
        rows = [r for r in _runs(pg_url) if r["action"] == "retraining"]
        running = [
            run
            for run in client.search_runs(
                [experiment.experiment_id], filter_string="attributes.status = 'RUNNING'"
            )
            if owned in run.data.tags.get("persona.owner", "")
        ]
        return (rows[0], running[0]) if rows and running else None

    try:
        row, training_run = _wait_for(retraining, process, "retraining row and RUNNING run")
    finally:
        process.kill()  # SIGKILL: nothing of the run gets to clean up
        process.wait()
    assert row["alert_status"] == "pending" and owned in row["owner"]
    assert client.get_run(training_run.info.run_id).info.status == "RUNNING"

    reconciled = subprocess.run(
        [sys.executable, "-m", "persona.cli", "runs", "reconcile"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    closed = json.loads(reconciled.stdout)["closed"]
    assert {(c["kind"], c["run_id"]) for c in closed} >= {
        ("drift_run", row["run_id"]),
        ("mlflow_run", training_run.info.run_id),
    }
    # the killed run's drift report leaves the Evidently UI with its row
    (report,) = [c for c in closed if c["kind"] == "evidently_report"]
    assert Path(row["report_location"]).stem == report["label"]
    (left,) = [r for r in _runs(pg_url) if r["run_id"] == row["run_id"]]
    assert (left["action"], left["alert_status"]) == ("abandoned", "abandoned")
    assert left["abandoned_at"] is not None and str(process.pid) in left["abandoned_reason"]
    assert client.get_run(training_run.info.run_id).info.status == "KILLED"

    rerun = monitor.run_monitoring(
        _context(trained, pg_url, TelegramNotifier(None, None)),
        _request(month="2026-03", rows=3000, scenario="income_inflation"),
    )
    month_rows = [r for r in _runs(pg_url) if r["data_window"] == row["data_window"]]
    current = [r for r in month_rows if r["superseded_by"] is None]
    assert [r["run_id"] for r in current] == [rerun.run_id] and len(month_rows) == 2
    assert current[0]["action"] == "retrained"
    (old,) = [r for r in month_rows if r["run_id"] == row["run_id"]]
    assert old["superseded_by"] == rerun.run_id and old["action"] == "abandoned"
    again = subprocess.run(
        [sys.executable, "-m", "persona.cli", "runs", "reconcile"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(again.stdout)["closed"] == []
