"""A standalone Spark cluster as local processes: one master and N workers.

The PyPI pyspark package has no ``sbin/start-*.sh``; its ``spark-class`` starts the same master
and worker daemons the Spark images run (``org.apache.spark.deploy.master.Master`` /
``...worker.Worker``). Each is a :class:`~persona.services.local_stack.LocalService`, so
``make spark-up``/``spark-down``/``spark-status`` start, supervise and stop them as they do
MLflow or the API, and the tests start the very same commands. A worker counts as up once the
master lists it alive, not when its own web UI answers.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from persona.entry import exit_entry
from persona.errors import ConfigurationError
from persona.services import local_stack
from persona.services.local_stack import LocalService
from persona.services.processes import ServiceStartError
from persona.settings import Settings

logger = logging.getLogger(__name__)

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


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

    @classmethod
    def from_settings(cls, settings: Settings) -> ClusterLayout:
        """The cluster ``make spark-up`` starts: PERSONA_SPARK_* (workers on consecutive UI
        ports from PERSONA_SPARK_WORKER_UI_PORT)."""
        first = settings.spark_worker_ui_port
        return cls(
            host=settings.spark_host,
            master_port=settings.spark_master_port,
            master_ui_port=settings.spark_master_ui_port,
            worker_ui_ports=tuple(range(first, first + settings.spark_workers)),
            worker_cores=settings.spark_worker_cores,
            worker_memory=settings.spark_worker_memory,
        )


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


def daemon_env(layout: ClusterLayout, spark_bin: Path) -> tuple[tuple[str, str], ...]:
    """What the daemons need besides their arguments: the pyspark of ``spark_bin``, and for a
    loopback layout ``SPARK_LOCAL_IP``, without which their web UIs listen on every address."""
    env = [("SPARK_HOME", spark_home(spark_bin))]
    if layout.host in LOOPBACK:
        env.append(("SPARK_LOCAL_IP", layout.host))
    return tuple(env)


def master_command(layout: ClusterLayout, spark_class: str) -> list[str]:
    """The master's command line: one definition for make spark-up and the Compose nodes."""
    return [
        spark_class,
        MASTER_CLASS,
        "--host",
        layout.host,
        "--port",
        str(layout.master_port),
        "--webui-port",
        str(layout.master_ui_port),
    ]


def worker_command(
    layout: ClusterLayout, spark_class: str, ui_port: int, work_dir: Path, master_url: str
) -> list[str]:
    """A worker's command line, offering ``layout``'s cores and memory to ``master_url``."""
    return [
        spark_class,
        WORKER_CLASS,
        "--host",
        layout.host,
        "--cores",
        str(layout.worker_cores),
        "--memory",
        layout.worker_memory,
        "--webui-port",
        str(ui_port),
        "--work-dir",
        str(work_dir),
        master_url,
    ]


def master_service(
    layout: ClusterLayout, spark_bin: Path, env: tuple[tuple[str, str], ...] = ()
) -> LocalService:
    """The master as a local service: up once its UI's ``/json/`` answers."""
    return LocalService(
        "spark-master",
        master_command(layout, str(spark_bin / "spark-class")),
        layout.master_url,
        f"{layout.master_ui}/json/",
        120,
        env,
    )


def cluster_services(
    layout: ClusterLayout, spark_bin: Path, work_dir: Path, to_start: bool = True
) -> list[LocalService]:
    """The master, then one service per worker port, as ``spark_bin/spark-class`` commands;
    workers keep their executors' files under ``work_dir`` (not inside site-packages).
    ``to_start=False``: for status and down only (no look-up of SPARK_HOME)."""
    spark_class = str(spark_bin / "spark-class")
    env = daemon_env(layout, spark_bin) if to_start else ()
    workers = [
        LocalService(
            f"spark-worker-{number}",
            worker_command(
                layout, spark_class, port, work_dir / f"worker-{number}", layout.master_url
            ),
            f"http://{layout.host}:{port}",
            f"http://{layout.host}:{port}/json/",
            120,
            env,
        )
        for number, port in enumerate(layout.worker_ui_ports, start=1)
    ]
    return [master_service(layout, spark_bin, env), *workers]


def master_state(master_ui: str, timeout_s: float = 2.0) -> dict[str, Any] | None:
    """The master's ``/json/`` (workers, running and completed applications); None when its UI
    does not answer."""
    try:
        with urllib.request.urlopen(f"{master_ui}/json/", timeout=timeout_s) as response:
            return json.load(response)
    except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
        return None


def alive_workers(master_ui: str, timeout_s: float = 2.0) -> int | None:
    """How many workers the master lists as alive; None when its UI does not answer."""
    state = master_state(master_ui, timeout_s)
    return None if state is None else int(state.get("aliveworkers", 0))


