"""PostgreSQL faults an operator meets, on real components.

(a) and (b): the session of ``persona data ingest`` / ``persona score`` is terminated
(``pg_terminate_backend``) while it writes the last month of a multi-month write. The moment
is made exact without timing: the test holds an uncommitted insert of that month's last key,
so the command's upsert of the month writes its first chunk, then waits on that row; the
session waiting on the test's transaction (``pg_blocking_pids``) is the one terminated.
Invariants: one error line and exit code 5, every month in the table absent or complete, no
session ``idle in transaction``, no process of the command left; the rerun gives exact counts.

(c): the scoring-log database (a PostgreSQL cluster of the test's own, never the machine's
server on 5432) is restarted (``pg_ctl restart -m fast``, then ``-m immediate``) under four
clients posting to a real Gunicorn API: no request fails, the log writes again after each
restart, and every answered row is either in the log or counted in
``persona_scoring_log_dropped_rows`` (none lost silently).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
import requests
import sqlalchemy as sa
from conftest import ROOT, VENVS, sessions_in_state, wait_until
from load import Load
from mlflow.tracking import MlflowClient

from persona.adapters import database
from persona.composition import training_context
from persona.data.catalogue import load_catalogue
from persona.data.files import write_table
from persona.data.generator import generate_snapshot
from persona.data.schema import load_schema
from persona.errors import PartialWriteError
from persona.flows.train import DataRequest, run_training
from persona.services import process_tree
from persona.services.processes import (
    ServiceProcess,
    free_port,
    start_mlflow_server,
    start_service,
    wait_http,
)
from persona.settings import load_settings

MONTHS = ("2026-01", "2026-02", "2026-03")
# More rows a month than one row-by-row write chunk: on PostgreSQL the month is COPY-ed into a
# staging table and the merge writes its other rows (uncommitted) before it reaches the held
# last row, so the rollback of a partial month is tested.
ROWS = database.CHUNK_ROWS + 1_000
SCHEMA = load_schema(ROOT / "00_create_data/schema.yaml")
PERSONA = Path(sys.executable).with_name("persona")  # the console script an operator runs
API_TOKEN = "predict-token-for-chaos"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
PG_BIN = Path("/usr/lib/postgresql/15/bin")
RUN_TIMEOUT_S = 300


# -- helpers: a held row, the session waiting on it, the command's processes -----------------


@contextmanager
def row_held(url: str, table: str, key: dict[str, str]) -> Iterator[int]:
    """An uncommitted insert of ``key`` into ``table``: a writer upserting the same key waits
    on this transaction. Yields this session's pid; rolled back on exit."""
    engine = sa.create_engine(url)
    columns = ", ".join(f'"{c}"' for c in key)
    values = ", ".join(f":{c}" for c in key)
    try:
        with engine.connect() as connection, connection.begin() as transaction:
            connection.execute(sa.text(f'INSERT INTO "{table}" ({columns}) VALUES ({values})'), key)
            try:
                yield connection.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
            finally:
                transaction.rollback()
    finally:
        engine.dispose()


def sessions_blocked_by(url: str, pid: int) -> list[int]:
    """Backends waiting on a lock that session ``pid`` holds."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text("SELECT pid FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))"),
                {"pid": pid},
            )
            return [row[0] for row in rows]
    finally:
        engine.dispose()


def terminate(url: str, pid: int) -> bool:
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            return connection.execute(
                sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}
            ).scalar_one()
    finally:
        engine.dispose()


def family(pid: int) -> list[int]:
    """``pid`` and every process under it, now."""
    return [pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))]


def still_running(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            continue
    return alive


@dataclass
class Run:
    """A finished ``persona`` command: exit code, stderr, its error lines."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if " ERROR " in line]


class Command:
    """A ``persona`` command started in the background, its output in files (no pipe fills)."""

    def __init__(self, argv: tuple[str, ...], env: dict[str, str], logs: Path) -> None:
        logs.mkdir(parents=True, exist_ok=True)
        name = uuid.uuid4().hex[:6]
        self.out, self.err = logs / f"{name}.out", logs / f"{name}.err"
        with self.out.open("w") as out, self.err.open("w") as err:
            self.process = subprocess.Popen([str(PERSONA), *argv], env=env, stdout=out, stderr=err)

    def finish(self) -> Run:
        self.process.wait(timeout=RUN_TIMEOUT_S)
        return Run(self.process.returncode, self.out.read_text(), self.err.read_text())


def persona(*argv: str, env: dict[str, str], logs: Path) -> Run:
    return Command(argv, env, logs).finish()


