"""The drift history tables on SQLite (the local default): created and upgraded on first use."""

from __future__ import annotations

import sqlalchemy as sa

from persona.adapters import drift_store


def test_a_database_of_an_older_release_gets_the_new_columns_and_keeps_its_rows(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'history.db'}")
    with engine.begin() as connection:  # drift_runs as an older release made it
        connection.execute(
            sa.text(
                "CREATE TABLE drift_runs (run_id VARCHAR(36) PRIMARY KEY, checked_at TIMESTAMP "
                "NOT NULL, data_window TEXT NOT NULL, n_reference INTEGER NOT NULL, n_current "
                "INTEGER NOT NULL, enough_data BOOLEAN NOT NULL, action TEXT NOT NULL, "
                "alert_status TEXT NOT NULL)"
            )
        )
        connection.execute(
            sa.text(
                "INSERT INTO drift_runs VALUES ('old', '2026-01-01 00:00:00', '2026-01', 10, 10, "
                "1, 'no_drift', 'sent')"
            )
        )

    run_id = drift_store.record_run(
        engine,
        {
            "data_window": "2026-02",
            "n_reference": 20,
            "n_current": 20,
            "enough_data": True,
            "action": "no_drift",
            "alert_status": "pending",
            "detail": "a column the old table lacked",
        },
        [],
    )

    present = {c["name"] for c in sa.inspect(engine).get_columns("drift_runs")}
    assert present == set(drift_store.drift_runs.columns.keys())
    runs = drift_store.read_runs(engine).set_index("run_id")
    assert runs.loc[run_id, "detail"] == "a column the old table lacked"
    assert runs.loc["old", "action"] == "no_drift"


def test_the_history_of_one_model_version_comes_back_oldest_first_with_its_shifts(tmp_path):
    from datetime import UTC, datetime, timedelta

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'history.db'}")
    start = datetime(2027, 1, 1, tzinfo=UTC)
    for day, (window, version, drifted) in enumerate(
        [("2027-01", "1", False), ("2027-02", "2", True), ("2027-03", "1", True)]
    ):
        drift_store.record_run(
            engine,
            {
                "checked_at": start + timedelta(days=day),
                "data_window": window,
                "model_name": "personas",
                "model_version": version,
                "n_reference": 20,
                "n_current": 10,
                "enough_data": True,
                "dataset_drift": drifted,
                "drift_share": 0.5 if drifted else 0.0,
                "action": "no_drift",
                "alert_status": "sent",
            },
            [
                {
                    "column_name": "age",
                    "method": "wasserstein",
                    "drifted": drifted,
                    "mean_shift": 0.01 * (day + 1),
                },
                {"column_name": "channel", "method": "jensenshannon", "drifted": False},
            ],
        )
    drift_store.record_run(  # a month whose data failed its checks was never judged for drift
        engine,
        {
            "checked_at": start + timedelta(days=5),
            "data_window": "2027-04",
            "model_name": "personas",
            "model_version": "1",
            "n_reference": 20,
            "n_current": 10,
            "enough_data": True,
            "action": "data_quality_failed",
            "alert_status": "sent",
        },
        [],
    )
    history = drift_store.read_history(engine, "personas", "1")
    assert [(r.data_window, r.dataset_drift, r.shifts) for r in history] == [
        ("2027-01", False, {"age": 0.01}),
        ("2027-03", True, {"age": 0.03}),
    ]
    assert history[0].n_current == 10 and history[0].slow_drift is None
