"""Fail fast and say so, on real components: a down MLflow under `persona train` (or
`persona score --engine local`) ends in one line and the exit code of an unavailable upstream,
within seconds. (A lost PostgreSQL connection during ingest is in
tests/chaos/test_postgres_faults.py.)
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from persona.errors import InvalidInputError, UpstreamUnavailableError

ROOT = Path(__file__).resolve().parents[2]


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


def _customers_csv(path: Path, rows: int = 50, without: str | None = None) -> Path:
    from persona.data.catalogue import load_catalogue
    from persona.data.generator import generate_snapshot

    catalogue = load_catalogue(ROOT / "00_create_data/personas.yaml")
    frame = generate_snapshot(catalogue, rows, "2026-01", seed=1, progress=False)
    frame.drop(columns=[without] if without else []).to_csv(path, index=False)
    return path


def test_local_scoring_with_mlflow_down_is_one_line_naming_the_url(project_env, tmp_path):
    """`persona score --engine local` says what the other commands say of a down MLflow."""
    url = f"http://127.0.0.1:{_closed_port()}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": url}
    source = _customers_csv(tmp_path / "customers.csv")
    out = tmp_path / "scores.parquet"
    failed = _persona(
        "score", "--engine", "local", "--file", str(source), "--out", str(out), env=env
    )

    assert failed.returncode == UpstreamUnavailableError.exit_code, failed.stderr[-2000:]
    assert "Traceback" not in failed.stderr and "API request to" not in failed.stderr
    (line,) = _error_lines(failed.stderr)
    assert line.split(" ERROR persona.cli: ")[1].startswith(
        f"persona score: MLflow at {url} did not answer ("
    )
    assert line.endswith("); a rerun is safe")
    assert not out.exists()


@pytest.mark.parametrize("broken", ["missing column", "no such file"])
def test_local_scoring_checks_the_file_before_it_asks_mlflow(broken, project_env, tmp_path):
    """A wrong file is said at once, not hidden behind MLflow being down (nothing listens)."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{_closed_port()}"}
    source = tmp_path / "customers.csv"
    if broken == "missing column":
        _customers_csv(source, without="region")
    failed = _persona(
        "score",
        "--engine",
        "local",
        "--file",
        str(source),
        "--out",
        str(tmp_path / "o.csv"),
        env=env,
    )

    assert failed.returncode == InvalidInputError.exit_code, failed.stderr[-2000:]
    (line,) = _error_lines(failed.stderr)
    said = "missing feature columns ['region']" if broken == "missing column" else "not found"
    assert said in line
    assert "MLflow" not in failed.stderr
