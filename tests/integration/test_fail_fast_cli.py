"""Fail fast and say so, on real components: a lost PostgreSQL connection during ingest and a
down MLflow under `persona train` end in one line, the exit code of an unavailable upstream,
whole months only in the table, and a rerun that completes the data exactly.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from persona.adapters import database
from persona.data.catalogue import load_catalogue
from persona.data.files import write_table
from persona.data.generator import generate_snapshot
from persona.errors import UpstreamUnavailableError

ROOT = Path(__file__).resolve().parents[2]
MONTHS = ("2026-01", "2026-02", "2026-03")
ROWS = 15_000  # per month: a month takes seconds to write, so the kill lands inside one


def _persona(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "persona.cli", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if " ERROR " in line]


@pytest.fixture
def env(project_env, pg_url, monkeypatch) -> dict[str, str]:
    monkeypatch.setenv("PERSONA_DATABASE_URL", pg_url)
    return dict(os.environ)


@pytest.fixture
def months_file(tmp_path) -> Path:
    catalogue = load_catalogue(ROOT / "00_create_data/personas.yaml")
    frame = generate_snapshot(catalogue, ROWS, MONTHS[0], seed=3, progress=False)
    frames = [frame.assign(snapshot_month=month) for month in MONTHS]
    import pandas as pd

    path = tmp_path / "customers.parquet"
    write_table(pd.concat(frames, ignore_index=True).drop(columns=["true_persona"]), path)
    return path


def _month_counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as connection:
        if not sa.inspect(connection).has_table("customers"):
            return {}
        rows = connection.execute(
            sa.text("SELECT snapshot_month, count(*) FROM customers GROUP BY 1 ORDER BY 1")
        )
        return {month: count for month, count in rows}


def test_a_lost_connection_during_ingest_is_one_line_whole_months_and_a_safe_rerun(
    env, months_file
):
    engine = database.make_engine(env["PERSONA_DATABASE_URL"])
    database_name = engine.url.database
    stop = threading.Event()
    killed: list[int] = []

    def kill_once_a_month_is_in() -> None:
        """Once the first month is committed, terminate the ingest's session (again if the
        pool reconnected between months) until the process ends."""
        watcher = sa.create_engine(engine.url, isolation_level="AUTOCOMMIT")
        with watcher.connect() as connection:
            while not stop.is_set():
                if sum(_month_counts(engine).values()) >= ROWS:
                    done = connection.execute(
                        sa.text(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = :name AND pid <> pg_backend_pid() "
                            "AND state <> 'idle'"
                        ),
                        {"name": database_name},
                    ).all()
                    killed.extend(1 for row in done if row[0])
                stop.wait(0.05)
        watcher.dispose()

    killer = threading.Thread(target=kill_once_a_month_is_in, daemon=True)
    killer.start()
    try:
        failed = _persona("data", "ingest", "--file", str(months_file), env=env)
    finally:
        stop.set()
        killer.join(timeout=30)
    engine.dispose()

    assert failed.returncode == UpstreamUnavailableError.exit_code, failed.stderr[-2000:]
    assert "Traceback" not in failed.stderr and "[parameters:" not in failed.stderr
    (line,) = _error_lines(failed.stderr)
    print(line)
    assert "persona data ingest: lost the database connection while writing month" in line
    assert "was rolled back, committed" in line and line.endswith("a rerun is safe")
    assert killed
    counts = _month_counts(engine)
    assert counts and set(counts.values()) == {ROWS}  # whole months only
    assert f"committed {len(counts)} of {len(MONTHS)} months ({len(counts) * ROWS:,} rows" in line

    rerun = _persona("data", "ingest", "--file", str(months_file), env=env)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert _month_counts(engine) == {month: ROWS for month in MONTHS}
    engine.dispose()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again when the block ends: nothing listens


def test_train_with_mlflow_down_fails_in_seconds_naming_the_url(project_env, tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}"
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": url,
        "PERSONA_PARAMS": str(ROOT / "tests/fixtures/params_fast.yaml"),
    }
    started = time.monotonic()
    failed = _persona(
        "train", "--source", "synthetic", "--rows", "800", "--months", "2026-01", env=env
    )
    elapsed = time.monotonic() - started
    print(f"persona train with MLflow down failed after {elapsed:.1f} s")

    assert failed.returncode == UpstreamUnavailableError.exit_code, failed.stderr[-2000:]
    assert "Traceback" not in failed.stderr
    (line,) = _error_lines(failed.stderr)
    assert f"MLflow at {url} did not answer" in line
    assert f"MLflow at {url} did not answer (attempt 2 of " in failed.stderr  # retries logged
    assert elapsed < 60  # loose: the budget is 25 s; the report gives the real figure
