"""A run or a service and everything it forks live and die together, as one process group.

Killing a Mage worker used to leave its block subprocess, joblib/loky workers and resource
trackers reparented to PID 1 for good, and killing the pid in a service's pid file left the
MLflow server's uvicorn workers answering. The rules here:

- a long child runs as the leader of its own session (and so of its process group), with
  ``PR_SET_PDEATHSIG`` so that it is signalled when the process that started it dies;
- a group leader that is asked to stop (SIGTERM, SIGINT, SIGHUP) stops its whole group before
  it exits (``install_group_teardown``), so the one pid in a pid file is all ``kill`` needs;
- the launcher stops the child's group once the child has exited, however it exited;
- each running group is recorded under a folder, and a record whose leader is gone is cleaned
  up at the next start (``reap_abandoned_groups``): what the launcher could not stop because it
  was SIGKILLed itself.

psutil (a dependency of the pipeline environment already) reads the process table; Linux only
for the two ``prctl`` calls, which are skipped elsewhere.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil

from persona.adapters import processes

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _prctl(option: int, value: int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):  # not Linux
        return False


def die_with_parent(sig: signal.Signals = signal.SIGTERM) -> Callable[[], None]:
    """A ``preexec_fn``: the child gets ``sig`` when the process that started it dies."""

    def set_signal() -> None:
        _prctl(PR_SET_PDEATHSIG, int(sig))

    return set_signal


def become_subreaper() -> bool:
    """Orphans of this process's descendants are reparented here, not to PID 1."""
    return _prctl(PR_SET_CHILD_SUBREAPER, 1)


def group_processes(pgid: int) -> list[psutil.Process]:
    """Live processes (zombies are dead) of process group ``pgid``."""
    members = []
    for process in psutil.process_iter(["status"]):
        try:
            if process.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(process.pid) == pgid:
                members.append(process)
        except (ProcessLookupError, PermissionError):
            continue
    return members


def _reap_children() -> None:
    """Collect exited children (a subreaper's adopted orphans too), so they stop being zombies."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def _alive(processes: Iterable[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.NoSuchProcess:
            continue
    return alive


def _send(processes: Iterable[psutil.Process], sig: signal.Signals) -> None:
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            process.send_signal(sig)


def stop_processes(
    find: Callable[[], list[psutil.Process]],
    grace_s: float = 20.0,
    poll_s: float = 0.1,
    reap: bool = False,
) -> list[int]:
    """SIGTERM what ``find`` returns, SIGKILL what is left after ``grace_s``; the pids signalled.

    ``find`` is asked again while waiting, so a process forked meanwhile is stopped too.
    ``reap`` collects any exited child of this process (for a leader whose orphans were
    reparented to it); a launcher with other children of its own leaves them alone.
    """
    signalled: set[int] = set()
    killing_since: float | None = None
    deadline = time.monotonic() + grace_s
    while True:
        if reap:
            _reap_children()
        targets = [p for p in _alive(find()) if p.pid != os.getpid()]
        if not targets:
            return sorted(signalled)
        now = time.monotonic()
        if now >= deadline and killing_since is None:
            killing_since = now
        if killing_since is None:
            _send([p for p in targets if p.pid not in signalled], signal.SIGTERM)
        elif now - killing_since > max(grace_s, 5.0):  # stuck in the kernel: say so, go on
            logger.warning("processes %s did not die", ", ".join(str(p.pid) for p in targets))
            return sorted(signalled)
        else:
            _send(targets, signal.SIGKILL)
        signalled.update(p.pid for p in targets)
        time.sleep(poll_s)


def stop_group(pgid: int, grace_s: float = 20.0) -> list[int]:
    """Stop every process of group ``pgid`` (the caller excepted); the pids signalled."""

    def find() -> list[psutil.Process]:
        members = group_processes(pgid)
        if os.getpgid(0) == pgid:  # a leader stopping its own group: its adopted orphans too
            with contextlib.suppress(psutil.NoSuchProcess):
                members += psutil.Process().children(recursive=True)
        return members

    return stop_processes(find, grace_s, reap=os.getpgid(0) == pgid)


def install_group_teardown(grace_s: float = 10.0) -> None:
    """On SIGTERM/SIGINT/SIGHUP, stop this process's whole group, then exit 128+signal.

    For a group leader (a pipeline worker, a service supervisor): whoever signals the one pid
    it knows brings down everything the leader forked, Mage's block subprocess included.
    """

    def teardown(signum: int, _frame: object) -> None:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        stop_group(os.getpgid(0), grace_s)
        os._exit(128 + signum)

    for sig in STOP_SIGNALS:
        signal.signal(sig, teardown)


@dataclass(frozen=True)
class GroupRecord:
    """A running group's leader pid and start time (a reused pid is not the same process)."""

    pgid: int
    started: float
    path: Path

    def leader_alive(self) -> bool:
        return processes.is_same_process(self.pgid, self.started)

    def pid_reused(self) -> bool:
        """Another process has the leader's pid: the kernel gives out no pid that still names a
        process group, so nothing of the recorded group is left."""
        now = processes.start_time(self.pgid)
        return now is not None and abs(now - self.started) >= processes.SAME_START_S

    def members(self) -> list[psutil.Process]:
        """The group's live processes started no earlier than its leader (not a reused pgid)."""
        earliest = self.started - processes.SAME_START_S
        return [
            p
            for p in group_processes(self.pgid)
            if (processes.start_time(p.pid) or 0.0) >= earliest
        ]