@dataclass
class Fault:
    """What the terminated run left: its result and the processes it had at the kill."""

    run: Run
    processes: list[int]


def terminate_while_writing(
    url: str, table: str, key: dict[str, str], argv: tuple[str, ...], env: dict, logs: Path
) -> Fault:
    """Run ``persona *argv``; once its upsert waits on the held ``key``, end its session."""
    what = f"persona {' '.join(argv)}"
    with row_held(url, table, key) as holder:
        command = Command(argv, env, logs)

        def waiting() -> list[int]:
            assert command.process.poll() is None, f"{what} ended before the fault"
            return sessions_blocked_by(url, holder)

        try:
            blocked, *others = wait_until(waiting, RUN_TIMEOUT_S, f"{what} to wait on the row")
            assert others == []
            processes = family(command.process.pid)
            assert terminate(url, blocked)
        except BaseException:
            command.process.kill()
            raise
    return Fault(command.finish(), processes)


def month_counts(url: str, table: str) -> dict[str, int]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            if not sa.inspect(connection).has_table(table):
                return {}
            rows = connection.execute(
                sa.text(f'SELECT snapshot_month, count(*) FROM "{table}" GROUP BY 1 ORDER BY 1')
            )
            return {month: count for month, count in rows}
    finally:
        engine.dispose()


def jobs(url: str) -> list[tuple[str, str, str]]:
    """The ingest and score jobs on record (kind, state, detail), oldest first."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text("SELECT kind, state, detail FROM job_runs ORDER BY started_at")
            )
            return [tuple(row) for row in rows]
    finally:
        engine.dispose()


def assert_nothing_left(fault: Fault, url: str, home: Path) -> None:
    """No process of the command, no record of its group, no session idle in transaction."""
    assert still_running(fault.processes) == []
    assert process_tree.read_records(process_tree.records_folder(home)) == []
    assert sessions_in_state(url) == 0


def assert_one_partial_write_line(fault: Fault, step: str, table: str) -> str:
    run = fault.run
    assert run.returncode == PartialWriteError.exit_code, run.stderr[-3000:]
    assert "Traceback" not in run.stderr and "[parameters:" not in run.stderr
    (line,) = run.error_lines
    print(f"\n{step}: exit {run.returncode}: {line.split(' ERROR ', 1)[1]}")
    last = MONTHS[-1]
    assert f"{step}: lost the database connection while writing month {last} of {table!r}" in line
    done = ", ".join(MONTHS[:-1])
    rows = (len(MONTHS) - 1) * ROWS
    assert f"month {last} was rolled back, committed 2 of 3 months ({rows:,} rows: {done})" in line
    assert line.endswith("a rerun is safe")
    return line


# -- (a) ingest -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def snapshot() -> pd.DataFrame:
    catalogue = load_catalogue(ROOT / "00_create_data/personas.yaml")
    return generate_snapshot(catalogue, ROWS, MONTHS[0], seed=3, progress=False).drop(
        columns=["true_persona"]
    )


def test_a_session_terminated_during_ingest_leaves_whole_months_and_the_rerun_is_exact(
    project_env, pg_url, snapshot, tmp_path
):
    env = {**os.environ, "PERSONA_DATABASE_URL": pg_url}
    home, logs = Path(project_env["PERSONA_HOME"]), tmp_path / "logs"
    months = pd.concat([snapshot.assign(snapshot_month=m) for m in MONTHS], ignore_index=True)
    first, every = tmp_path / "january.parquet", tmp_path / "three-months.parquet"
    write_table(months[months.snapshot_month == MONTHS[0]], first)
    write_table(months, every)
    # Last month's file came in before: the table exists, so the test can hold a row in it.
    assert persona("data", "ingest", "--file", str(first), env=env, logs=logs).returncode == 0
    last_key = {"customer_id": months.customer_id.iloc[-1], "snapshot_month": MONTHS[-1]}

    fault = terminate_while_writing(
        pg_url, "customers", last_key, ("data", "ingest", "--file", str(every)), env, logs
    )

    line = assert_one_partial_write_line(fault, "persona data ingest", "customers")
    assert month_counts(pg_url, "customers") == {m: ROWS for m in MONTHS[:-1]}  # no partial
    assert_nothing_left(fault, pg_url, home)
    assert [(kind, state) for kind, state, _ in jobs(pg_url)] == [
        ("ingest", "completed"),
        ("ingest", "failed"),  # on record with the line the user saw
    ]
    assert jobs(pg_url)[-1][2] == line.split(" ERROR persona.cli: ", 1)[1]

    rerun = persona("data", "ingest", "--file", str(every), env=env, logs=logs)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert month_counts(pg_url, "customers") == {m: ROWS for m in MONTHS}
    assert jobs(pg_url)[-1] == (
        "ingest",
        "completed",
        f"committed 3 of 3 months ({3 * ROWS:,} rows: {', '.join(MONTHS)})",
    )


# -- (b) score write, with a real MLflow registry and Gunicorn API ----------------------------


@pytest.fixture(scope="module")
def registry(tmp_path_factory, make_database) -> Iterator[dict]:
    """A real MLflow server with one model version under the production alias."""
    home = tmp_path_factory.mktemp("chaos-mlflow")
    server = start_mlflow_server(
        VENVS / "mlflow/bin/python", home, make_database("persona_chaos_mlflow")
    )
    name = f"persona-chaos-{uuid.uuid4().hex[:8]}"
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "PERSONA_HOME")}
    os.environ.update({"MLFLOW_TRACKING_URI": server.url, "PERSONA_HOME": str(home / "train")})
    try:
        settings = load_settings(
            overrides={
                "params_path": ROOT / "tests/fixtures/params_fast.yaml",
                "model_name": name,
                "mlflow_experiment": name,
                "catalogue_path": ROOT / "00_create_data/personas.yaml",
                "schema_path": ROOT / "00_create_data/schema.yaml",
            }
        )
        run_training(
            training_context(settings),
            DataRequest(source="synthetic", rows=3000, seed=1),
            progress=False,
        )
        assert MlflowClient(server.url).get_model_version_by_alias(name, "production").version
        yield {"server": server, "name": name}
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()


def start_api(registry: dict, home: Path, **env: str) -> ServiceProcess:
    """Gunicorn as `make serve` runs it (two workers), ready to score."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    environment = {
        **os.environ,
        "MLFLOW_TRACKING_URI": registry["server"].url,
        "PERSONA_MODEL_NAME": registry["name"],
        "PERSONA_SCORING_PORT": str(port),
        "PERSONA_SCORING_WORKERS": "2",
        "PERSONA_API_TOKEN": API_TOKEN,
        "PERSONA_SCHEMA": str(ROOT / "00_create_data/schema.yaml"),
        "PERSONA_HOME": str(home),
        **env,
    }
    environment.pop("PROMETHEUS_MULTIPROC_DIR", None)
    home.mkdir(parents=True, exist_ok=True)
    service = start_service(
        [str(VENVS / "scoring/bin/gunicorn"), "-c", str(ROOT / "03_deployment/gunicorn.conf.py")],
        environment,
        home / f"gunicorn-{port}.log",
        url,
        f"{url}/health",
        60,
    )
    try:
        wait_http(f"{url}/ready", 60, service.process, service.log)
    except BaseException:
        service.stop()
        raise
    return service


