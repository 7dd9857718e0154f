"""``python -m persona.services.local_stack up|down|status``: the stack without Docker.

``--stack spark`` does the same for a standalone Spark master and workers
(``persona.services.spark_cluster``, ``make spark-up``).

Starts the MLflow server and Mage (UI, API triggers, scheduler) in the background with the
same entry commands their containers run, each in the environment of its service, and keeps
pid files and logs under PERSONA_HOME so that ``down`` and ``status`` find them again. Each
service runs under ``persona.services.supervise`` as its own session: the pid file names the
supervisor, and ``kill $(cat PERSONA_HOME/run/mlflow.pid)`` stops the whole service. A service
counts as running only while its process is alive (not a zombie) and its health URL answers;
``up`` waits for one that is alive but silent (starting or shutting down) to answer or exit.
``status`` names a service whose main process is gone while its children still answer, and
leftovers of killed pipeline runs; ``status --clean`` stops both.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

import psutil

from persona.entry import exit_entry
from persona.services import process_tree
from persona.services.processes import ServiceProcess, ServiceStartError, start_service
from persona.settings import Settings

logger = logging.getLogger(__name__)

GUNICORN_CONF = Path(__file__).resolve().parents[3] / "03_deployment/gunicorn.conf.py"


@dataclass(frozen=True)
class LocalService:
    name: str
    command: list[str]
    url: str
    health_url: str
    start_timeout_s: float
    env: tuple[tuple[str, str], ...] = ()


def services(settings: Settings, venvs: Path) -> list[LocalService]:
    mlflow = f"http://{settings.mlflow_host}:{settings.mlflow_port}"
    mage = f"http://{settings.mage_host}:{settings.mage_port}"
    scoring = f"http://{settings.scoring_host}:{settings.scoring_port}"
    evidently = f"http://{settings.evidently_host}:{settings.evidently_port}"
    return [
        LocalService(
            "mlflow",
            [str(venvs / "mlflow/bin/python"), "-m", "persona.services.mlflow_server"],
            mlflow,
            f"{mlflow}/health",
            90,
        ),
        LocalService(
            "mage", [str(venvs / "dev/bin/python"), "-m", "persona.services.mage"], mage, mage, 240
        ),
        LocalService(
            "scoring",
            [str(venvs / "scoring/bin/gunicorn"), "-c", str(GUNICORN_CONF)],
            scoring,
            f"{scoring}/health",
            180,  # 60 s was not always enough on 2 busy cores
        ),
        LocalService(
            "evidently-ui",
            [str(venvs / "dev/bin/python"), "-m", "persona.services.evidently_ui"],
            evidently,
            evidently,
            60,
        ),
    ]


def supervised(command: Sequence[str]) -> list[str]:
    """``command`` under the supervisor (this environment's Python; it needs only psutil)."""
    return [sys.executable, "-m", "persona.services.supervise", "--", *command]


def start(settings: Settings, service: LocalService) -> ServiceProcess:
    """Start one service with its entry command, logging under PERSONA_HOME; ready on return."""
    log = settings.home / "logs" / f"{service.name}.log"
    logger.info("starting %s (log %s) ...", service.name, log)
    return start_service(
        supervised(service.command),
        {**os.environ, **dict(service.env)},
        log,
        service.url,
        service.health_url,
        service.start_timeout_s,
    )


def _pid_file(settings: Settings, service: LocalService) -> Path:
    return settings.home / "run" / f"{service.name}.pid"


def _read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _group_members(pgid: int) -> int:
    """Live processes in the process group a service was started as (zombies are dead).

    A service runs in its own session, so its group also holds the workers it forked: a
    Gunicorn master that died can leave workers that still hold the port for a while.
    """
    return len(process_tree.group_processes(pgid))


def _listeners(pgid: int, port: int | None) -> tuple[int, ...]:
    """Pids of the group's processes listening on ``port``."""
    if port is None:
        return ()
    pids = set()
    for process in process_tree.group_processes(pgid):
        try:
            connections = process.connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in connections):
            pids.add(process.pid)
    return tuple(sorted(pids))


