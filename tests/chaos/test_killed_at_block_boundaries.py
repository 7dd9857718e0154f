"""kill -9 of the Mage worker at every block boundary of the train and monitor pipelines.

The worker is stopped exactly at a boundary: the test holds the ``block_run`` row of the next
block (or, after the last block, the ``pipeline_run`` row) in Mage's PostgreSQL database with
``SELECT ... FOR NO KEY UPDATE``, so the worker, having committed block k, waits to mark block
k+1 running. Then it gets SIGKILL (as from the OOM killer or ``kill -9``) and the row is let go.
Runs are chained to keep the file fast: run n is killed at boundary n and run n+1 closes what
run n left as it starts (reconciliation); a last run completes.

After each kill: no process of the killed tree and no group record left, no session ``idle in
transaction`` in the Mage, project or MLflow database, the production alias unchanged or fully
moved. After the last run: nothing left running (Mage, MLflow, drift history), one current
drift row for the month, the alias moved, and ``persona runs reconcile`` has nothing to close.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import psutil
import pytest
import sqlalchemy as sa
import yaml
from conftest import PG_ADMIN_URL, ROOT, processes_gone, sessions_in_state
from conftest import wait_until as shared_wait_until
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from persona.adapters.alias_history import alias_history
from persona.adapters.drift_store import PostgresDriftStore
from persona.adapters.mage_runs import ABANDONED_KEY, OWNER_KEY
from persona.adapters.mlflow_registry import is_not_found, production_version
from persona.services import process_tree
from persona.settings import VARIABLES
from persona_tools.telegram_stub import TelegramStub

logger = logging.getLogger(__name__)

PERSONA = ROOT / ".venv/dev/bin/persona"
FAST_PARAMS = ROOT / "tests/fixtures/params_fast.yaml"
ALIAS = "production"
RUN_TIMEOUT_S = 300  # a Mage run takes 7-20 s here; a hung one fails the test, not CI
wait_until = partial(shared_wait_until, timeout_s=RUN_TIMEOUT_S)

# The order Mage's executor starts the blocks in (block k+1 is what a kill at boundary k
# waits to start; None: the run itself, closed after its last block).
TRAIN_ORDER = (
    "load_customers",
    "validate_customers",
    "train_candidates",
    "select_model",
    "register_model",
)
MONITOR_ORDER = (
    "load_reference",
    "load_current",
    "check_drift",
    "store_drift",
    "retrain_on_drift",
    "alert_no_retrain",
    "alert_retrained",
)
DONE = ("completed", "condition_failed")
MONTH = "2026-03"


@contextmanager
def _admin() -> Iterator[sa.Connection]:
    engine = sa.create_engine(f"{PG_ADMIN_URL}/postgres")
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


# ------------------------------------------------------------------------------- Mage's tables


class MageDatabase:
    """Mage's ``pipeline_run`` and ``block_run`` tables, read (and held) by the test."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.name = url.rsplit("/", 1)[-1]
        self.engine = sa.create_engine(url)

    def runs(self) -> list[dict[str, Any]]:
        """Every pipeline run, oldest first: id, status (lower case), metrics."""
        if not sa.inspect(self.engine).has_table("pipeline_run"):
            return []
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.text("SELECT id, lower(status::text) AS status, metrics FROM pipeline_run")
            ).all()
        return sorted(
            (
                {"id": r.id, "status": r.status.rsplit(".", 1)[-1], "metrics": _json(r.metrics)}
                for r in rows
            ),
            key=lambda r: r["id"],
        )

    def run_of(self, worker: int, blocks: Iterable[str]) -> int | None:
        """The pipeline run the worker ``worker`` created, once all its block runs exist."""
        for run in self.runs():
            owner = str(run["metrics"].get(OWNER_KEY, ""))
            if f":{worker}:" in owner and set(blocks) <= set(self.blocks(run["id"])):
                return run["id"]
        return None

    def blocks(self, run_id: int) -> dict[str, str]:
        """Block uuid -> status (lower case) of one pipeline run."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.text(
                    "SELECT block_uuid, lower(status::text) FROM block_run "
                    "WHERE pipeline_run_id = :run"
                ),
                {"run": run_id},
            ).all()
        return {block: status.rsplit(".", 1)[-1] for block, status in rows}

    @contextmanager
    def gate(self, run_id: int, block: str | None) -> Iterator[int]:
        """Hold the row the worker writes next (block ``block`` marked running; None: the run
        closed); yields this session's backend pid. Leaving rolls back and lets the row go."""
        with self.engine.connect() as connection:
            transaction = connection.begin()
            try:
                if block is None:
                    held = connection.execute(
                        sa.text("SELECT id FROM pipeline_run WHERE id = :run FOR NO KEY UPDATE"),
                        {"run": run_id},
                    ).all()
                else:
                    held = connection.execute(
                        sa.text(
                            "SELECT id FROM block_run WHERE pipeline_run_id = :run "
                            "AND block_uuid = :block FOR NO KEY UPDATE"
                        ),
                        {"run": run_id, "block": block},
                    ).all()
                assert len(held) == 1, f"no row to hold for {block or 'the run'} of run {run_id}"
                yield connection.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
            finally:
                transaction.rollback()

    def waiting_on(self, backend: int) -> list[int]:
        """The sessions of this database that wait for a lock ``backend`` holds."""
        with _admin() as connection:
            return list(
                connection.execute(
                    sa.text(
                        "SELECT pid FROM pg_stat_activity "
                        "WHERE datname = :db AND :gate = ANY(pg_blocking_pids(pid))"
                    ),
                    {"db": self.name, "gate": backend},
                ).scalars()
            )


