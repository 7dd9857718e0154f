"""Mage's pipeline runs left ``running`` by a killed worker, read and closed in Mage's database.

Mage binds its database at import time, so this reads its ``pipeline_run`` and ``block_run``
tables with SQLAlchemy Core instead (reflected: Mage owns and migrates them). A headless run
(``persona.orchestration.mage_runner``) records its worker as owner in the run's ``metrics``;
a run the Mage server started has none and is judged by its heartbeat, the newest
``updated_at`` of the run and its blocks. Mage stores statuses by enum name (``RUNNING``);
either case is read, and a closed run is written in the case it was found in. On PostgreSQL
the status columns are enum types, which refuse a label they lack (``'running'``) even in a
comparison, so statuses are compared as text.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from persona.errors import UpstreamUnavailableError
from persona.ports import OpenRun

logger = logging.getLogger(__name__)

OWNER_KEY = "persona_owner"  # in pipeline_run.metrics
ABANDONED_KEY = "persona_abandoned_reason"
RUNNING = ("running", "RUNNING")
OPEN_BLOCKS = ("running", "RUNNING", "queued", "QUEUED")


class MageRuns:
    """The ``OpenTrackerRuns`` port over Mage's database (SQLite or PostgreSQL)."""

    def __init__(self, url: str) -> None:
        self.url = url

    @cached_property
    def engine(self) -> sa.Engine:
        return sa.create_engine(self.url, pool_pre_ping=True)

    def _tables(self) -> tuple[sa.Table, sa.Table] | None:
        """Mage's two tables, or None when Mage has not created its database yet."""
        if self.url.startswith("sqlite:///") and not Path(self.url[len("sqlite:///") :]).exists():
            return None  # reading must not create an empty database file
        metadata = sa.MetaData()
        try:
            if not sa.inspect(self.engine).has_table("pipeline_run"):
                return None
            runs = sa.Table("pipeline_run", metadata, autoload_with=self.engine)
            blocks = sa.Table("block_run", metadata, autoload_with=self.engine)
        except SQLAlchemyError as exc:
            raise UpstreamUnavailableError(f"Mage database: {str(exc)[:200]}") from None
        return runs, blocks

    def open_runs(self) -> list[OpenRun]:
        tables = self._tables()
        if tables is None:
            return []
        runs, blocks = tables
        try:
            with self.engine.connect() as connection:
                found = connection.execute(
                    sa.select(runs).where(_status(runs).in_(RUNNING)).order_by(runs.c.id)
                ).all()
                beats: dict[int, datetime] = {}
                if found:
                    latest = (
                        sa.select(blocks.c.pipeline_run_id, sa.func.max(blocks.c.updated_at))
                        .where(blocks.c.pipeline_run_id.in_([row.id for row in found]))
                        .group_by(blocks.c.pipeline_run_id)
                    )
                    beats = {row[0]: row[1] for row in connection.execute(latest)}
        except SQLAlchemyError as exc:
            raise UpstreamUnavailableError(f"Mage database: {str(exc)[:200]}") from None
        return [
            OpenRun(
                kind="mage_run",
                run_id=str(row.id),
                owner=_metrics(row.metrics).get(OWNER_KEY),
                heartbeat=_newest(row.updated_at, beats.get(row.id)),
                label=f"pipeline {row.pipeline_uuid}, run {row.id}",
                state=str(row.status),
            )
            for row in found
        ]

    def close_run(self, run_id: str, reason: str) -> bool:
        """The run and its running blocks become failed, with why in the run's metrics."""
        tables = self._tables()
        if tables is None:
            return False
        runs, blocks = tables
        now = datetime.now(UTC)
        try:
            with self.engine.begin() as connection:
                row = connection.execute(
                    sa.select(runs.c.status, runs.c.metrics).where(
                        runs.c.id == int(run_id), _status(runs).in_(RUNNING)
                    )
                ).first()
                if row is None:
                    return False
                failed = "FAILED" if str(row.status).isupper() else "failed"
                metrics = {**_metrics(row.metrics), ABANDONED_KEY: reason[:500]}
                connection.execute(
                    runs.update()
                    .where(runs.c.id == int(run_id))
                    .values(status=failed, completed_at=now, metrics=metrics)
                )
                connection.execute(
                    blocks.update()
                    .where(
                        blocks.c.pipeline_run_id == int(run_id), _status(blocks).in_(OPEN_BLOCKS)
                    )
                    .values(status=failed, completed_at=now)
                )
        except SQLAlchemyError as exc:
            raise UpstreamUnavailableError(f"Mage database: {str(exc)[:200]}") from None
        logger.warning("Mage pipeline run %s failed: %s", run_id, reason)
        return True


def _status(table: sa.Table) -> sa.ColumnElement[str]:
    """The table's status as text: a PostgreSQL enum compared with a label it lacks fails."""
    return sa.cast(table.c.status, sa.Text)


def _metrics(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return dict(value) if isinstance(value, dict) else {}


def _newest(*values: datetime | None) -> datetime | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None
