"""The ingest and score jobs' own records: who ran which job, how far it got, how it ended.

Their data is safe by construction (each month is its own transaction), so a killed job leaves
whole months only; what it does not leave by itself is a trace. Each job writes one row here as
it starts (its owner, ``persona.monitoring.owners``), a heartbeat with each committed month,
and its end; reconciliation closes a row whose owner is gone as ``abandoned``, saying what was
committed, and ``persona runs reconcile`` prints it.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import cached_property

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from persona.adapters.database import make_engine
from persona.adapters.upstream import short_reason
from persona.errors import UpstreamUnavailableError
from persona.ports import OpenRun

logger = logging.getLogger(__name__)

TABLE = "job_runs"
RUNNING, COMPLETED, FAILED, ABANDONED = "running", "completed", "failed", "abandoned"

_metadata = sa.MetaData()
job_runs = sa.Table(
    TABLE,
    _metadata,
    sa.Column("run_id", sa.String(36), primary_key=True),
    sa.Column("kind", sa.Text, nullable=False),  # ingest, score
    sa.Column("label", sa.Text, nullable=False),  # the file or table it read, the target
    sa.Column("owner", sa.Text),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("heartbeat_at", sa.DateTime(timezone=True)),
    sa.Column("ended_at", sa.DateTime(timezone=True)),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("detail", sa.Text),  # progress while it runs (committed months), why it ended
)


class JobRuns:
    """The ``OpenTrackerRuns`` port over ``job_runs``, and the way a job records itself."""

    def __init__(self, url: str) -> None:
        self.url = url

    @cached_property
    def engine(self) -> sa.Engine:
        return make_engine(self.url)

    def _execute(self, statement: sa.Executable) -> sa.CursorResult:
        try:
            _metadata.create_all(self.engine, checkfirst=True)
            with self.engine.begin() as connection:
                return connection.execute(statement)
        except SQLAlchemyError as exc:
            raise UpstreamUnavailableError(f"job records: {short_reason(exc)}") from None

    @contextlib.contextmanager
    def track(self, kind: str, label: str, owner: str) -> Iterator[JobRun]:
        """Record the job while the block runs: started, each progress note, then completed
        or failed (with the error's first line). A job whose records cannot be written still
        runs: its data does not depend on them."""
        run = JobRun(self, str(uuid.uuid4()))
        now = datetime.now(UTC)
        run.recorded = self._quietly(
            job_runs.insert().values(
                run_id=run.run_id,
                kind=kind,
                label=label[:500],
                owner=owner,
                started_at=now,
                heartbeat_at=now,
                state=RUNNING,
            )
        )
        try:
            yield run
        except BaseException as exc:
            run.end(FAILED, (str(exc).splitlines() or [type(exc).__name__])[0])
            raise
        run.end(COMPLETED, run.detail)

    def _quietly(self, statement: sa.Executable) -> bool:
        try:
            self._execute(statement)
        except UpstreamUnavailableError as exc:
            logger.warning("%s (the job goes on without its record)", exc)
            return False
        return True

    def open_runs(self) -> list[OpenRun]:
        query = sa.select(job_runs).where(job_runs.c.state == RUNNING)
        return [
            OpenRun(
                kind=f"{row.kind}_job",
                run_id=row.run_id,
                owner=row.owner,
                heartbeat=row.heartbeat_at,
                label=row.label,
                state=f"running; {row.detail or 'nothing committed'}",
            )
            for row in self._execute(query)
        ]

    def close_run(self, run_id: str, reason: str) -> bool:
        statement = (
            job_runs.update()
            .where(job_runs.c.run_id == run_id, job_runs.c.state == RUNNING)
            .values(
                state=ABANDONED,
                ended_at=datetime.now(UTC),
                detail=sa.func.coalesce(job_runs.c.detail, "nothing committed")
                + f"; abandoned: {reason[:500]}; a rerun is safe",
            )
        )
        return self._execute(statement).rowcount == 1


class JobRun:
    """One job's record: ``progress`` notes what is committed so far (and is its heartbeat)."""

    def __init__(self, runs: JobRuns, run_id: str) -> None:
        self.runs, self.run_id = runs, run_id
        self.detail: str | None = None
        self.recorded = False

    def progress(self, detail: str) -> None:
        self.detail = detail
        if self.recorded:
            self.runs._quietly(
                job_runs.update()
                .where(job_runs.c.run_id == self.run_id)
                .values(detail=detail[:2000], heartbeat_at=datetime.now(UTC))
            )

    def end(self, state: str, detail: str | None) -> None:
        if self.recorded:
            self.runs._quietly(
                job_runs.update()
                .where(job_runs.c.run_id == self.run_id)
                .values(
                    state=state, detail=(detail or "")[:2000] or None, ended_at=datetime.now(UTC)
                )
            )
