"""`make local-up` next to a service that is dying, hung, a zombie or someone else's.

Real processes and a real HTTP server stand in for MLflow, Mage and Gunicorn: ``up`` used to
trust ``os.kill(pid, 0)``, which also succeeds for a zombie or a process still shutting down,
and then reported "already running" while nothing answered.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import psutil
import pytest
from conftest import free_port
from conftest import wait_until as shared_wait_until

from persona.services import local_stack
from persona.services.local_stack import LocalService
from persona.services.processes import ServiceStartError
from persona.settings import Settings, load_settings

LOGGER = "persona.services.local_stack"


@pytest.fixture
def settings(tmp_path) -> Settings:
    return load_settings(environ={"PERSONA_HOME": str(tmp_path / "home")})


def stub_service(timeout_s: float) -> LocalService:
    """A tiny real service: Python's HTTP server, answering 200 on / once it listens."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]
    return LocalService("stub", command, url, f"{url}/", timeout_s)


@pytest.fixture
def spawn() -> Iterator[Callable[[str], subprocess.Popen]]:
    """Start ``python -c CODE`` in its own session, as local-up starts services; killed after."""
    started: list[subprocess.Popen] = []

    def run(code: str) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
        started.append(process)
        return process

    yield run
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()


def write_pid(settings: Settings, service: LocalService, pid: int) -> Path:
    pid_file = settings.home / "run" / f"{service.name}.pid"
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(str(pid))
    return pid_file


wait_until = partial(shared_wait_until, timeout_s=30)


def answers(service: LocalService) -> bool:
    try:
        with urllib.request.urlopen(service.health_url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def is_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_up_waits_for_a_dying_service_to_exit_then_starts_it(settings, spawn, caplog):
    service = stub_service(timeout_s=60)
    dying = spawn("import time; time.sleep(2)")  # alive, not answering, exits by itself
    pid_file = write_pid(settings, service, dying.pid)
    state = local_stack.service_state(settings, service)
    assert (state.alive, state.answering, state.running) == (True, False, False)
    assert "alive but not answering" in state.describe()

    caplog.set_level(logging.INFO, logger=LOGGER)
    local_stack.up(settings, [service])
    try:
        assert dying.poll() is not None  # up waited for it; it is a zombie of ours by now
        new_pid = int(pid_file.read_text())
        assert new_pid != dying.pid and answers(service)
        assert local_stack.service_state(settings, service).describe() == f"healthy (pid {new_pid})"
        assert f"stub: pid {dying.pid} alive but not answering" in caplog.text
        assert "already running" not in caplog.text
    finally:
        local_stack.down(settings, [service], grace_s=10)
    assert not answers(service) and not pid_file.exists()
    assert not psutil.pid_exists(new_pid) or is_zombie(new_pid)


def test_a_zombie_counts_as_stopped_and_is_replaced_without_waiting(settings, spawn, caplog):
    service = stub_service(timeout_s=60)
    dead = spawn("pass")
    wait_until(lambda: is_zombie(dead.pid))  # exited, not reaped: os.kill(pid, 0) still works
    write_pid(settings, service, dead.pid)
    assert (
        local_stack.service_state(settings, service).describe()
        == f"stopped (pid {dead.pid} exited)"
    )
    assert local_stack.status(settings, [service]) is False

    caplog.set_level(logging.INFO, logger=LOGGER)
    local_stack.up(settings, [service])
    try:
        assert answers(service)
        assert "waiting" not in caplog.text and "already running" not in caplog.text
        assert local_stack.status(settings, [service]) is True
    finally:
        local_stack.down(settings, [service], grace_s=10)


def test_up_waits_for_leftover_workers_of_a_dead_master(settings, spawn, tmp_path):
    """The master exited, a worker in its process group still runs (and could hold the port)."""
    service = stub_service(timeout_s=60)
    worker_pid = tmp_path / "worker.pid"
    master = spawn(
        "import pathlib, subprocess, sys; "
        "worker = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(2)']); "
        f"pathlib.Path({str(worker_pid)!r}).write_text(str(worker.pid))"
    )
    master.wait()  # reaped: the pid file names a process that is gone
    write_pid(settings, service, master.pid)
    worker = int(worker_pid.read_text())
    state = local_stack.service_state(settings, service)
    assert not state.alive and state.members == 1 and "still run" in state.describe()

    local_stack.up(settings, [service])
    try:
        assert not psutil.pid_exists(worker) or is_zombie(worker)
        assert local_stack.service_state(settings, service).running
    finally:
        local_stack.down(settings, [service], grace_s=10)


def test_a_hung_service_is_reported_not_skipped_and_down_stops_it(settings, spawn):
    service = stub_service(timeout_s=1)
    hung = spawn("import time; time.sleep(600)")
    pid_file = write_pid(settings, service, hung.pid)

    with pytest.raises(ServiceStartError) as failure:
        local_stack.up(settings, [service])
    assert str(failure.value) == (
        f"stub pid {hung.pid} is not answering at {service.health_url} and did not exit in 1s; "
        "run make local-down"
    )
    assert hung.poll() is None and not answers(service)  # nothing was started beside it

    local_stack.down(settings, [service], grace_s=10)
    assert hung.wait(timeout=30) is not None and not pid_file.exists()


def test_a_service_someone_else_runs_is_left_alone_and_reported(settings, caplog):
    service = stub_service(timeout_s=60)
    other = subprocess.Popen(service.command, start_new_session=True)
    try:
        wait_until(lambda: answers(service))
        assert (
            "not started by make local-up"
            in local_stack.service_state(settings, service).describe()
        )
        caplog.set_level(logging.INFO, logger=LOGGER)
        local_stack.up(settings, [service])
        assert "leaving it" in caplog.text
        assert not (settings.home / "run/stub.pid").exists()
    finally:
        other.kill()
        other.wait()


def test_a_reused_pid_is_not_ours_not_waited_for_and_not_signalled(settings, caplog):
    """Services lead their own session; a process that does not is someone else's."""
    service = stub_service(timeout_s=60)
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        write_pid(settings, service, stranger.pid)
        assert local_stack.service_state(settings, service).describe() == (
            f"stopped (pid {stranger.pid} exited)"
        )
        caplog.set_level(logging.INFO, logger=LOGGER)
        local_stack.up(settings, [service])
        assert answers(service) and "waiting" not in caplog.text
        local_stack.down(settings, [service], grace_s=10)
        assert stranger.poll() is None  # the stranger was left alone
    finally:
        stranger.kill()
        stranger.wait()
