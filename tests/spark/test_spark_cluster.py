"""``make spark-up`` / ``spark-status`` / ``spark-down`` for real: the entry the Makefile runs
(``python -m persona.services.local_stack --stack spark``) on free ports, a job reaching both
workers, a worker killed with kill -9 reported, and no JVM left after down."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from conftest import ROOT, processes_gone, wait_until

from persona.adapters.spark_session import spark_session
from persona.services.processes import free_port
from persona.services.spark_cluster import alive_workers

pytestmark = pytest.mark.spark


def _stack(action: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "persona.services.local_stack", "--stack", "spark", action],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _jvms_under(home: Path) -> list[int]:
    """Java processes started for the cluster under ``home`` (its work dir is on their command
    line; an executor's is its worker's work dir)."""
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or ())
        if process.info["name"] == "java" and str(home) in cmdline:
            found.append(process.pid)
    return found


def _java_of(pid_file: Path) -> int:
    """The JVM of a supervised daemon (the pid file names its supervisor)."""
    supervisor = psutil.Process(int(pid_file.read_text()))
    return next(p.pid for p in supervisor.children(recursive=True) if p.name() == "java")


def test_spark_up_runs_jobs_on_every_worker_reports_a_killed_one_and_down_leaves_no_jvm(
    tmp_path,
):
    master_port, ui_port, first_worker_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "PERSONA_HOME": str(tmp_path),
        "PERSONA_ENV_FILE": str(tmp_path / "no.env"),
        "PERSONA_SPARK_MASTER_PORT": str(master_port),
        "PERSONA_SPARK_MASTER_UI_PORT": str(ui_port),
        "PERSONA_SPARK_WORKER_UI_PORT": str(first_worker_port),
        "PERSONA_SPARK_WORKERS": "2",
        "PERSONA_SPARK_WORKER_MEMORY": "1g",
    }
    # worker 2 takes the port after worker 1's (PERSONA_SPARK_WORKER_UI_PORT + 1)
    if first_worker_port + 1 in {c.laddr.port for c in psutil.net_connections("tcp")}:
        pytest.skip(f"port {first_worker_port + 1} is taken")
    master = f"spark://127.0.0.1:{master_port}"
    try:
        up = _stack("up", env)
        assert up.returncode == 0, up.stderr[-3000:]
        assert f"SPARK_MASTER={master}" in up.stdout
        assert alive_workers(f"http://127.0.0.1:{ui_port}") == 2

        status = _stack("status", env)
        assert status.returncode == 0, status.stderr[-2000:]
        assert "master lists 2 of 2 workers alive (2 cores)" in status.stderr

        url = _stack("url", env)
        assert (url.returncode, url.stdout.strip()) == (0, master)

        # a job through that cluster runs on both workers: each executor works in a folder of
        # its worker's work dir, the task's current directory
        conf = {"spark.scheduler.minRegisteredResourcesRatio": "1.0"}
        with spark_session(master, "persona-spark-up-test", conf) as session:
            folders = (
                session.sparkContext.parallelize(range(16), 16)
                .map(lambda _: __import__("os").getcwd())
                .distinct()
                .collect()
            )
        workers = {Path(folder).relative_to(tmp_path / "spark-work").parts[0] for folder in folders}
        assert workers == {"worker-1", "worker-2"}

        # a worker's JVM killed with kill -9: spark-status says so and fails
        os.kill(_java_of(tmp_path / "run/spark-worker-2.pid"), signal.SIGKILL)
        wait_until(
            lambda: alive_workers(f"http://127.0.0.1:{ui_port}") == 1,
            60,
            "the master to list one worker alive",
        )
        # its supervisor notices and exits a moment later: until then the worker is "alive but
        # not answering"
        statuses = []

        def reported_stopped() -> bool:
            statuses.append(_stack("status", env))
            return "stopped (pid" in statuses[-1].stderr

        wait_until(reported_stopped, 60, "spark-status to report the killed worker stopped", 0.5)
        status = statuses[-1]
        assert status.returncode == 1
        assert "spark-worker-2" in status.stderr
        assert "master lists 1 of 2 workers alive" in status.stderr
        assert _jvms_under(tmp_path)  # the master and worker 1 still run
    finally:
        down = _stack("down", env)
    assert down.returncode == 0, down.stderr[-2000:]
    assert _jvms_under(tmp_path) == []
    assert _stack("status", env).returncode == 1
    assert not list((tmp_path / "run").glob("spark-*.pid"))


def test_spark_up_names_a_bad_worker_memory_in_one_line(tmp_path):
    env = {
        **os.environ,
        "PERSONA_HOME": str(tmp_path),
        "PERSONA_ENV_FILE": str(tmp_path / "no.env"),
        "PERSONA_SPARK_WORKER_MEMORY": "lots",
    }
    done = _stack("up", env)
    assert done.returncode != 0
    assert (
        "PERSONA_SPARK_WORKER_MEMORY must be a size such as 512m or 2g, got 'lots'" in done.stderr
    )
    assert "Traceback" not in done.stderr
    assert processes_gone(_jvms_under(tmp_path))