def test_a_session_terminated_during_a_score_write_leaves_whole_months_and_reruns_are_exact(
    project_env, registry, make_database, snapshot, tmp_path
):
    url = make_database("persona_chaos_score")
    engine = database.make_engine(url)
    for month in MONTHS:
        database.upsert_frame(engine, "customers", snapshot.assign(snapshot_month=month), SCHEMA)
    engine.dispose()
    api = start_api(registry, tmp_path / "api")
    try:
        env = {
            **os.environ,
            "PERSONA_DATABASE_URL": url,
            "PERSONA_SCORING_URL": api.url,
            "PERSONA_API_TOKEN": API_TOKEN,
        }
        home, logs = Path(project_env["PERSONA_HOME"]), tmp_path / "logs"
        scores = "customer_personas"
        # Last month's batch job ran: the scores table exists, so the test can hold a row in it.
        january = persona("score", "--month", MONTHS[0], env=env, logs=logs)
        assert january.returncode == 0, january.stderr[-3000:]
        last_key = {"customer_id": snapshot.customer_id.max(), "snapshot_month": MONTHS[-1]}

        fault = terminate_while_writing(url, scores, last_key, ("score",), env, logs)

        assert_one_partial_write_line(fault, "persona score", scores)
        assert month_counts(url, scores) == {m: ROWS for m in MONTHS[:-1]}  # no partial month
        assert_nothing_left(fault, url, home)
        assert [(kind, state) for kind, state, _ in jobs(url)] == [
            ("score", "completed"),
            ("score", "failed"),
        ]

        # The rerun completes March and writes January and February a third and second time:
        # the same rows, no more.
        rerun = persona("score", env=env, logs=logs)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        assert month_counts(url, scores) == {m: ROWS for m in MONTHS}
        assert jobs(url)[-1][:2] == ("score", "completed")
        stored = pd.read_sql_table(scores, url)
        assert stored.persona_name.notna().all() and set(stored.model_version) == {"1"}
    finally:
        api.stop()


