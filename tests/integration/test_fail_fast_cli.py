"""Fail fast and say so, on real components: a down MLflow under `persona train` ends in one
line and the exit code of an unavailable upstream, within seconds. (A lost PostgreSQL connection
during ingest is in tests/chaos/test_postgres_faults.py.)
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from persona.errors import UpstreamUnavailableError

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
