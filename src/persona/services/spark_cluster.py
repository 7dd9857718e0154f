"""A standalone Spark cluster as local processes: one master and N workers.

The PyPI pyspark package has no ``sbin/start-*.sh``; its ``spark-class`` starts the same master
and worker daemons the Spark images run (``org.apache.spark.deploy.master.Master`` /
``...worker.Worker``). Each is a :class:`~persona.services.local_stack.LocalService`, so
``make spark-up``/``spark-down``/``spark-status`` start, supervise and stop them as they do
MLflow or the API, and the tests start the very same commands. A worker counts as up once the
master lists it alive, not when its own web UI answers.
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from persona.services.local_stack import LocalService
from persona.services.processes import ServiceStartError

logger = logging.getLogger(__name__)

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"


@dataclass(frozen=True)
class ClusterLayout:
    """Where the daemons listen and what each worker offers."""

    host: str = "127.0.0.1"
    master_port: int = 7077
    master_ui_port: int = 8090
    worker_ui_ports: tuple[int, ...] = (8091, 8092)
    worker_cores: int = 1
    worker_memory: str = "2g"

    @property
    def master_url(self) -> str:
        return f"spark://{self.host}:{self.master_port}"

    @property
    def master_ui(self) -> str:
        return f"http://{self.host}:{self.master_ui_port}"


def spark_home(spark_bin: Path) -> str:
    """Where the environment of ``spark_bin`` has pyspark (its jars and scripts): spark-class
    otherwise asks whatever ``python3`` is first on PATH."""
    found = subprocess.run(
        [
            str(spark_bin / "python"),
            "-c",
            "import pyspark, os; print(os.path.dirname(pyspark.__file__))",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if found.returncode != 0:
        raise ServiceStartError(
            f"no pyspark in {spark_bin.parent} (make install-spark makes it): "
            f"{found.stderr.strip()[-300:]}"
        )
    return found.stdout.strip()


def cluster_services(layout: ClusterLayout, spark_bin: Path, work_dir: Path) -> list[LocalService]:
    """The master, then one service per worker port, as ``spark_bin/spark-class`` commands;
    workers keep their executors' files under ``work_dir`` (not inside site-packages)."""
    spark_class = str(spark_bin / "spark-class")
    env = (("SPARK_HOME", spark_home(spark_bin)),)
    master = LocalService(
        "spark-master",
        [
            spark_class,
            MASTER_CLASS,
            "--host",
            layout.host,
            "--port",
            str(layout.master_port),
            "--webui-port",
            str(layout.master_ui_port),
        ],
        layout.master_url,
        f"{layout.master_ui}/json/",
        120,
        env,
    )
    workers = [
        LocalService(
            f"spark-worker-{number}",
            [
                spark_class,
                WORKER_CLASS,
                "--host",
                layout.host,
                "--cores",
                str(layout.worker_cores),
                "--memory",
                layout.worker_memory,
                "--webui-port",
                str(port),
                "--work-dir",
                str(work_dir / f"worker-{number}"),
                layout.master_url,
            ],
            f"http://{layout.host}:{port}",
            f"http://{layout.host}:{port}/json/",
            120,
            env,
        )
        for number, port in enumerate(layout.worker_ui_ports, start=1)
    ]
    return [master, *workers]


def alive_workers(master_ui: str, timeout_s: float = 2.0) -> int | None:
    """How many workers the master lists as alive; None when its UI does not answer."""
    try:
        with urllib.request.urlopen(f"{master_ui}/json/", timeout=timeout_s) as response:
            state = json.load(response)
    except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
        return None
    return int(state.get("aliveworkers", 0))


def wait_for_workers(master_ui: str, count: int, timeout_s: float = 120.0) -> None:
    """Return once ``count`` workers are registered with the master, or fail naming how many."""
    deadline = time.monotonic() + timeout_s
    seen: int | None = None
    while time.monotonic() < deadline:
        seen = alive_workers(master_ui)
        if seen is not None and seen >= count:
            logger.info("Spark master %s: %d worker(s) alive", master_ui, seen)
            return
        time.sleep(0.5)
    found = "did not answer" if seen is None else f"lists {seen} of {count} workers alive"
    raise ServiceStartError(f"the Spark master at {master_ui} {found} after {timeout_s:g}s")
