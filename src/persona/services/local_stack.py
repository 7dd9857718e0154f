"""``python -m persona.services.local_stack up|down|status``: the stack without Docker.

Starts the MLflow server and Mage (UI, API triggers, scheduler) in the background with the
same entry commands their containers run, each in the environment of its service, and keeps
pid files and logs under PERSONA_HOME so that ``down`` and ``status`` find them again.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from persona.errors import PersonaError
from persona.logging_setup import configure_logging
from persona.services.processes import (
    ServiceProcess,
    ServiceStartError,
    start_service,
    wait_http,
)
from persona.settings import Settings, load_settings

logger = logging.getLogger(__name__)

# Set at launch, as in the scoring image: glibc reads it before Python starts.
SCORING_ENV = (("MALLOC_ARENA_MAX", "2"),)
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
            SCORING_ENV,
        ),
        LocalService(
            "evidently-ui",
            [str(venvs / "dev/bin/python"), "-m", "persona.services.evidently_ui"],
            evidently,
            evidently,
            60,
        ),
    ]


def start(settings: Settings, service: LocalService) -> ServiceProcess:
    """Start one service with its entry command, logging under PERSONA_HOME; ready on return."""
    log = settings.home / "logs" / f"{service.name}.log"
    logger.info("starting %s (log %s) ...", service.name, log)
    return start_service(
        service.command,
        {**os.environ, **dict(service.env)},
        log,
        service.url,
        service.health_url,
        service.start_timeout_s,
    )


def _pid_file(settings: Settings, service: LocalService) -> Path:
    return settings.home / "run" / f"{service.name}.pid"


def _running_pid(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    return pid


def up(settings: Settings, venvs: Path) -> None:
    for service in services(settings, venvs):
        pid_file = _pid_file(settings, service)
        if (pid := _running_pid(pid_file)) is not None:
            logger.info("%s already running (pid %d) at %s", service.name, pid, service.url)
            continue
        started = start(settings, service)
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        pid_file.write_text(str(started.process.pid))
        logger.info("%s is up at %s", service.name, service.url)


def down(settings: Settings, venvs: Path, grace_s: float = 20.0) -> None:
    for service in reversed(services(settings, venvs)):
        pid_file = _pid_file(settings, service)
        pid = _running_pid(pid_file)
        if pid is None:
            logger.info("%s is not running", service.name)
            pid_file.unlink(missing_ok=True)
            continue
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and _running_pid(pid_file) is not None:
            time.sleep(0.2)
        if _running_pid(pid_file) is not None:
            os.killpg(pid, signal.SIGKILL)
        pid_file.unlink(missing_ok=True)
        logger.info("%s stopped", service.name)


def status(settings: Settings, venvs: Path) -> bool:
    healthy = True
    for service in services(settings, venvs):
        pid = _running_pid(_pid_file(settings, service))
        try:
            wait_http(service.health_url, 3)
            state = "healthy"
        except ServiceStartError:
            state, healthy = "not answering", False
        logger.info("%-6s pid %-7s %s  %s", service.name, pid or "-", state, service.url)
    return healthy


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="persona.services.local_stack", description=__doc__)
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument(
        "--venvs",
        type=Path,
        default=Path(sys.executable).parents[2],
        help="folder holding the per-service environments (default: this one's parent)",
    )
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        configure_logging(settings.log_level)
        if args.action == "up":
            up(settings, args.venvs)
        elif args.action == "down":
            down(settings, args.venvs)
        elif not status(settings, args.venvs):
            raise SystemExit(1)
    except PersonaError as exc:
        logger.error("%s", exc)
        raise SystemExit(exc.exit_code) from None


if __name__ == "__main__":
    main()
