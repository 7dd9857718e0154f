"""This host's processes, read from ``/proc``: who this process is, and whether another lives.

The owner of a run (``persona.monitoring.owners.Owner``) is recorded from here; a system
without ``/proc`` records host and pid only, and its runs are judged by their heartbeat.
"""

from __future__ import annotations

import logging
import os
import socket
from functools import cache
from pathlib import Path

from persona.monitoring.owners import Owner

logger = logging.getLogger(__name__)

PROC = Path("/proc")


@cache
def boot_id() -> str:
    """This boot of the host (empty when the system does not say)."""
    try:
        return (PROC / "sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def start_ticks(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks after boot; None when it does not exist
    (or the system does not say)."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold spaces; field 22 is starttime
    fields = stat[stat.rfind(")") + 2 :].split()
    if fields and fields[0] in ("Z", "X"):  # exited, not yet reaped by its parent
        return None
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def this_owner() -> Owner:
    """This process, as a run's owner."""
    pid = os.getpid()
    return Owner(socket.gethostname(), boot_id(), pid, start_ticks(pid))


def is_alive(owner: Owner) -> bool | None:
    """Does the very process ``owner`` names run on this host? None: cannot tell."""
    if not PROC.is_dir() or owner.started is None:
        return None
    started = start_ticks(owner.pid)
    if started is None:
        return False
    return started == owner.started  # another start time: the pid was recycled
