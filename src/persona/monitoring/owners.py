"""Who runs a run, and when a run's owner is gone: the judgement reconciliation acts on.

An owner is the process that writes a run (a ``drift_runs`` row, an MLflow run): its host, the
host's boot, its pid and its start time (hundredths of a second since the epoch). The start
time tells a live owner from a recycled pid, the boot id an owner from before a reboot. On the
owner's own host a run is judged by asking whether that very process still lives
(``persona.adapters.processes``); on another host (or when the process cannot be asked) by its
heartbeat: a run whose heartbeat is older than ``stale_after`` is taken for dead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

SEPARATOR = ":"
DEFAULT_STALE_AFTER = timedelta(minutes=60)


@dataclass(frozen=True)
class Owner:
    """The process that writes a run."""

    host: str
    boot_id: str  # empty when the system does not say
    pid: int
    started: int | None  # hundredths of a second since the epoch; None: the system does not say

    def __str__(self) -> str:
        started = "" if self.started is None else str(self.started)
        return SEPARATOR.join((self.host, self.boot_id, str(self.pid), started))

    @classmethod
    def parse(cls, text: str | None) -> Owner | None:
        """The owner recorded as ``host:boot:pid:started``; None for nothing or anything else
        (an owner this release cannot read is judged by its heartbeat alone)."""
        if not text:
            return None
        parts = text.rsplit(SEPARATOR, 3)
        if len(parts) != 4 or not parts[2].isdigit():
            return None
        host, boot_id, pid, started = parts
        return cls(host, boot_id, int(pid), int(started) if started.isdigit() else None)


@dataclass(frozen=True)
class Verdict:
    """Whether a run's owner is gone, and why (the reason recorded on the closed run)."""

    gone: bool
    reason: str


# owner -> True: that very process runs / False: it is gone / None: cannot tell
ProcessProbe = Callable[[Owner], bool | None]


def judge(
    owner_text: str | None,
    heartbeat: datetime | None,
    now: datetime,
    here: Owner,
    probe: ProcessProbe,
    stale_after: timedelta = DEFAULT_STALE_AFTER,
) -> Verdict:
    """Is the run's owner gone? Asked of the process on its own host, else of the heartbeat.

    ``here`` is the judging process (its host and boot say whether the owner is local); a run
    the judging process owns itself is never gone.
    """
    owner = Owner.parse(owner_text)
    if owner is not None and owner == here:
        return Verdict(False, "owned by this process")
    if owner is not None and owner.host == here.host:
        if owner.boot_id and here.boot_id and owner.boot_id != here.boot_id:
            return Verdict(True, f"owner {owner} ran before this host rebooted")
        alive = probe(owner)
        if alive is True:
            return Verdict(False, f"owner {owner} is running")
        if alive is False:
            return Verdict(True, f"owner process {owner.pid} on {owner.host} is gone")
    if heartbeat is None:
        return Verdict(False, "no heartbeat to judge by")
    if heartbeat.tzinfo is None:  # SQLite hands back naive times; every store writes UTC
        heartbeat = heartbeat.replace(tzinfo=UTC)
    age = now - heartbeat
    where = "no recorded owner" if owner is None else f"owner {owner}"
    if age > stale_after:
        minutes = age.total_seconds() / 60
        return Verdict(
            True, f"{where}: no heartbeat for {minutes:.0f} min (> {_minutes(stale_after)})"
        )
    return Verdict(False, f"{where}: heartbeat {age.total_seconds():.0f} s ago")


def _minutes(span: timedelta) -> str:
    return f"{span.total_seconds() / 60:g} min"
