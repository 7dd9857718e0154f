"""Drift history cases shared by the SQLite (unit) and PostgreSQL (integration) tests: a
rerun supersedes the month, open runs are closed as abandoned. Each test module imports them
and provides the ``store`` and ``engine`` fixtures of its database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from persona.adapters import drift_store

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _record(engine, window: str, minutes: int, supersede: bool = True, **values) -> str:
    run = {
        "checked_at": T0 + timedelta(minutes=minutes),
        "data_window": window,
        "model_name": "personas",
        "model_version": "1",
        "n_reference": 100,
        "n_current": 100,
        "drift_share": 0.1,
        "enough_data": True,
        "action": "no_drift",
        "alert_status": "sent",
        **values,
    }
    columns = [
        {
            "column_name": "income",
            "method": "wasserstein",
            "drifted": False,
            "mean_shift": 0.1 * minutes,
        }
    ]
    return drift_store.record_run(engine, run, columns, supersede=supersede)


def test_a_rerun_supersedes_the_month_and_readers_see_the_current_run_only(engine):
    first = _record(engine, "2026-01", 1, action="retraining", alert_status="pending")
    other = _record(engine, "2026-02", 2)
    rerun = _record(engine, "2026-01", 3, action="retrained")
    runs = drift_store.read_runs(engine).set_index("run_id")
    assert runs.loc[first, "superseded_by"] == rerun  # history kept, linked to its successor
    assert runs[["superseded_by"]].isna().sum().item() == 2
    current = drift_store.read_runs(engine, current_only=True)
    assert sorted(current["run_id"]) == sorted([other, rerun])
    history = drift_store.read_history(engine, "personas", "1")
    assert [run.data_window for run in history] == ["2026-02", "2026-01"]
    assert history[-1].shifts == {"income": pytest.approx(0.3)}  # the rerun's numbers
    drift_store.record_personas(
        engine, first, [{"persona_id": 0, "persona_name": "a", "flagged": False}]
    )
    drift_store.record_personas(
        engine, rerun, [{"persona_id": 0, "persona_name": "a", "flagged": True}]
    )
    trend = drift_store.read_persona_history(engine, "personas")
    assert list(trend["run_id"]) == [rerun]


def test_a_rolling_window_or_another_model_is_not_superseded(engine):
    log1 = _record(engine, "scoring log, last 7 days", 1, supersede=False)
    log2 = _record(engine, "scoring log, last 7 days", 2, supersede=False)
    mine = _record(engine, "2026-01", 3)
    theirs = _record(engine, "2026-01", 4, model_name="personas-b2b")
    current = set(drift_store.read_runs(engine, current_only=True)["run_id"])
    assert current == {log1, log2, mine, theirs}


def test_an_open_run_is_listed_until_it_ends_or_is_abandoned_with_when_and_why(engine, store):
    owner = "worker-1:boot:42:7"
    open_id = _record(
        engine,
        "2026-01",
        1,
        action="retraining",
        alert_status="pending",
        owner=owner,
        report_location="file:///runs/drift-a.html",
    )
    alert_id = _record(engine, "2026-02", 2, action="no_drift", alert_status="pending")
    _record(engine, "2026-03", 3, report_location="gs://bucket/7/drift-c.html")  # ended
    assert store.kept_report_names() == {"drift-a", "drift-c"}
    listed = {row["run_id"]: row for row in drift_store.read_open_runs(engine)}
    assert set(listed) == {open_id, alert_id} and listed[open_id]["owner"] == owner
    (heartbeat,) = [run.heartbeat for run in store.open_runs() if run.run_id == open_id]
    assert pd_time(heartbeat) == T0 + timedelta(minutes=1)
    at = T0 + timedelta(hours=2)
    assert store.abandon_run(open_id, at, "owner process 42 on worker-1 is gone")
    assert store.abandon_run(alert_id, at, "gone")
    assert not store.abandon_run(open_id, at, "twice")  # ended: nothing to close
    assert store.kept_report_names() == {"drift-c"}  # the abandoned run's report leaves the UI
    runs = drift_store.read_runs(engine).set_index("run_id")
    assert (runs.loc[open_id, "action"], runs.loc[open_id, "alert_status"]) == (
        "abandoned",
        "abandoned",
    )
    assert runs.loc[open_id, "abandoned_reason"] == "owner process 42 on worker-1 is gone"
    assert pd_time(runs.loc[open_id, "abandoned_at"]) == at
    assert (runs.loc[alert_id, "action"], runs.loc[alert_id, "alert_status"]) == (
        "no_drift",
        "abandoned",
    )
    assert drift_store.read_open_runs(engine) == []


def test_every_update_is_a_heartbeat(engine):
    run_id = _record(engine, "2026-01", 1, action="retraining", alert_status="pending")
    before = datetime.now(UTC)
    drift_store.update_run(engine, run_id, action="retrained")
    (row,) = drift_store.read_open_runs(engine)
    assert pd_time(row["heartbeat_at"]) >= before.replace(microsecond=0)


def pd_time(value) -> datetime:
    stamp = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
