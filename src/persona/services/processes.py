"""Start and stop the stack's services as child processes on 127.0.0.1 (benchmarks, tests).

A child runs the very entry command that the local stack and Compose run, in its own process
group so that stopping it also stops the workers it forks.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from persona.errors import UpstreamUnavailableError


class ServiceStartError(UpstreamUnavailableError):
    """A service process exited or never answered its health URL."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _log_tail(log: Path | None, chars: int = 3000) -> str:
    return log.read_text(errors="replace")[-chars:] if log and log.exists() else ""


def wait_http(
    url: str, timeout_s: float, process: subprocess.Popen | None = None, log: Path | None = None
) -> None:
    """Poll ``url`` until it answers 200; fail early, with the log tail, if the process dies."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ServiceStartError(
                f"process exited early ({process.returncode}): {_log_tail(log)}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.3)
    raise ServiceStartError(f"{url} not up after {timeout_s}s: {_log_tail(log)}")


def stop_process(process: subprocess.Popen, grace_s: float = 20.0) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@dataclass
class ServiceProcess:
    url: str
    process: subprocess.Popen
    log: Path
    env: dict[str, str]

    def stop(self) -> None:
        stop_process(self.process)


def start_mlflow_server(
    python: Path,
    home: Path,
    backend_url: str,
    artifacts: str | None = None,
    extra_env: dict[str, str] | None = None,
    workers: int = 1,
    port: int | None = None,
) -> ServiceProcess:
    """``python -m persona.services.mlflow_server`` (on a free port unless given), ready on return."""
    port = port or free_port()
    env = {
        **os.environ,
        "PERSONA_HOME": str(home),
        "MLFLOW_BACKEND_STORE_URI": backend_url,
        "MLFLOW_HOST": "127.0.0.1",
        "MLFLOW_PORT": str(port),
        "MLFLOW_WORKERS": str(workers),
        **({"MLFLOW_ARTIFACTS_DESTINATION": artifacts} if artifacts else {}),
        **(extra_env or {}),
    }
    home.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{port}"
    return start_service(
        [str(python), "-m", "persona.services.mlflow_server"],
        env,
        home / f"mlflow-{port}.log",
        url,
        f"{url}/health",
    )


def start_service(
    command: list[str],
    env: dict[str, str],
    log: Path,
    url: str,
    health_url: str,
    timeout_s: float = 90,
) -> ServiceProcess:
    """Start ``command`` in its own process group, logging to ``log``; return once healthy."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as sink:
        process = subprocess.Popen(
            command, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_http(health_url, timeout_s, process, log)
    except ServiceStartError:
        stop_process(process)
        raise
    return ServiceProcess(url, process, log, env)
