"""The scoring log rides out a restart of its database: nothing twice, nothing silently lost.

A server restart can end the connection after the INSERT committed but before the client saw
the commit; the writer then retries on a fresh connection. The retry must find the batch
already stored (same batch id, ``ON CONFLICT DO NOTHING``), or monitoring reads its rows twice
and the log holds more rows than the API answered. Batches refused while the server restarts
are kept and written at a later flush; past the retry window or the row cap they are dropped
and counted.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import numpy as np
import psycopg2
import psycopg2.extras
import pytest

from persona.adapters.scoring_log import LoggedBatch, ScoringLog


class _Table:
    """A table keyed by batch id, honouring ``ON CONFLICT (batch_id) DO NOTHING``."""

    def __init__(self) -> None:
        self.rows: list[tuple] = []

    def insert(self, statement: str, values: list[tuple]) -> None:
        stored = {row[0] for row in self.rows}
        skip_conflicts = "ON CONFLICT (batch_id) DO NOTHING" in statement
        for row in values:
            if row[0] in stored and skip_conflicts:
                continue
            self.rows.append(row)  # no skip: the row goes in twice, as a fresh uuid would


class _Connection:
    closed = 0

    def __enter__(self) -> _Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def cursor(self) -> _Connection:
        return self

    def close(self) -> None:
        self.closed = 1


def _batch(rows: int) -> LoggedBatch:
    return LoggedBatch(
        datetime(2026, 4, 1, 8, tzinfo=UTC),
        "persona",
        "1",
        [f"C{i}" for i in range(rows)],
        ("age",),
        np.arange(rows, dtype=float).reshape(rows, 1),
        (),
        [],
        np.zeros(rows, dtype=int),
        np.array(["A"] * rows, dtype=object),
    )


@pytest.fixture
def log(monkeypatch):
    log = ScoringLog("postgresql://nowhere/scoring", "scoring_log")
    monkeypatch.setattr(log, "_connect", lambda: _Connection())
    yield log
    log.close()


def test_a_write_whose_commit_was_not_acknowledged_is_not_logged_twice(log, monkeypatch):
    table, attempts = _Table(), []

    def commit_then_lose_the_answer(cursor, statement, values, page_size):
        attempts.append([row[0] for row in values])
        table.insert(statement, values)
        if len(attempts) == 1:
            raise psycopg2.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(psycopg2.extras, "execute_values", commit_then_lose_the_answer)
    batches = [_batch(3), _batch(2)]

    log._flush(batches)

    assert len(attempts) == 2 and attempts[0] == attempts[1]  # the same batch ids retried
    assert sorted(row[0] for row in table.rows) == sorted(b.batch_id for b in batches)
    assert log.written_rows == 5 and log.dropped_rows == 0


def test_a_batch_keeps_its_id_and_two_batches_differ():
    first, second = _batch(1), _batch(1)
    assert first.row()[0] == first.row()[0] == first.batch_id
    assert first.batch_id != second.batch_id


def _wait(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _writer(monkeypatch, failures: int, **options) -> tuple[ScoringLog, _Table, list[int]]:
    """A log whose database refuses the first ``failures`` writes (a restart), then stores."""
    table, dropped, attempts = _Table(), [], []

    def execute_values(cursor, statement, values, page_size):
        attempts.append(len(values))
        if len(attempts) <= failures:
            raise psycopg2.OperationalError("FATAL:  the database system is starting up")
        table.insert(statement, values)

    monkeypatch.setattr(psycopg2.extras, "execute_values", execute_values)
    log = ScoringLog(
        "postgresql://nowhere/scoring",
        "scoring_log",
        flush_seconds=0.01,
        on_dropped=dropped.append,
        **options,
    )
    monkeypatch.setattr(log, "_connect", lambda: _Connection())
    return log, table, dropped


def test_batches_refused_during_a_restart_are_written_at_a_later_flush(monkeypatch):
    log, table, dropped = _writer(monkeypatch, failures=5, retry_seconds=60)
    batches = [_batch(3), _batch(2), _batch(4)]
    for batch in batches:
        assert log.submit(batch)
    _wait(lambda: log.written_rows == 9)
    log.close()
    assert sorted(row[0] for row in table.rows) == sorted(b.batch_id for b in batches)
    assert log.dropped_rows == 0 and dropped == []


def test_batches_refused_past_the_retry_window_are_dropped_and_counted(monkeypatch):
    log, table, dropped = _writer(monkeypatch, failures=10**9, retry_seconds=0.05)
    for batch in (_batch(3), _batch(2)):
        assert log.submit(batch)
    _wait(lambda: log.dropped_rows == 5)
    log.close()
    assert table.rows == [] and sum(dropped) == 5 and log.written_rows == 0


def test_while_the_database_is_away_the_oldest_rows_beyond_the_cap_are_dropped(monkeypatch):
    log, table, dropped = _writer(monkeypatch, failures=10**9, max_pending_rows=5)
    for batch in (_batch(3), _batch(3), _batch(3)):
        assert log.submit(batch)
    _wait(lambda: log.dropped_rows == 6)  # 9 rows waiting, the cap 5: the two oldest batches
    log.close()  # the service stops with the database still away: the last batch is counted
    assert table.rows == [] and dropped == [3, 3, 3] and log.dropped_rows == 9


def test_a_full_queue_drops_counts_and_says_so_once_not_per_request(monkeypatch, caplog):
    writing, release, dropped = threading.Event(), threading.Event(), []

    def slow_database(cursor, statement, values, page_size):
        writing.set()
        release.wait(10)

    monkeypatch.setattr(psycopg2.extras, "execute_values", slow_database)
    log = ScoringLog(
        "postgresql://nowhere/scoring",
        "scoring_log",
        max_queued_batches=1,
        flush_seconds=0.01,
        on_dropped=dropped.append,
    )
    monkeypatch.setattr(log, "_connect", lambda: _Connection())
    assert log.submit(_batch(1))
    _wait(writing.is_set)  # the writer is stuck in the database with the first batch
    assert log.submit(_batch(2))  # queued
    assert not log.submit(_batch(3)) and not log.submit(_batch(4))
    release.set()
    log.close()
    assert dropped == [3, 4]
    warnings = [r.getMessage() for r in caplog.records if "queue full" in r.getMessage()]
    assert len(warnings) == 1 and "3 rows dropped" in warnings[0]
