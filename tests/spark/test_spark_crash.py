"""A Spark driver killed with kill -9 (issue 15's rules): its JVM (the spark-submit gateway
pyspark starts) does not outlive it, and on a standalone cluster the master ends its
application and the worker releases the executor. pyspark gives the gateway a stdin pipe and
the JVM exits at its EOF, which the kernel delivers when the driver dies however it dies: these
tests hold that in place, on local[*] and through the ``spark_cluster`` fixture."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import urllib.request
import uuid

import psutil
import pytest
from conftest import ROOT, processes_gone, wait_until

from persona.services.spark_cluster import WORKER_CLASS

pytestmark = pytest.mark.spark

# A driver holding a session with a job in flight: tasks that run until they are killed.
DRIVER = textwrap.dedent("""
    import sys, threading, time
    from persona.adapters.spark_session import spark_session

    master, app = sys.argv[1], sys.argv[2]
    with spark_session(master, app) as session:
        sc = session.sparkContext
        job = threading.Thread(
            target=lambda: sc.parallelize(range(2), 2).map(lambda x: time.sleep(3600)).collect(),
            daemon=True,
        )
        job.start()
        while not sc.statusTracker().getActiveStageIds():
            time.sleep(0.1)
        print("RUNNING", flush=True)
        job.join()
    """)


def _start_driver(master: str, app: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", DRIVER, master, app],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # so the test can clean up whatever is left
    )


def _wait_running(driver: subprocess.Popen) -> None:
    line = driver.stdout.readline()  # blocks until the job runs, or EOF if the driver died
    assert line.strip() == "RUNNING", f"the driver exited early ({driver.poll()})"


def _kill_and_collect(driver: subprocess.Popen) -> list[int]:
    """kill -9 the driver; the pids of everything it had started (its JVM and the JVM's
    Python workers)."""
    descendants = [p.pid for p in psutil.Process(driver.pid).children(recursive=True)]
    assert any(psutil.Process(pid).name() == "java" for pid in descendants)
    driver.kill()
    driver.wait(timeout=30)
    return descendants


def _cleanup(driver: subprocess.Popen, pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).kill()
    if driver.poll() is None:
        os.killpg(driver.pid, signal.SIGKILL)


def _master_json(layout) -> dict:
    with urllib.request.urlopen(f"{layout.master_ui}/json/", timeout=5) as response:
        return json.load(response)


def _executor_jvms(layout) -> list[int]:
    """Executor JVMs the cluster's workers started (children of a worker of this master)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or ())
        if WORKER_CLASS in cmdline and layout.master_url in cmdline:
            for child in process.children():
                with contextlib.suppress(psutil.NoSuchProcess):  # zombies included
                    if "CoarseGrainedExecutorBackend" in " ".join(child.cmdline()):
                        found.append(child.pid)
    return found


def test_a_driver_killed_on_local_mode_leaves_no_jvm():
    driver = _start_driver("local[2]", f"persona-crash-{uuid.uuid4().hex[:8]}")
    pids: list[int] = []
    try:
        _wait_running(driver)
        pids = _kill_and_collect(driver)
        wait_until(lambda: processes_gone(pids), 60, f"the driver's JVM and workers {pids} to exit")
    finally:
        _cleanup(driver, pids)


def test_a_driver_killed_on_the_cluster_leaves_no_jvm_no_running_app_nor_executor(spark_cluster):
    app = f"persona-crash-{uuid.uuid4().hex[:8]}"
    driver = _start_driver(spark_cluster.master_url, app)
    pids: list[int] = []
    try:
        _wait_running(driver)
        running = [a for a in _master_json(spark_cluster)["activeapps"] if a["name"] == app]
        assert [a["state"] for a in running] == ["RUNNING"]
        executors = wait_until(
            lambda: _executor_jvms(spark_cluster), 60, "the worker's executor JVM"
        )
        pids = _kill_and_collect(driver)
        wait_until(lambda: processes_gone(pids), 60, f"the driver's JVM {pids} to exit")

        def app_ended() -> bool:
            state = _master_json(spark_cluster)
            return not any(a["name"] == app for a in state["activeapps"]) and any(
                a["name"] == app and a["state"] != "RUNNING" for a in state["completedapps"]
            )

        wait_until(app_ended, 120, f"the master to end application {app}")
        wait_until(lambda: processes_gone(executors), 120, f"executor JVMs {executors} to exit")
    finally:
        _cleanup(driver, pids)
