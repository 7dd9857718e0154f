"""The ``persona`` command runs long commands as their own process group, transparently."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

PERSONA = Path(__file__).resolve().parents[2] / ".venv/dev/bin/persona"


def run(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PERSONA_HOME": str(home)}
    return subprocess.run([str(PERSONA), *args], env=env, capture_output=True, text=True)


@pytest.mark.skipif(not PERSONA.exists(), reason="the dev environment's persona command")
def test_a_long_command_runs_as_a_group_and_passes_output_and_exit_code_through(tmp_path):
    shown = run("data", "--help", home=tmp_path)
    assert shown.returncode == 0 and "generate" in shown.stdout

    wrong = run("data", "no-such-command", home=tmp_path)
    assert wrong.returncode == 2 and "invalid choice" in wrong.stderr
    assert list((tmp_path / "run/groups").glob("*.group")) == []  # its record is gone


@pytest.mark.skipif(not PERSONA.exists(), reason="the dev environment's persona command")
def test_a_short_command_runs_directly(tmp_path):
    printed = run("env-example", home=tmp_path)
    assert printed.returncode == 0 and "PERSONA_DB_STATEMENT_TIMEOUT_SECONDS=1800" in printed.stdout
    assert not (tmp_path / "run").exists()
