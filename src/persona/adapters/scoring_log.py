"""What the scoring service scored, written to PostgreSQL off the request path.

A request only puts references to its arrays on a bounded queue (microseconds); one
background thread per worker writes the queued batches in bulk. When the database is slow or
down the queue fills and further batches are dropped and counted — scoring never waits for
the log. Batches the database refused are kept and written again at each flush for up to
``retry_seconds`` (a PostgreSQL restart loses nothing), then dropped and counted. The monitor
pipeline reads the log back as "current" data.

One table row per scored batch, not per customer: the features travel as raw float64 bytes
and the text columns as one JSON document, because formatting every value as text (CSV or
row-wise INSERTs) costs ~10 us per row under the worker's GIL — more than scoring the row.
``read_scoring_log`` expands the batches back into one row per scored customer.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import msgspec
import numpy as np
import pandas as pd

from persona.errors import ConfigurationError, UpstreamUnavailableError

logger = logging.getLogger(__name__)

COLUMNS = (
    "batch_id",
    "scored_at",
    "model_name",
    "model_version",
    "n_rows",
    "numeric_columns",
    "numeric",
    "payload",
)


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
    # Fixed once per batch: a write retried after a lost commit acknowledgement (a server
    # restart) finds its row already there instead of logging the batch twice.
    batch_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def n_rows(self) -> int:
        return len(self.persona_id)

    def row(self) -> tuple:
        """The table row: features as float64 bytes, everything textual as one JSON document."""
        payload = {
            "customer_id": None if self.ids is None else [str(i) for i in self.ids],
            "categorical": {
                name: values.tolist()
                for name, values in zip(self.categorical_names, self.categorical, strict=True)
            },
            "persona_id": np.asarray(self.persona_id).tolist(),
            "persona_name": np.asarray(self.persona_name).tolist(),
        }
        return (
            self.batch_id,
            self.scored_at,
            self.model_name,
            self.model_version,
            self.n_rows,
            list(self.numeric_names),
            np.ascontiguousarray(self.numeric, dtype="<f8").tobytes(),
            msgspec.json.encode(payload),
        )


def _dsn(url: str) -> str:
    if not url.startswith("postgresql"):
        raise ConfigurationError(
            "PERSONA_SCORING_LOG needs PostgreSQL: set PERSONA_DATABASE_URL to a "
            f"postgresql:// URL (got {url.split(':', 1)[0]}://...)"
        )
    return url.replace("postgresql+psycopg2://", "postgresql://", 1)


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


FULL_WARNING_SECONDS = 10.0  # at most one "queue full" warning this often per worker


class ScoringLog:
    """One per Gunicorn worker: a bounded queue and a writer thread."""

    def __init__(
        self,
        url: str,
        table: str,
        *,
        max_queued_batches: int = 256,
        flush_rows: int = 20_000,
        flush_seconds: float = 1.0,
        retry_seconds: float = 10.0,
        max_pending_rows: int = 100_000,
        on_dropped: Callable[[int], None] | None = None,
    ) -> None:
        self._dsn = _dsn(url)
        self._on_dropped = on_dropped
        self.table = table
        self._queue: queue.Queue[LoggedBatch | None] = queue.Queue(maxsize=max_queued_batches)
        self._flush_rows = flush_rows
        self._flush_seconds = flush_seconds
        self._retry_seconds = retry_seconds
        self._max_pending_rows = max_pending_rows  # kept while the database is away
        self._connection = None
        self.written_rows = 0
        self.dropped_rows = 0
        self._full_rows, self._full_warned_at = 0, -FULL_WARNING_SECONDS
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
            self._dropped(batch.n_rows)
            self._full_rows += batch.n_rows
            now = time.monotonic()
            if now - self._full_warned_at >= FULL_WARNING_SECONDS:  # said, but not per request
                logger.warning(
                    "scoring log: queue full (the writer is behind): %d rows dropped since the "
                    "last warning (persona_scoring_log_dropped_rows counts them all)",
                    self._full_rows,
                )
                self._full_rows, self._full_warned_at = 0, now
            return False

    def _dropped(self, rows: int) -> None:
        """Count rows the log lost, whether the queue was full or the database refused them."""
        self.dropped_rows += rows
        if self._on_dropped is not None:
            self._on_dropped(rows)

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
        rows, deadline, failing_since = 0, None, None
        while True:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                item = self._queue.get(timeout=wait)
            except queue.Empty:
                item = ...
            if item is None:
                if not self._flush(pending):
                    self._give_up(pending, "the service stopped")
                return
            now = time.monotonic()
            if item is not ...:
                pending.append(item)
                rows += item.n_rows
                deadline = deadline or now + self._flush_seconds
            full = rows >= self._flush_rows and failing_since is None  # failing: on the clock
            if pending and (full or now >= deadline):
                if self._flush(pending):
                    pending, rows, deadline, failing_since = [], 0, None, None
                    continue
                failing_since = failing_since or now
                deadline = now + self._flush_seconds
                if now - failing_since >= self._retry_seconds:
                    self._give_up(pending, f"retried for {self._retry_seconds:g} s")
                    pending, rows, deadline, failing_since = [], 0, None, None
            while failing_since is not None and rows > self._max_pending_rows:
                oldest = pending.pop(0)
                rows -= oldest.n_rows
                self._give_up([oldest], f"over {self._max_pending_rows} rows waiting")

    def _give_up(self, batches: list[LoggedBatch], why: str) -> None:
        rows = sum(b.n_rows for b in batches)
        if rows:
            self._dropped(rows)
            logger.warning("scoring log: %d rows dropped (%s)", rows, why)

    def _connect(self):
        import psycopg2

        if self._connection is None or self._connection.closed:
            self._connection = psycopg2.connect(self._dsn, connect_timeout=5)
            self._create_table()
        return self._connection

    def _create_table(self) -> None:
        table = _identifier(self.table)
        ddl = (
            f"CREATE TABLE IF NOT EXISTS {table} (batch_id uuid PRIMARY KEY, "
            "scored_at timestamptz NOT NULL, model_name text NOT NULL, "
            "model_version text NOT NULL, n_rows integer NOT NULL, "
            "numeric_columns text[] NOT NULL, numeric bytea NOT NULL, payload bytea NOT NULL)"
        )
        index = _identifier(f"{self.table}_scored_at")
        with self._connection, self._connection.cursor() as cursor:
            # Every worker creates the table on its first flush; CREATE ... IF NOT EXISTS alone
            # races on PostgreSQL's catalogue, so the workers take turns.
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self.table,))
            cursor.execute(ddl)
            cursor.execute(f"CREATE INDEX IF NOT EXISTS {index} ON {table} (scored_at)")

    def _flush(self, batches: list[LoggedBatch]) -> bool:
        """Write ``batches`` in one transaction; False (the batches kept) when it failed."""
        if not batches:
            return True
        from psycopg2.extras import execute_values

        rows = sum(b.n_rows for b in batches)
        columns = ", ".join(COLUMNS)
        insert = (
            f"INSERT INTO {_identifier(self.table)} ({columns}) VALUES %s "
            "ON CONFLICT (batch_id) DO NOTHING"  # the retry of a write that did commit
        )
        error = None
        for _ in range(2):  # once more on a fresh connection: a server restart drops the old one
            try:
                connection = self._connect()  # first: no encoding while the database is away
                values = [batch.row() for batch in batches]
                with connection, connection.cursor() as cursor:
                    execute_values(cursor, insert, values, page_size=len(values))
                self.written_rows += rows
                return True
            except Exception as exc:  # noqa: BLE001 - the log must never take the service down
                error = exc
                if self._connection is not None:
                    self._connection.close()
        logger.warning("scoring log: %d rows not written yet: %s", rows, str(error)[:200])
        return False


def expand_batches(logged: pd.DataFrame) -> pd.DataFrame:
    """One row per scored customer from the stored batches (pure: rows of the table in)."""
    frames = []
    for batch in logged.itertuples(index=False):
        n = int(batch.n_rows)
        names = list(batch.numeric_columns)
        numeric = np.frombuffer(bytes(batch.numeric), dtype="<f8").reshape(n, len(names))
        payload = msgspec.json.decode(bytes(batch.payload))
        frame = pd.DataFrame(numeric, columns=names)
        for name, values in payload["categorical"].items():
            frame[name] = values
        frame["customer_id"] = payload["customer_id"]
        frame["persona_id"] = payload["persona_id"]
        frame["persona_name"] = payload["persona_name"]
        frame["scored_at"] = batch.scored_at
        frame["model_name"] = batch.model_name
        frame["model_version"] = batch.model_version
        frames.append(frame)
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True)


def read_scoring_log(url: str, table: str, days: float, now: datetime | None = None):
    """The rows scored in the last ``days`` days, oldest first (monitoring's current data)."""
    import psycopg2

    since = (now or datetime.now(UTC)) - timedelta(days=days)
    try:
        connection = psycopg2.connect(_dsn(url), connect_timeout=10)
    except psycopg2.OperationalError as exc:
        raise UpstreamUnavailableError(f"scoring log database: {str(exc)[:200]}") from None
    try:
        query = (
            f"SELECT {', '.join(COLUMNS)} FROM {_identifier(table)} "
            "WHERE scored_at >= %s ORDER BY scored_at"
        )
        with connection.cursor() as cursor:
            try:
                cursor.execute(query, (since,))
            except psycopg2.errors.UndefinedTable:
                return pd.DataFrame()
            batches = pd.DataFrame(cursor.fetchall(), columns=list(COLUMNS))
    finally:
        connection.close()
    return expand_batches(batches)