# -- (c) the scoring-log database restarted under API load -----------------------------------


class OwnPostgres:
    """A throwaway PostgreSQL 15 cluster (as the postgres user, in a temp folder, on a free
    port) that the test may restart; the machine's server on 5432 is never touched."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="persona-chaos-pg-"))
        shutil.chown(self.folder, "postgres", "postgres")
        self.data, self.port = self.folder / "data", free_port()
        self.admin_url = f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    def _pg(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            ["runuser", "-u", "postgres", "--", str(PG_BIN / tool), *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"{tool} {args}: {done.stdout[-2000:]} {done.stderr[-2000:]}"

    def _ctl(self, *args: str) -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "server.log"), *args)

    def start(self) -> None:
        self._pg("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
        self._ctl("-w", "-t", "60", "-o", options, "start")

    def restart(self, mode: str) -> None:
        self._ctl("-w", "-t", "60", "-m", mode, "restart")  # the start options are kept

    def create_database(self, name: str) -> str:
        engine = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{name}"

    def remove(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(
                ["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(self.data)]
                + ["-m", "immediate", "-w", "stop"],
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    if not (PG_BIN / "initdb").exists() or shutil.which("runuser") is None:
        pytest.fail(f"PostgreSQL 15 server binaries ({PG_BIN}) and runuser are required")
    cluster = OwnPostgres()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()
    assert not cluster.folder.exists()


def logged_rows(url: str, since: datetime | None = None) -> int:
    """Scored rows in the scoring log (those scored after ``since``); 0 before its table."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            if not sa.inspect(connection).has_table("scoring_log"):
                return 0
            query = "SELECT coalesce(sum(n_rows), 0) FROM scoring_log"
            if since is not None:
                query += " WHERE scored_at > :since"
            return int(connection.execute(sa.text(query), {"since": since}).scalar_one())
    finally:
        engine.dispose()


def metric(api: ServiceProcess, name: str) -> float:
    """A counter from /metrics (summed across the workers by the multiprocess collector)."""
    text = requests.get(f"{api.url}/metrics", timeout=10).text
    found = re.search(rf"^{name}_total (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def batch(frame: pd.DataFrame) -> list[dict]:
    cleaned = frame.drop(columns=["snapshot_month"])
    return [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
        for row in cleaned.to_dict(orient="records")
    ]


def test_the_scoring_log_database_restarted_under_load_fails_no_request_and_loses_no_row_silently(
    registry, own_postgres, snapshot, tmp_path
):
    url = own_postgres.create_database("scoring")
    api = start_api(
        registry, tmp_path / "api", PERSONA_SCORING_LOG="true", PERSONA_DATABASE_URL=url
    )
    restarts: dict[str, int] = {}
    try:
        with Load(f"{api.url}/predict", batch(snapshot.head(50)), AUTH) as load:
            wait_until(lambda: logged_rows(url) > 0, 60, "the scoring log's first rows")
            for mode in ("fast", "immediate"):
                own_postgres.restart(mode)
                back, since = time.monotonic(), datetime.now(UTC)
                restarts[mode] = wait_until(
                    lambda since=since: logged_rows(url, since),
                    60,
                    f"rows logged after the {mode} restart",
                )
                wait_until(lambda back=back: load.answers_after(back) >= 40, 60, "answers")
        answered = load.answered_rows
        assert load.failures == []
        assert metric(api, "persona_rows_scored") == answered

        seen: list[tuple[int, float]] = []

        def accounted() -> tuple[int, float] | None:
            seen.append((logged_rows(url), metric(api, "persona_scoring_log_dropped_rows")))
            return seen[-1] if sum(seen[-1]) == answered else None

        try:
            logged, dropped = wait_until(accounted, 60, "every answered row logged or counted")
        except AssertionError:
            raise AssertionError(
                f"answered {answered} rows; (logged, dropped): {seen[-1]}"
            ) from None
        assert sessions_in_state(url) == 0
    finally:
        api.stop()
    assert logged_rows(url) == logged  # nothing written late, no batch twice
    print(
        f"\nanswered {answered:,} rows; logged {logged:,}; dropped and counted {dropped:,.0f}; "
        f"rows logged after the restarts: {restarts}"
    )