def sessions_alive(pids: Iterable[int]) -> list[int]:
    """Which of these PostgreSQL backends still serve a session."""
    with _admin() as connection:
        return list(
            connection.execute(
                sa.text("SELECT pid FROM pg_stat_activity WHERE pid = ANY(:pids)"),
                {"pids": list(pids)},
            ).scalars()
        )


def _json(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        value = json.loads(value or "{}")
    return dict(value or {})


# --------------------------------------------------------------------------- runs and kills


@dataclass
class Killed:
    """A run killed at a boundary: what the test saw at the kill and what the user saw."""

    after: str  # the last block completed
    run_id: int
    worker: int
    statuses: dict[str, str]
    exit_code: int
    said: str  # the launcher's last stderr line
    tree: list[int] = field(default_factory=list)
    backends: list[int] = field(default_factory=list)  # the worker's sessions, waiting at the kill


def _command(pipeline: str, variables: dict[str, str]) -> list[str]:
    command = [str(PERSONA), "pipeline", "run", pipeline]
    for key, value in variables.items():
        command += ["--var", f"{key}={value}"]
    return command


def _last_line(path: Path) -> str:
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def kill_at_boundary(
    env: dict[str, str],
    mage: MageDatabase,
    pipeline: str,
    variables: dict[str, str],
    order: tuple[str, ...],
    k: int,
    logs: Path,
) -> Killed:
    """Run ``pipeline`` and SIGKILL its worker once block ``order[k-1]`` has completed and
    ``order[k]`` (or, past the last block, the run's end) is what it waits to write."""
    records = process_tree.records_folder(Path(env["PERSONA_HOME"]))
    stderr = logs / f"{pipeline}-killed-after-{order[k - 1]}.err"
    with stderr.open("w") as err:
        launcher = subprocess.Popen(
            _command(pipeline, variables), env=env, stdout=subprocess.DEVNULL, stderr=err
        )
    try:

        def running(condition: Callable[[], Any]) -> Callable[[], Any]:
            def check() -> Any:
                if launcher.poll() is not None:
                    raise AssertionError(
                        f"the run ended (exit {launcher.returncode}) before boundary {k}: "
                        f"{stderr.read_text()[-2000:]}"
                    )
                return condition()

            return check

        worker = wait_until(
            running(lambda: [r.pgid for r in process_tree.read_records(records)]),
            what="the worker's group record",
        )[0]
        run_id = wait_until(
            running(lambda: mage.run_of(worker, order)), what="the worker's Mage run"
        )
        following = order[k] if k < len(order) else None
        with mage.gate(run_id, following) as gate:
            started = mage.blocks(run_id)
            assert started.get(following, "") not in (
                "running",
                *DONE,
            ), f"{following} had started before the test held it: {started}"
            backends = wait_until(
                running(lambda: mage.waiting_on(gate)),
                what=f"the worker to wait on {following or 'closing the run'}",
            )
            statuses = mage.blocks(run_id)
            leader = psutil.Process(worker)
            tree = [worker, *(p.pid for p in leader.children(recursive=True))]
            os.kill(worker, signal.SIGKILL)
            wait_until(lambda: processes_gone([worker]), what="the worker to die")
        launcher.wait(timeout=120)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    # the write the worker was waiting to make died with it: the boundary is where it was
    assert mage.blocks(run_id) == statuses
    return Killed(
        order[k - 1],
        run_id,
        worker,
        statuses,
        launcher.returncode,
        _last_line(stderr),
        tree,
        backends,
    )


def run_to_the_end(env: dict[str, str], pipeline: str, variables: dict[str, str]) -> dict[str, str]:
    """A run that completes: its block statuses."""
    done = subprocess.run(
        _command(pipeline, variables),
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return {b["block"]: b["status"] for b in json.loads(done.stdout)["blocks"]}


# ----------------------------------------------------------------------------- invariants


def alias_state(env: dict[str, str]) -> str | None:
    """The version holding the production alias, checked to be fully moved there: its tags say
    decision=production and persona's alias history ends with it. None: no version holds it."""
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    name = env["PERSONA_MODEL_NAME"]
    try:
        model = client.get_registered_model(name)
    except MlflowException as exc:
        if is_not_found(exc):
            return None
        raise
    holder = production_version(client, name, ALIAS)
    if holder is None:
        assert alias_history(model, ALIAS) == [], "an alias history without an alias"
        return None
    assert holder.tags.get("decision") == ALIAS, f"v{holder.version} holds @{ALIAS}: {holder.tags}"
    assert holder.tags.get("promoted_at"), f"v{holder.version} holds @{ALIAS} without promoted_at"
    history = alias_history(model, ALIAS)
    assert history and history[-1]["version"] == str(holder.version), history
    return str(holder.version)


def assert_nothing_left(stack: Stack, killed: Killed, alias_before: str | None) -> str | None:
    """What a kill must leave: no process, no group record, no session idle in transaction,
    the alias unchanged or fully moved. Returns the version holding the alias."""
    env = stack.env
    assert killed.exit_code == 1, killed
    assert "Traceback" not in killed.said
    wait_until(lambda: processes_gone(killed.tree), what=f"the killed tree {killed.tree} to end")
    assert process_tree.group_processes(killed.worker) == []
    records = process_tree.records_folder(Path(env["PERSONA_HOME"]))
    assert process_tree.read_records(records) == []
    wait_until(
        lambda: not sessions_alive(killed.backends),
        timeout_s=60,
        what=f"the killed worker's sessions {killed.backends} to end",
    )
    for database in stack.databases:
        wait_until(
            lambda db=database: sessions_in_state(db) == 0,
            timeout_s=60,
            what=f"no session idle in transaction in {database}",
        )
    holder = alias_state(env)
    assert holder == alias_before or (
        holder is not None and (alias_before is None or int(holder) > int(alias_before))
    ), (alias_before, holder)
    return holder


def running_mlflow_runs(env: dict[str, str]) -> list[str]:
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name(env["MLFLOW_EXPERIMENT_NAME"])
    if experiment is None:
        return []
    return [
        run.info.run_id
        for run in client.search_runs(
            [experiment.experiment_id], filter_string="attributes.status = 'RUNNING'"
        )
    ]


def versions(env: dict[str, str]) -> list[int]:
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    found = client.search_model_versions(f"name = '{env['PERSONA_MODEL_NAME']}'")
    return sorted(int(v.version) for v in found)


def state(stack: Stack) -> str:
    """What the stack holds, in one line for the log (the report's numbers come from it)."""
    rows = drift_rows(stack.env)
    return (
        f"Mage runs {[r['status'] for r in stack.mage.runs()]}, "
        f"versions {versions(stack.env)}, @{ALIAS} v{alias_state(stack.env)}, "
        f"RUNNING MLflow runs {len(running_mlflow_runs(stack.env))}, drift rows "
        f"{[(r['action'], r['alert_status'], r['superseded_by'] is None) for r in rows]}"
    )


def drift_rows(env: dict[str, str]) -> list[dict[str, Any]]:
    """The drift history, oldest first ([] before its table exists)."""
    engine = sa.create_engine(env["PERSONA_DATABASE_URL"])
    try:
        if not sa.inspect(engine).has_table("drift_runs"):
            return []
        with engine.connect() as connection:
            query = sa.text("SELECT * FROM drift_runs ORDER BY checked_at")
            return [dict(r._mapping) for r in connection.execute(query)]
    finally:
        engine.dispose()


def detail_rows(env: dict[str, str], table: str) -> dict[str, int]:
    """Rows of a drift history detail table per run id."""
    engine = sa.create_engine(env["PERSONA_DATABASE_URL"])
    try:
        with engine.connect() as connection:
            query = sa.text(f"SELECT run_id, count(*) FROM {table} GROUP BY run_id")
            return dict(connection.execute(query).all())
    finally:
        engine.dispose()


def report_names(env: dict[str, str]) -> set[str]:
    """The drift reports in the Evidently UI's project (the default workspace and project)."""
    from evidently.ui.workspace import Workspace

    workspace = Workspace.create(str(Path(env["PERSONA_HOME"]) / "evidently"))
    (project,) = workspace.search_project(VARIABLES["evidently_project"].default)
    return {workspace.get_run(project.id, run).name for run in workspace.list_runs(project.id)}


def reconcile(env: dict[str, str]) -> list[dict[str, Any]]:
    done = subprocess.run(
        [str(PERSONA), "runs", "reconcile"], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)["closed"]


# ------------------------------------------------------------------------------- fixtures


@dataclass(frozen=True)
class Stack:
    """An isolated project whose three databases are PostgreSQL: Mage's (watched and held by
    the test), the project's (drift history) and MLflow's (the session-wide server)."""

    env: dict[str, str]
    mage: MageDatabase
    databases: tuple[str, ...]  # URLs of Mage's, the project's and MLflow's databases


@pytest.fixture
def stack(project_env, mlflow_server, make_database, tmp_path) -> Stack:
    model = f"persona-chaos-{uuid.uuid4().hex[:8]}"
    # params_fast with its one usual winner as the only candidate: each killed run searches
    # again, and the search is not what is under test here
    params = yaml.safe_load(FAST_PARAMS.read_text())
    params["candidates"] = {"kmeans": {"k": [6], "n_init": 1}}
    (tmp_path / "params_one.yaml").write_text(yaml.safe_dump(params))
    mage_url, project_url = make_database("persona_mage"), make_database("persona_chaos")
    env = {
        **os.environ,
        **project_env,
        "MLFLOW_TRACKING_URI": mlflow_server.url,
        "PERSONA_MODEL_NAME": model,
        "MLFLOW_EXPERIMENT_NAME": model,
        "PERSONA_PARAMS": str(tmp_path / "params_one.yaml"),
        "PERSONA_DATABASE_URL": project_url,
        "MAGE_DATABASE_CONNECTION_URL": mage_url,
    }
    urls = (mage_url, project_url, mlflow_server.env["MLFLOW_BACKEND_STORE_URI"])
    return Stack(env, MageDatabase(mage_url), urls)


@pytest.fixture
def telegram() -> Iterator[TelegramStub]:
    with TelegramStub() as stub:
        yield stub


def kill_at_each_boundary(
    stack: Stack, pipeline: str, variables: dict[str, str], order: tuple[str, ...], logs: Path
) -> list[Killed]:
    """Run ``pipeline`` once per boundary, killing run k after block k; checks each kill."""
    alias, kills = alias_state(stack.env), []
    for k in range(1, len(order) + 1):
        started = time.monotonic()
        killed = kill_at_boundary(stack.env, stack.mage, pipeline, variables, order, k, logs)
        logger.info("%.1f s, killed after %s: %s", time.monotonic() - started, killed.after, killed)
        assert all(killed.statuses[b] in DONE for b in order[:k]), killed.statuses
        assert all(killed.statuses[b] not in ("running", *DONE) for b in order[k:]), killed
        assert f"the Mage worker for {pipeline} was killed by SIGKILL before" in killed.said
        checked = time.monotonic()
        alias = assert_nothing_left(stack, killed, alias)
        logger.info("%.1f s to check what the kill left", time.monotonic() - checked)
        logger.info("after the kill: %s", state(stack))
        kills.append(killed)
    return kills


def assert_closed_by_the_next_run(stack: Stack, kills: list[Killed]) -> None:
    """Each killed Mage run was failed by the next run's start, naming its dead worker; the
    last run completed; `persona runs reconcile` finds nothing left to close."""
    runs = stack.mage.runs()
    assert [r["status"] for r in runs] == ["failed"] * len(kills) + ["completed"]
    for run, killed in zip(runs, kills, strict=False):
        assert run["id"] == killed.run_id
        assert f"owner process {killed.worker} " in run["metrics"][ABANDONED_KEY]
    for run in runs:
        assert not {"running", "queued"} & set(stack.mage.blocks(run["id"]).values())
    assert running_mlflow_runs(stack.env) == []
    assert reconcile(stack.env) == []


# ----------------------------------------------------------------------------------- tests


def test_train_killed_at_each_block_boundary_then_completes(stack, tmp_path):
    variables = {"source": "synthetic", "rows": "2000", "seed": "3"}

    kills = kill_at_each_boundary(stack, "train", variables, TRAIN_ORDER, tmp_path)

    assert alias_state(stack.env) == "1"  # set by the run killed after register_model, whole
    assert versions(stack.env) == [1]  # only register_model registers
    statuses = run_to_the_end(stack.env, "train", variables)
    logger.info("after the last run: %s", state(stack))
    assert set(statuses.values()) == {"completed"}
    assert versions(stack.env) == [1, 2] and alias_state(stack.env) in ("1", "2")
    assert_closed_by_the_next_run(stack, kills)


def test_monitor_killed_at_each_block_boundary_then_completes(stack, telegram, tmp_path):
    env = {
        **stack.env,
        "TELEGRAM_BOT_TOKEN": "123456:chaos-secret-token",
        "TELEGRAM_CHAT_ID": "-100777",
        "TELEGRAM_BASE_URL": telegram.base_url,
        "TELEGRAM_RETRIES": "1",
    }
    stack = Stack(env, stack.mage, stack.databases)
    # A poor production model (k=3 only), so that the first retrain on the drifted month is
    # promoted. Its reference outnumbers the month 3 to 1: the promoted model's reference (old
    # and new rows) still differs from the month enough for the later runs to retrain too.
    trained = subprocess.run(
        [str(PERSONA), "train", "--source", "synthetic", "--rows", "4000", "--seed", "3"],
        env={**env, "PERSONA_PARAMS": str(ROOT / "tests/fixtures/params_worse.yaml")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert alias_state(env) == "1"
    variables = {"source": "synthetic", "month": MONTH, "rows": "1200"}
    variables["scenario"] = "income_inflation"

    kills = kill_at_each_boundary(stack, "monitor", variables, MONITOR_ORDER, tmp_path)

    statuses = run_to_the_end(env, "monitor", variables)
    logger.info("after the last run: %s", state(stack))
    assert statuses["retrain_on_drift"] == "completed", statuses
    assert_closed_by_the_next_run(stack, kills)
    assert PostgresDriftStore(env["PERSONA_DATABASE_URL"]).open_runs() == []
    rows = drift_rows(env)
    assert {r["data_window"].split(" ")[0] for r in rows} == {MONTH}
    # a row per run that got past store_drift, each whole and superseded by the next one
    stored = [
        k for k in kills if MONITOR_ORDER.index(k.after) >= MONITOR_ORDER.index("store_drift")
    ]
    assert [k.after for k in stored] == [*MONITOR_ORDER[3:]]
    assert len(rows) == len(stored) + 1
    assert detail_rows(env, "drift_columns") == {r["run_id"]: 10 for r in rows}
    for earlier, later in zip(rows, rows[1:], strict=False):
        assert earlier["superseded_by"] == later["run_id"]
    assert rows[-1]["superseded_by"] is None  # the month's one current answer: the last run's
    # a run killed before its alert went out was abandoned by the next run's start
    assert [(r["action"], r["alert_status"]) for r in rows] == [
        ("abandoned", "abandoned"),  # killed after store_drift, while retraining
        ("retrained", "abandoned"),  # after retrain_on_drift
        ("retrained", "abandoned"),  # after alert_no_retrain (skipped by its condition)
        ("retrained", "sent"),  # after alert_retrained: nothing of the row was left open
        ("retrained", "sent"),
    ]
    for row, killed in zip(rows[:3], stored, strict=False):
        assert f"owner process {killed.worker} " in row["abandoned_reason"]
    assert len(telegram.messages) == 2  # the run killed after alert_retrained, and the last
    # one version per retrain (the 4 runs that got past retrain_on_drift), none half-made
    assert versions(env) == [1, 2, 3, 4, 5]
    assert [r["new_model_version"] for r in rows] == [None, "2", "3", "4", "5"]
    promoted = [r["new_model_version"] for r in rows if r["promoted"]]
    assert promoted and alias_state(env) == promoted[-1] != "1", rows
    # the Evidently UI shows the reports the history stands by: none of a run killed before
    # storing its row (after check_drift) or of an abandoned row
    kept = {Path(r["report_location"]).stem for r in rows if r["abandoned_at"] is None}
    assert len(kept) == 2 and report_names(env) == kept