def records_folder(home: Path) -> Path:
    """Where runs under ``home`` (PERSONA_HOME) record their process groups."""
    return home / "run" / "groups"


def record_group(folder: Path, pid: int) -> GroupRecord:
    folder.mkdir(parents=True, exist_ok=True)
    started = processes.start_time(pid, exited_too=True)  # our child: a zombie until waited
    if started is None:
        raise ProcessLookupError(f"process {pid} is not ours to record")
    path = folder / f"{pid}.group"
    path.write_text(f"{pid} {started}\n")
    return GroupRecord(pid, started, path)


def read_records(folder: Path) -> list[GroupRecord]:
    records = []
    for path in sorted(folder.glob("*.group")):
        try:
            pgid, started = path.read_text().split()
            records.append(GroupRecord(int(pgid), float(started), path))
        except (OSError, ValueError):
            path.unlink(missing_ok=True)  # half-written by a killed launcher: nothing to trust
    return records


@dataclass(frozen=True)
class Leftover:
    """A recorded group whose leader is gone while some of its processes still run."""

    pgid: int
    pids: tuple[int, ...]


def abandoned_groups(folder: Path) -> list[Leftover]:
    """Recorded groups whose leader is gone but whose processes still run; empty records go."""
    leftovers = []
    for record in read_records(folder):
        if record.leader_alive():
            continue
        members = [] if record.pid_reused() else record.members()
        if members:
            leftovers.append(Leftover(record.pgid, tuple(sorted(p.pid for p in members))))
        else:
            record.path.unlink(missing_ok=True)
    return leftovers


def reap_abandoned_groups(folder: Path, grace_s: float = 5.0) -> list[Leftover]:
    """Stop what is left of groups whose leader died (the launcher was killed too)."""
    leftovers = abandoned_groups(folder)
    for leftover in leftovers:
        record = next(r for r in read_records(folder) if r.pgid == leftover.pgid)
        logger.warning(
            "stopping %d leftover process(es) of an earlier run (group %d, pids %s)",
            len(leftover.pids),
            leftover.pgid,
            ", ".join(map(str, leftover.pids)),
        )
        stop_processes(record.members, grace_s)
        record.path.unlink(missing_ok=True)
    return leftovers


def run_group(
    command: Sequence[str],
    env: Mapping[str, str],
    records: Path,
    timeout_s: float | None = None,
    grace_s: float = 10.0,
    stdout: IO[Any] | None = None,
    stderr: IO[Any] | None = None,
) -> int:
    """Run ``command`` as its own group and wait; return its exit code.

    Whatever way the command ends (exit, crash, SIGKILL, timeout, Ctrl-C or SIGTERM to this
    process), its whole group is stopped before this returns. Leftovers of earlier runs whose
    launcher was killed are stopped first. A timeout raises ``subprocess.TimeoutExpired``.
    ``stdout``/``stderr``: open files for the command's output (default: this process's).
    """
    reap_abandoned_groups(records)
    process = subprocess.Popen(
        list(command),
        env=dict(env),
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
        preexec_fn=die_with_parent(signal.SIGTERM),  # the launcher spawns from its main thread
    )
    record = record_group(records, process.pid)
    previous = signal.getsignal(signal.SIGTERM)
    in_main_thread = _main_thread()
    if in_main_thread:  # SIGTERM to the launcher: unwind through the finally below
        signal.signal(signal.SIGTERM, _raise_exit)
    try:
        return process.wait(timeout=timeout_s)
    finally:
        stop_processes(lambda: group_processes(process.pid), grace_s)
        with contextlib.suppress(ChildProcessError):
            process.wait(timeout=grace_s)
        record.path.unlink(missing_ok=True)
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _raise_exit(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
