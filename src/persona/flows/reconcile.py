"""Reconciliation: runs whose owner is gone are closed, so nothing stays half-written.

A run killed for real (``kill -9``, a lost container) cannot end its own records. The next run
(train or monitor, at its start; an ingest or score job for the jobs) or ``persona runs
reconcile`` does: drift history rows left ``retraining`` or with a ``pending`` alert become
``abandoned`` (with when and why), MLflow runs left RUNNING become KILLED, Mage pipeline runs
left running become failed, a registration cut between its steps is finished or given up (a
production alias that moved gets its history entry, a version no alias reached is tagged
abandoned), a drift report no kept row names leaves the Evidently UI, and an ingest or score
job left running becomes abandoned. Whose owner is gone is judged by
``persona.monitoring.owners``; a run whose owner still works is left alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from persona.errors import UpstreamUnavailableError
from persona.monitoring.owners import DEFAULT_STALE_AFTER, Owner, ProcessProbe, judge
from persona.ports import DriftStore, OpenRun, OpenTrackerRuns

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClosedRun:
    """One run reconciliation closed, as ``persona runs reconcile`` prints it."""

    kind: str
    run_id: str
    label: str
    state: str  # what it was left in
    owner: str | None
    reason: str


@dataclass(frozen=True)
class Reconciliation:
    """What one reconciliation closed, and how many open runs it left to their live owners."""

    closed: tuple[ClosedRun, ...]
    still_open: int
    checked_at: str
    unreachable: tuple[str, ...] = ()  # the stores that could not be read, and why


@dataclass(frozen=True)
class Judge:
    """How owners are judged: who is asking, how to ask a process, when a heartbeat is stale."""

    here: Owner
    probe: ProcessProbe
    stale_after: timedelta = DEFAULT_STALE_AFTER


Closer = Callable[[str, datetime, str], bool]  # run id, when, why -> closed now


def _closer(runs: OpenTrackerRuns) -> Closer:
    return lambda run_id, at, reason: runs.close_run(run_id, reason)


def reconcile(
    judge_by: Judge,
    drift_store: DriftStore | None = None,
    tracker_runs: Sequence[OpenTrackerRuns] = (),
    now: datetime | None = None,
) -> Reconciliation:
    """Close every open run whose owner is gone: drift rows, then experiment runs."""
    now = now or datetime.now(UTC)
    sources: list[tuple[Callable[[], Sequence[OpenRun]], Closer]] = []
    if drift_store is not None:
        sources.append((drift_store.open_runs, drift_store.abandon_run))
    sources += [(runs.open_runs, _closer(runs)) for runs in tracker_runs]
    closed: list[ClosedRun] = []
    unreachable: list[str] = []
    still_open = 0
    for list_runs, close in sources:
        try:  # one store down (Mage not started yet) does not keep the others open
            for run in list_runs():
                verdict = judge(
                    run.owner,
                    run.heartbeat,
                    now,
                    judge_by.here,
                    judge_by.probe,
                    judge_by.stale_after,
                )
                if not verdict.gone:
                    still_open += 1
                elif close(run.run_id, now, verdict.reason):  # False: it ended meanwhile
                    closed.append(
                        ClosedRun(
                            run.kind, run.run_id, run.label, run.state, run.owner, verdict.reason
                        )
                    )
        except UpstreamUnavailableError as exc:
            if str(exc) not in unreachable:  # two sources on one server: said once
                logger.warning("runs not reconciled: %s", exc)
                unreachable.append(str(exc))
    if closed:
        logger.warning("closed %d run(s) whose owner is gone", len(closed))
    return Reconciliation(tuple(closed), still_open, now.isoformat(), tuple(unreachable))
