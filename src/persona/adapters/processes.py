"""This host's processes, through psutil: who this process is, and whether another still lives.

The one place that tells a live process from a gone one, for the owner of a run
(``persona.monitoring.owners.Owner``) and for the process groups of long commands
(``persona.services.process_tree``). A process is named by its pid *and* its start time, so a
pid the kernel gave to someone else is not taken for the process that had it.
"""

from __future__ import annotations

import logging
import os
import socket
from functools import cache
from pathlib import Path

import psutil

from persona.monitoring.owners import Owner

logger = logging.getLogger(__name__)

SAME_START_S = 1.0  # start times within this are one process (psutil derives them from boot time)


@cache
def boot_id() -> str:
    """This boot of the host (empty when the system does not say)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def start_time(pid: int, exited_too: bool = False) -> float | None:
    """When process ``pid`` started (seconds since the epoch); None when it does not exist or
    has exited (a zombie waiting for its parent; unless ``exited_too``)."""
    try:
        process = psutil.Process(pid)
        if not exited_too and process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process.create_time()
    except psutil.Error:
        return None


def is_same_process(pid: int, started: float) -> bool:
    """Does the process ``pid`` that started at ``started`` still run?"""
    now = start_time(pid)
    return now is not None and abs(now - started) < SAME_START_S


def this_owner() -> Owner:
    """This process, as a run's owner (its start time in hundredths of a second)."""
    pid = os.getpid()
    started = start_time(pid)
    return Owner(
        socket.gethostname(), boot_id(), pid, None if started is None else round(started * 100)
    )


def is_alive(owner: Owner) -> bool | None:
    """Does the very process ``owner`` names run on this host? None: cannot tell."""
    if owner.started is None:
        return None
    return is_same_process(owner.pid, owner.started / 100)