def _answers(url: str, timeout_s: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
        return False


@dataclass(frozen=True)
class ServiceState:
    """What the pid file, the process table and the health URL say about one service.

    ``os.kill(pid, 0)`` alone also succeeds for a zombie or a process that is shutting down,
    which made ``up`` skip a service whose server had exited: a service runs only when its
    process is alive (not a zombie) and its health URL answers.
    """

    pid: int | None  # from the pid file
    alive: bool  # that process exists and is not a zombie
    members: int  # live processes of its process group (the leader included)
    answering: bool  # the health URL answers 200
    port: int | None = None  # the service's port
    listeners: tuple[int, ...] = ()  # pids of its group listening on that port

    @property
    def orphaned(self) -> bool:
        """The main process is gone, but processes of its group are still there."""
        return not self.alive and self.members > 0

    @property
    def running(self) -> bool:
        return self.alive and self.answering

    @property
    def settled(self) -> bool:
        """Running, or nothing of it left: neither starting nor shutting down."""
        return self.running or self.members == 0

    def describe(self) -> str:
        if self.running:
            return f"healthy (pid {self.pid})"
        if self.alive:
            return f"pid {self.pid} alive but not answering (starting, stopping or hung)"
        if self.members and self.listeners and self.answering:
            return (
                f"main process {self.pid} gone but children still answer on {self.port} "
                f"(pids {', '.join(map(str, self.listeners))}); stop them with make local-down, "
                f"make local-status CLEAN=1 or kill -- -{self.pid}"
            )
        if self.members:
            return (
                f"main process {self.pid} gone, {self.members} process(es) of its group still "
                f"run; stop them with make local-down, make local-status CLEAN=1 or "
                f"kill -- -{self.pid}"
            )
        if self.answering:
            return "answering, but not started by make local-up (local-down will not stop it)"
        if self.pid is not None:
            return f"stopped (pid {self.pid} exited)"
        return "stopped"


def _processes(pid_file: Path) -> tuple[int | None, bool, int]:
    """(pid, alive, live group members) of the pid file's service.

    Services are started as session leaders, so a pid that now names a process which leads no
    session of its own was reused by something else: not ours, and not to be signalled.
    """
    pid = _read_pid(pid_file)
    if pid is None:
        return None, False, 0
    try:
        if os.getsid(pid) != pid:
            return pid, False, 0
        alive = psutil.Process(pid).status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except (ProcessLookupError, psutil.NoSuchProcess):
        alive = False
    return pid, alive, _group_members(pid)


def service_state(settings: Settings, service: LocalService) -> ServiceState:
    """The service's state now (one health probe)."""
    pid, alive, members = _processes(_pid_file(settings, service))
    port = urlsplit(service.url).port
    listeners = _listeners(pid, port) if pid is not None and members else ()
    return ServiceState(pid, alive, members, _answers(service.health_url), port, listeners)


def _settle(settings: Settings, service: LocalService, poll_s: float = 0.2) -> ServiceState:
    """Wait until the service runs or is gone, at most its start timeout.

    A live process that does not answer is starting or shutting down: starting a second copy
    next to it races it for the port, and skipping it leaves no service at all.
    """
    state = service_state(settings, service)
    if state.settled:
        return state
    timeout = service.start_timeout_s
    logger.info(
        "%s: %s; waiting up to %gs for it to answer or exit",
        service.name,
        state.describe(),
        timeout,
    )
    deadline = time.monotonic() + timeout
    while not state.settled and time.monotonic() < deadline:
        time.sleep(poll_s)
        state = service_state(settings, service)
    if not state.settled:
        what = "is not answering" if state.alive else "exited but its group is still running"
        raise ServiceStartError(
            f"{service.name} pid {state.pid} {what} at {service.health_url} and did not exit "
            f"in {timeout:g}s; run make local-down"
        )
    return state


def up(settings: Settings, stack: Sequence[LocalService]) -> None:
    """Start each service of ``stack`` that is not running; ready on return.

    What killed pipeline runs left behind is stopped first (it may hold memory and sessions).
    """
    process_tree.reap_abandoned_groups(process_tree.records_folder(settings.home))
    for service in stack:
        pid_file = _pid_file(settings, service)
        state = _settle(settings, service)
        if state.running:
            logger.info("%s already running (pid %d) at %s", service.name, state.pid, service.url)
            continue
        if state.answering:
            logger.warning(
                "%s: something not started by make local-up already answers at %s; leaving it",
                service.name,
                service.health_url,
            )
            continue
        pid_file.unlink(missing_ok=True)
        started = start(settings, service)
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        pid_file.write_text(str(started.process.pid))
        logger.info("%s is up at %s", service.name, service.url)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # the group emptied meanwhile
        os.killpg(pgid, sig)


def down(settings: Settings, stack: Sequence[LocalService], grace_s: float = 20.0) -> None:
    """Stop each service's whole process group (SIGTERM, SIGKILL after ``grace_s``)."""
    for service in reversed(stack):
        pid_file = _pid_file(settings, service)
        pid, _alive, members = _processes(pid_file)
        if pid is None or not members:
            logger.info("%s is not running", service.name)
            pid_file.unlink(missing_ok=True)
            continue
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while _group_members(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _group_members(pid):
            _signal_group(pid, signal.SIGKILL)
        pid_file.unlink(missing_ok=True)
        logger.info("%s stopped", service.name)


def status(settings: Settings, stack: Sequence[LocalService], clean: bool = False) -> bool:
    """Log each service's state; True when every one answers through its main process.

    With ``clean``, a service whose main process is gone has the rest of its group stopped,
    and so has what killed pipeline runs left behind.
    """
    healthy = True
    for service in stack:
        state = service_state(settings, service)
        healthy = healthy and state.answering and not state.orphaned
        logger.info("%-12s %-24s %s", service.name, service.url, state.describe())
        if clean and state.orphaned and state.pid is not None:
            stopped = process_tree.stop_group(state.pid)
            _pid_file(settings, service).unlink(missing_ok=True)
            logger.info("%s: stopped leftover pids %s", service.name, stopped)
    groups = process_tree.records_folder(settings.home)
    leftovers = (
        process_tree.reap_abandoned_groups(groups)
        if clean
        else process_tree.abandoned_groups(groups)
    )
    for leftover in leftovers:
        logger.info(
            "%-12s %-24s group %d: its run was killed, pids %s %s",
            "pipeline run",
            "-",
            leftover.pgid,
            ", ".join(map(str, leftover.pids)),
            "stopped" if clean else "still run (make local-status CLEAN=1 stops them)",
        )
    return healthy


def main(argv: list[str] | None = None) -> NoReturn:
    parser = argparse.ArgumentParser(prog="persona.services.local_stack", description=__doc__)
    parser.add_argument(
        "action",
        choices=["up", "down", "status", "url"],
        help="url (--stack spark): print the master's URL while it runs",
    )
    parser.add_argument(
        "--stack",
        choices=["services", "spark"],
        default="services",
        help="services: MLflow, Mage, the API, the Evidently UI (make local-up); spark: a "
        "standalone Spark master and workers (make spark-up; persona.services.spark_cluster)",
    )
    parser.add_argument(
        "--clean",
        action="store_true",
        help="status: stop what is left of services whose main process is gone, and of "
        "killed pipeline runs",
    )
    parser.add_argument(
        "--venvs",
        type=Path,
        default=Path(sys.executable).parents[2],
        help="folder holding the per-service environments (default: this one's parent)",
    )
    args = parser.parse_args(argv)

    def body(settings: Settings) -> int:
        if args.stack == "spark":
            from persona.services import spark_cluster  # it builds on this module

            return spark_cluster.stack_action(args.action, settings, args.venvs, args.clean)
        if args.action == "url":
            parser.error("url is an action of --stack spark")
        stack = services(settings, args.venvs)
        if args.action == "up":
            up(settings, stack)
        elif args.action == "down":
            down(settings, stack)
        elif not status(settings, stack, clean=args.clean):
            return 1
        return 0

    exit_entry(body, logger)


if __name__ == "__main__":
    main()
