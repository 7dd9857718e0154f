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
