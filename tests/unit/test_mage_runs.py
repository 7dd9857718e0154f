"""Mage's pipeline runs left running, on a SQLite database shaped like Mage's own tables."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from persona.adapters.mage_runs import ABANDONED_KEY, OWNER_KEY, MageRuns
from persona.errors import UpstreamUnavailableError
from persona.flows import reconcile
from persona.monitoring.owners import Owner

pytestmark = pytest.mark.unit

T0 = datetime(2026, 3, 1, 12)  # Mage on SQLite stores naive UTC times


def _mage_database(path) -> str:
    url = f"sqlite:///{path}"
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "CREATE TABLE pipeline_run (id INTEGER PRIMARY KEY, pipeline_uuid VARCHAR(255), "
                "status VARCHAR(9), started_at DATETIME, completed_at DATETIME, metrics JSON, "
                "created_at DATETIME, updated_at DATETIME)"
            )
        )
        connection.execute(
            sa.text(
                "CREATE TABLE block_run (id INTEGER PRIMARY KEY, pipeline_run_id INTEGER, "
                "block_uuid VARCHAR(255), status VARCHAR(15), completed_at DATETIME, "
                "created_at DATETIME, updated_at DATETIME)"
            )
        )
        runs = [
            (1, "RUNNING", {OWNER_KEY: "worker-1:boot-a:4242:1"}, T0),  # its worker was killed
            (2, "RUNNING", {OWNER_KEY: "worker-1:boot-a:4343:2"}, T0),  # its worker runs
            (3, "COMPLETED", {OWNER_KEY: "worker-1:boot-a:4242:1"}, T0),
            (4, "RUNNING", None, T0 - timedelta(hours=3)),  # the server's, silent for 3 h
        ]
        for run_id, status, metrics, updated in runs:
            connection.execute(
                sa.text(
                    "INSERT INTO pipeline_run (id, pipeline_uuid, status, metrics, updated_at) "
                    "VALUES (:id, 'monitor', :status, :metrics, :updated)"
                ),
                {
                    "id": run_id,
                    "status": status,
                    "metrics": json.dumps(metrics),
                    "updated": updated,
                },
            )
        for block_id, run_id, status in [(1, 1, "COMPLETED"), (2, 1, "RUNNING"), (3, 4, "RUNNING")]:
            connection.execute(
                sa.text(
                    "INSERT INTO block_run (id, pipeline_run_id, block_uuid, status, updated_at) "
                    "VALUES (:id, :run, 'retrain_on_drift', :status, :updated)"
                ),
                {"id": block_id, "run": run_id, "status": status, "updated": T0},
            )
    return url


def test_runs_of_a_killed_worker_and_silent_ones_fail_a_live_workers_run_is_left(tmp_path):
    url = _mage_database(tmp_path / "mage.db")
    runs = MageRuns(url)
    listed = {run.run_id: run for run in runs.open_runs()}
    assert set(listed) == {"1", "2", "4"} and listed["1"].owner == "worker-1:boot-a:4242:1"
    assert listed["4"].owner is None and listed["4"].heartbeat == T0  # its block's update
    judge = reconcile.Judge(Owner("worker-1", "boot-a", 9, 9), lambda owner: owner.pid == 4343)
    now = datetime(2026, 3, 1, 16, tzinfo=UTC)
    result = reconcile.reconcile(judge, None, [runs], now=now)
    assert sorted(c.run_id for c in result.closed) == ["1", "4"] and result.still_open == 1
    with sa.create_engine(url).connect() as connection:
        statuses = dict(connection.execute(sa.text("SELECT id, status FROM pipeline_run")).all())
        blocks = dict(connection.execute(sa.text("SELECT id, status FROM block_run")).all())
        metrics = connection.execute(sa.text("SELECT metrics FROM pipeline_run WHERE id = 1"))
        (stored,) = metrics.one()
    assert statuses == {1: "FAILED", 2: "RUNNING", 3: "COMPLETED", 4: "FAILED"}
    assert blocks == {1: "COMPLETED", 2: "FAILED", 3: "FAILED"}
    assert "4242" in json.loads(stored)[ABANDONED_KEY]
    assert not runs.close_run("1", "again")  # ended: nothing to close


def test_no_mage_database_yet_is_no_runs_and_creates_no_file(tmp_path):
    path = tmp_path / "mage.db"
    assert MageRuns(f"sqlite:///{path}").open_runs() == [] and not path.exists()


class Down:
    def open_runs(self):
        raise UpstreamUnavailableError("Mage database: connection refused")

    def close_run(self, run_id, reason):
        raise AssertionError("nothing was listed")


def test_a_store_that_cannot_be_read_is_reported_and_the_others_still_reconciled(tmp_path):
    url = _mage_database(tmp_path / "mage.db")
    judge = reconcile.Judge(Owner("worker-1", "boot-a", 9, 9), lambda owner: False)
    result = reconcile.reconcile(judge, None, [Down(), MageRuns(url)])
    assert result.unreachable == ("Mage database: connection refused",)
    assert len(result.closed) == 3


def test_a_worker_killed_by_a_signal_is_named_so_with_what_to_do(tmp_path):
    from persona.orchestration.mage_runner import worker_lost_text

    log = tmp_path / "mage-train.log"
    killed = worker_lost_text("train", -9, log)
    assert killed.startswith("the Mage worker for train was killed by SIGKILL before reporting")
    assert "`persona runs reconcile`" in killed and str(log) in killed and "\n" not in killed
    assert "was killed by signal 77" in worker_lost_text("train", -77, log)
    assert "monitor exited with code 3 before" in worker_lost_text("monitor", 3, log)
