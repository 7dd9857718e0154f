"""A run's whole process tree dies with it: real processes, joblib/loky and multiprocessing.

The worker below stands in for the Mage pipeline worker: it starts a loky pool (two workers
and loky's resource tracker), a multiprocessing child (with its own resource tracker) and a
plain subprocess, writes their pids, then waits to be killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from functools import partial

import psutil
import pytest
from conftest import processes_gone
from conftest import wait_until as shared_wait_until

from persona.services import process_tree

WORKER = """
import os, pathlib, subprocess, sys, time
from persona.services import process_tree

def main():
    if sys.argv[2] == "teardown":
        process_tree.install_group_teardown()
    if sys.argv[3] == "pools":
        import multiprocessing
        from joblib import Parallel, delayed
        Parallel(n_jobs=2)(delayed(os.getpid)() for _ in range(4))  # loky keeps its workers
        child = multiprocessing.get_context("spawn").Process(target=time.sleep, args=(600,))
        child.start()
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    import psutil
    pids = [p.pid for p in psutil.Process().children(recursive=True)]
    pathlib.Path(sys.argv[1] + ".tmp").write_text(" ".join(map(str, pids)))
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    time.sleep(600)

if __name__ == "__main__":
    main()
"""

LAUNCHER = """
import os, sys
from pathlib import Path
from persona.services import process_tree
worker, pids, mode, kinds, records = sys.argv[1:]
code = process_tree.run_group([sys.executable, worker, pids, mode, kinds], os.environ, Path(records))
Path(pids + ".code").write_text(str(code))
"""


wait_until = partial(shared_wait_until, timeout_s=60)


@pytest.fixture
def tree(tmp_path) -> Iterator[Callable[[str, str], tuple[subprocess.Popen, int, list[int]]]]:
    """Start launcher -> worker -> children; return (launcher, worker pid, children pids)."""
    (tmp_path / "worker.py").write_text(WORKER)
    (tmp_path / "launcher.py").write_text(LAUNCHER)
    started: list[int] = []
    launchers: list[subprocess.Popen] = []

    def start(mode: str, kinds: str) -> tuple[subprocess.Popen, int, list[int]]:
        pids_file = tmp_path / f"pids-{len(launchers)}"
        launcher = subprocess.Popen(
            [
                sys.executable,
                str(tmp_path / "launcher.py"),
                str(tmp_path / "worker.py"),
                str(pids_file),
                mode,
                kinds,
                str(tmp_path / "groups"),
            ]
        )
        launchers.append(launcher)
        wait_until(pids_file.exists)
        children = [int(pid) for pid in pids_file.read_text().split()]
        worker = psutil.Process(children[0]).ppid()
        while psutil.Process(worker).ppid() != launcher.pid:  # a pool worker's parent
            worker = psutil.Process(worker).ppid()
        started.extend([worker, *children])
        return launcher, worker, children

    yield start
    for pid in started:
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).kill()
    for launcher in launchers:
        if launcher.poll() is None:
            launcher.kill()
        launcher.wait()


def test_a_killed_worker_takes_its_pools_and_children_along(tree, tmp_path):
    launcher, worker, children = tree("plain", "pools")
    assert len(children) >= 5  # 2 loky workers, loky's and multiprocessing's trackers, 2 more
    assert [r.pgid for r in process_tree.read_records(tmp_path / "groups")] == [worker]

    os.kill(worker, signal.SIGKILL)

    wait_until(lambda: processes_gone(children))
    assert launcher.wait(timeout=60) == 0
    assert (tmp_path / "pids-0.code").read_text() == str(-signal.SIGKILL)
    assert process_tree.read_records(tmp_path / "groups") == []


def test_a_killed_launcher_takes_the_worker_and_its_pools_along(tree):
    launcher, worker, children = tree("teardown", "pools")

    launcher.kill()

    wait_until(lambda: processes_gone([worker, *children]))


def test_leftovers_of_a_killed_launcher_are_stopped_at_the_next_start(tree, tmp_path):
    """A worker without the teardown dies with its launcher; its child is left to the next run."""
    launcher, worker, children = tree("plain", "plain")
    launcher.kill()
    wait_until(lambda: processes_gone([worker]))
    assert not processes_gone(children)
    groups = tmp_path / "groups"
    assert process_tree.abandoned_groups(groups) == [process_tree.Leftover(worker, tuple(children))]

    stopped = process_tree.reap_abandoned_groups(groups)

    assert [leftover.pgid for leftover in stopped] == [worker]
    wait_until(lambda: processes_gone(children))
    assert process_tree.read_records(groups) == []


def test_a_record_whose_pid_was_reused_stops_nothing(tmp_path):
    stranger = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True
    )
    try:
        groups = tmp_path / "groups"
        groups.mkdir()
        (groups / f"{stranger.pid}.group").write_text(f"{stranger.pid} 1000.0\n")  # not its start
        assert process_tree.reap_abandoned_groups(groups) == []
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_sigterm_to_the_supervisor_stops_the_whole_service(tmp_path):
    """The pid file's pid is all kill needs: orphaned grandchildren are stopped too."""
    pids_file = tmp_path / "pids"
    service = (
        "import pathlib, subprocess, sys, time; "
        "code = 'import subprocess, sys, time; "
        'subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"]); '
        "time.sleep(600)'; "
        "worker = subprocess.Popen([sys.executable, '-c', code]); "
        "orphan = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], "
        "start_new_session=True); "
        f"pathlib.Path({str(pids_file)!r}).write_text(f'{{worker.pid}} {{orphan.pid}}'); "
        "time.sleep(600)"
    )
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "persona.services.supervise", "--", sys.executable, "-c", service],
        start_new_session=True,
    )
    try:
        wait_until(pids_file.exists)
        wait_until(lambda: len(psutil.Process(supervisor.pid).children(recursive=True)) >= 4)
        tree = [p.pid for p in psutil.Process(supervisor.pid).children(recursive=True)]

        supervisor.send_signal(signal.SIGTERM)

        assert supervisor.wait(timeout=60) == 128 + signal.SIGTERM
        wait_until(lambda: processes_gone(tree))
    finally:
        for process in psutil.Process().children(recursive=True):
            if process.pid != supervisor.pid:
                process.kill()
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()


def test_the_supervisor_exits_with_its_service_and_stops_what_it_left(tmp_path):
    pids_file = tmp_path / "pids"
    service = (
        "import pathlib, subprocess, sys; "
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
        f"pathlib.Path({str(pids_file)!r}).write_text(str(child.pid)); "
        "sys.exit(3)"
    )
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "persona.services.supervise", "--", sys.executable, "-c", service],
        start_new_session=True,
    )
    assert supervisor.wait(timeout=60) == 3
    wait_until(lambda: processes_gone([int(pids_file.read_text())]))
