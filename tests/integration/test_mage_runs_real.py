"""Mage's own database (SQLite and PostgreSQL), migrated by Mage: a run left RUNNING by a
killed headless worker is read and failed by ``MageRuns``, and Mage reads it back as failed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from conftest import ROOT

from persona.adapters.mage_runs import ABANDONED_KEY, OWNER_KEY, MageRuns
from persona.flows import reconcile
from persona.monitoring.owners import Owner

PROJECT = ROOT / "02_pipeline/persona_pipelines"

# Run by a Mage process (Mage binds its database at import): migrate, then a RUNNING run with
# a running block as a worker killed mid-block leaves it; prints the run's id.
CREATE = """
import json, sys
from datetime import UTC, datetime
from pathlib import Path
from persona.orchestration.mage_runner import open_project
open_project(Path(sys.argv[1]))
from mage_ai.orchestration.db.models.schedules import BlockRun, PipelineRun
run = PipelineRun.create(
    pipeline_uuid="monitor",
    execution_date=datetime.now(tz=UTC),
    started_at=datetime.now(tz=UTC),
    status=PipelineRun.PipelineRunStatus.RUNNING,
    variables={},
    metrics=json.loads(sys.argv[2]),
    create_block_runs=False,
)
BlockRun.create(pipeline_run_id=run.id, block_uuid="retrain_on_drift",
                status=BlockRun.BlockRunStatus.RUNNING)
print(run.id)
"""

READ = """
import sys
from pathlib import Path
from persona.orchestration.mage_runner import open_project
open_project(Path(sys.argv[1]))
from mage_ai.orchestration.db.models.schedules import PipelineRun
run = PipelineRun.query.get(int(sys.argv[2]))
print(run.status.value, [b.status.value for b in run.block_runs], run.metrics)
"""


def _mage(code: str, env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, str(PROJECT), *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(params=["sqlite", "postgresql"])
def mage_url(request, tmp_path) -> str:
    """Mage's database in both kinds: PostgreSQL's status columns are enum types."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'mage.db'}"
    return request.getfixturevalue("make_database")("persona_mage")


def test_a_run_left_running_in_mages_database_is_failed_and_mage_reads_it_so(mage_url, tmp_path):
    url = mage_url
    env = {**os.environ, "MAGE_DATABASE_CONNECTION_URL": url, "MAGE_DATA_DIR": str(tmp_path)}
    env.pop("ENV", None)
    owner = "worker-1:boot-a:4242:1"
    run_id = _mage(CREATE, env, json.dumps({OWNER_KEY: owner}))
    runs = MageRuns(url)
    (listed,) = runs.open_runs()
    assert (listed.run_id, listed.owner) == (run_id, owner)
    judge = reconcile.Judge(Owner("worker-1", "boot-a", 9, 9), lambda _: False)
    result = reconcile.reconcile(judge, None, [runs], now=datetime.now(UTC))
    assert [c.run_id for c in result.closed] == [run_id]
    status, blocks, metrics = _mage(READ, env, run_id).split(" ", 2)
    assert status == "failed" and blocks == "['failed']"
    assert ABANDONED_KEY in metrics and runs.open_runs() == []