def describe_cluster(layout: ClusterLayout) -> tuple[bool, str]:
    """(every worker alive, one line saying what the master lists) for ``spark-status``."""
    state = master_state(layout.master_ui)
    expected = len(layout.worker_ui_ports)
    if state is None:
        return False, f"the master's UI {layout.master_ui} does not answer"
    workers = state.get("workers", [])
    alive = [w for w in workers if w.get("state") == "ALIVE"]
    apps = [a.get("name", "?") for a in state.get("activeapps", [])]
    cores = sum(int(w.get("cores", 0)) for w in alive)
    lost = [f"{w.get('host', '?')}:{w.get('port', '?')} {w.get('state')}" for w in workers]
    lost = [w for w in lost if not w.endswith(" ALIVE")]
    line = (
        f"master lists {len(alive)} of {expected} workers alive ({cores} cores)"
        f"{' (' + ', '.join(lost) + ')' if lost else ''}, {len(apps)} running "
        f"application(s){': ' + ', '.join(apps) if apps else ''}"
    )
    return len(alive) >= expected, line


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


def stack_action(action: str, settings: Settings, venvs: Path, clean: bool = False) -> int:
    """``local_stack --stack spark up|down|status|url`` (``make spark-up`` ...): the cluster of
    PERSONA_SPARK_* run by the local stack's machinery (pid files, supervision, logs); up is
    ready once the master lists every worker alive. ``url`` prints the master's URL while it
    runs (the Makefile passes it as SPARK_MASTER), else exits 1."""
    layout = ClusterLayout.from_settings(settings)
    spark_bin = venvs / "spark" / "bin"
    stack = cluster_services(layout, spark_bin, settings.home / "spark-work", action == "up")
    if action == "url":
        if not local_stack.service_state(settings, stack[0]).running:
            logger.error("no Spark master of make spark-up answers at %s", layout.master_ui)
            return 1
        sys.stdout.write(f"{layout.master_url}\n")
        return 0
    if action == "down":
        local_stack.down(settings, stack)
        return 0
    if action == "up":
        local_stack.up(settings, stack)
        wait_for_workers(layout.master_ui, len(layout.worker_ui_ports))
        sys.stdout.write(f"SPARK_MASTER={layout.master_url}  (master UI {layout.master_ui})\n")
        return 0
    healthy = local_stack.status(settings, stack, clean=clean)
    complete, line = describe_cluster(layout)
    logger.info("%-12s %-24s %s", "spark", layout.master_url, line)
    return 0 if healthy and complete else 1


def spark_bin_dir() -> Path:
    """Where this environment's ``spark-class`` is: beside its Python (a virtualenv), else on
    PATH (an image that installed pyspark system-wide)."""
    here = Path(sys.executable).parent
    if (here / "spark-class").exists():
        return here
    found = shutil.which("spark-class")
    if found is None:
        raise ServiceStartError(
            "spark-class not found: run this in the Spark environment (make install-spark)"
        )
    return Path(found).parent


def daemon_argv(role: str, settings: Settings) -> tuple[list[str], dict[str, str]]:
    """The command and environment of one daemon, as ``make spark-up`` would start it; a worker
    joins SPARK_MASTER (Compose: spark://spark-master:7077)."""
    layout = ClusterLayout.from_settings(settings)
    spark_bin = spark_bin_dir()
    env = {**os.environ, **dict(daemon_env(layout, spark_bin))}
    spark_class = str(spark_bin / "spark-class")
    if role == "master":
        return master_command(layout, spark_class), env
    if not settings.spark_master.startswith("spark://"):
        raise ConfigurationError(
            f"a Spark worker joins SPARK_MASTER=spark://HOST:PORT, got {settings.spark_master!r}"
        )
    work_dir = settings.home / "spark-work"
    command = worker_command(
        layout, spark_class, settings.spark_worker_ui_port, work_dir, settings.spark_master
    )
    return command, env


def main(argv: list[str] | None = None) -> NoReturn:
    """``python -m persona.services.spark_cluster master|worker``: one daemon in the foreground,
    configured by PERSONA_SPARK_* (the Compose profile ``spark`` runs these)."""
    parser = argparse.ArgumentParser(prog="persona.services.spark_cluster", description=__doc__)
    parser.add_argument("role", choices=["master", "worker"])
    args = parser.parse_args(argv)

    def body(settings: Settings) -> int:
        command, env = daemon_argv(args.role, settings)
        logger.info("exec %s", " ".join(command))
        sys.stdout.flush()
        os.execve(command[0], command, env)  # the JVM takes this pid: signals reach it directly

    exit_entry(body, logger)


if __name__ == "__main__":
    main()
