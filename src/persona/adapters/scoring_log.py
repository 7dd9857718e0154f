"""What the scoring service scored, written to PostgreSQL off the request path.

A request only puts references to its arrays on a bounded queue (microseconds); one
background thread per worker turns queued batches into CSV and COPYs them in bulk. When the
database is slow or down the queue fills and further batches are dropped and counted —
scoring never waits for the log. The monitor pipeline reads the log back as "current" data.
"""

from __future__ import annotations

import atexit
import io
import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from persona.errors import ConfigurationError, UpstreamUnavailableError

logger = logging.getLogger(__name__)

META_COLUMNS = ("scored_at", "model_name", "model_version", "customer_id")
RESULT_COLUMNS = ("persona_id", "persona_name")


@dataclass(frozen=True)
class LoggedBatch:
    scored_at: datetime
    model_name: str
    model_version: str
    ids: list | None
    numeric_names: tuple[str, ...]
    numeric: np.ndarray
    categorical_names: tuple[str, ...]
    categorical: list[np.ndarray]
    persona_id: np.ndarray
    persona_name: np.ndarray

    @property
    def n_rows(self) -> int:
        return len(self.persona_id)


def _dsn(url: str) -> str:
    if not url.startswith("postgresql"):
        raise ConfigurationError(
            "PERSONA_SCORING_LOG needs PostgreSQL: set PERSONA_DATABASE_URL to a "
            f"postgresql:// URL (got {url.split(':', 1)[0]}://...)"
        )
    return url.replace("postgresql+psycopg2://", "postgresql://", 1)


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class ScoringLog:
    """One per Gunicorn worker: a bounded queue and a writer thread."""

    def __init__(
        self,
        url: str,
        table: str,
        numeric: Sequence[str],
        categorical: Sequence[str],
        *,
        max_queued_batches: int = 256,
        flush_rows: int = 20_000,
        flush_seconds: float = 1.0,
    ) -> None:
        self._dsn = _dsn(url)
        self.table = table
        self.numeric = tuple(numeric)
        self.categorical = tuple(categorical)
        self.columns = (*META_COLUMNS, *self.numeric, *self.categorical, *RESULT_COLUMNS)
        self._queue: queue.Queue[LoggedBatch | None] = queue.Queue(maxsize=max_queued_batches)
        self._flush_rows = flush_rows
        self._flush_seconds = flush_seconds
        self._connection = None
        self.written_rows = 0
        self.dropped_rows = 0
        self._thread = threading.Thread(target=self._run, name="scoring-log", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    # -- request side -----------------------------------------------------------------------
    def submit(self, batch: LoggedBatch) -> bool:
        """Queue a scored batch; False (and counted as dropped) when the writer is behind."""
        try:
            self._queue.put_nowait(batch)
            return True
        except queue.Full:
            self.dropped_rows += batch.n_rows
            return False

    # -- writer side ------------------------------------------------------------------------
    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop (worker exit)."""
        if not self._thread.is_alive():
            return
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            logger.warning("scoring log: queue full at shutdown; queued batches are lost")
            return
        self._thread.join(timeout)

    def _run(self) -> None:
        pending: list[LoggedBatch] = []
        rows, deadline = 0, None
        while True:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                item = self._queue.get(timeout=wait)
            except queue.Empty:
                item = ...
            if item is None:
                self._flush(pending)
                return
            if item is not ...:
                pending.append(item)
                rows += item.n_rows
                deadline = deadline or time.monotonic() + self._flush_seconds
            if pending and (rows >= self._flush_rows or time.monotonic() >= deadline):
                self._flush(pending)
                pending, rows, deadline = [], 0, None

    def _frame(self, batches: list[LoggedBatch]) -> pd.DataFrame:
        parts = []
        for batch in batches:
            part = pd.DataFrame(batch.numeric, columns=list(batch.numeric_names))
            for name, values in zip(batch.categorical_names, batch.categorical, strict=True):
                part[name] = values
            part["scored_at"] = batch.scored_at.isoformat()
            part["model_name"] = batch.model_name
            part["model_version"] = batch.model_version
            part["customer_id"] = None if batch.ids is None else [str(i) for i in batch.ids]
            part["persona_id"] = batch.persona_id
            part["persona_name"] = batch.persona_name
            parts.append(part)
        return pd.concat(parts, ignore_index=True)[list(self.columns)]

    def _connect(self):
        import psycopg2

        if self._connection is None or self._connection.closed:
            self._connection = psycopg2.connect(self._dsn, connect_timeout=5)
            self._create_table()
        return self._connection

    def _create_table(self) -> None:
        numeric = [f"{_identifier(c)} double precision" for c in self.numeric]
        text = [f"{_identifier(c)} text" for c in self.categorical]
        table = _identifier(self.table)
        ddl = (
            f"CREATE TABLE IF NOT EXISTS {table} (scored_at timestamptz NOT NULL, "
            "model_name text NOT NULL, model_version text NOT NULL, customer_id text, "
            + ", ".join([*numeric, *text])
            + ", persona_id integer NOT NULL, persona_name text NOT NULL)"
        )
        index = _identifier(f"{self.table}_scored_at")
        with self._connection, self._connection.cursor() as cursor:
            # Every worker creates the table on its first flush; CREATE ... IF NOT EXISTS alone
            # races on PostgreSQL's catalogue, so the workers take turns.
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self.table,))
            cursor.execute(ddl)
            cursor.execute(f"CREATE INDEX IF NOT EXISTS {index} ON {table} (scored_at)")

    def _flush(self, batches: list[LoggedBatch]) -> None:
        if not batches:
            return
        rows = sum(b.n_rows for b in batches)
        columns = ", ".join(_identifier(c) for c in self.columns)
        copy = f"COPY {_identifier(self.table)} ({columns}) FROM STDIN WITH (FORMAT csv)"
        error = None
        for _ in range(2):  # once more on a fresh connection: a server restart drops the old one
            try:
                text = self._frame(batches).to_csv(index=False, header=False)
                connection = self._connect()
                with connection, connection.cursor() as cursor:
                    cursor.copy_expert(copy, io.StringIO(text))
                self.written_rows += rows
                return
            except Exception as exc:  # noqa: BLE001 - the log must never take the service down
                error = exc
                if self._connection is not None:
                    self._connection.close()
        self.dropped_rows += rows
        logger.warning("scoring log: %d rows not written: %s", rows, str(error)[:200])


def read_scoring_log(url: str, table: str, days: float, now: datetime | None = None):
    """The rows scored in the last ``days`` days, oldest first (monitoring's current data)."""
    import psycopg2

    since = (now or datetime.now(UTC)) - timedelta(days=days)
    try:
        connection = psycopg2.connect(_dsn(url), connect_timeout=10)
    except psycopg2.OperationalError as exc:
        raise UpstreamUnavailableError(f"scoring log database: {str(exc)[:200]}") from None
    try:
        query = f"SELECT * FROM {_identifier(table)} WHERE scored_at >= %s ORDER BY scored_at"
        with connection.cursor() as cursor:
            try:
                cursor.execute(query, (since,))
            except psycopg2.errors.UndefinedTable:
                return pd.DataFrame()
            names = [d[0] for d in cursor.description]
            return pd.DataFrame(cursor.fetchall(), columns=names)
    finally:
        connection.close()
