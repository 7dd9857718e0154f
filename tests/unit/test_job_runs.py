"""The ingest and score jobs' records (adapters.job_runs): started, progress, ended, and a
killed job's record closed by reconciliation with what it had committed."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from persona.adapters import job_runs
from persona.errors import PartialWriteError
from persona.flows.reconcile import Judge, reconcile
from persona.monitoring.owners import Owner

HERE = Owner("host-a", "boot-a", 10, 500)


def _rows(records: job_runs.JobRuns) -> list[dict]:
    with records.engine.connect() as connection:
        query = sa.select(job_runs.job_runs).order_by(job_runs.job_runs.c.started_at)
        return [dict(row._mapping) for row in connection.execute(query)]


@pytest.fixture
def records(tmp_path) -> job_runs.JobRuns:
    return job_runs.JobRuns(f"sqlite:///{tmp_path / 'project.db'}")


def test_a_job_is_recorded_while_it_runs_and_ends_completed_or_failed(records):
    with records.track("ingest", "customers.csv -> customers", str(HERE)) as job:
        [running] = records.open_runs()
        job.progress("committed 1 of 2 months (5,000 rows: 2026-01)")
    with pytest.raises(PartialWriteError), records.track("score", "customers -> scores", "x"):
        raise PartialWriteError("persona score: lost the database connection\nmore")

    completed, failed = _rows(records)
    assert (running.kind, running.owner, running.label) == (
        "ingest_job",
        str(HERE),
        "customers.csv -> customers",
    )
    assert (completed["state"], completed["detail"]) == (
        "completed",
        "committed 1 of 2 months (5,000 rows: 2026-01)",
    )
    assert failed["state"] == "failed"
    assert failed["detail"] == "persona score: lost the database connection"
    assert records.open_runs() == []


def test_a_killed_job_is_closed_as_abandoned_with_what_it_had_committed(records):
    killed = Owner("host-a", "boot-a", 42, 900)
    tracking = records.track("ingest", "big.parquet -> customers", str(killed))
    job = tracking.__enter__()  # the process dies here: the block never ends
    job.progress("committed 2 of 3 months (30,000 rows: 2026-01, 2026-02)")

    judge_by = Judge(HERE, probe=lambda owner: owner.pid != 42)
    closed = reconcile(judge_by, None, [records]).closed

    assert [(c.kind, c.label) for c in closed] == [("ingest_job", "big.parquet -> customers")]
    [row] = _rows(records)
    assert row["state"] == "abandoned" and row["ended_at"] is not None
    assert row["detail"].startswith("committed 2 of 3 months (30,000 rows: 2026-01, 2026-02)")
    assert "owner process 42 on host-a is gone" in row["detail"]
    assert row["detail"].endswith("a rerun is safe")
    assert records.close_run(row["run_id"], "again") is False


def test_a_job_runs_when_its_record_cannot_be_written(tmp_path, caplog):
    records = job_runs.JobRuns(f"sqlite:///{tmp_path}")  # a folder: no database
    with records.track("ingest", "f -> t", "x") as job:
        job.progress("committed 1 of 1 months (1 rows)")
    assert "the job goes on without its record" in caplog.text
