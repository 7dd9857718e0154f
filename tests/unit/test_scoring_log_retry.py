"""The scoring log's retry after a restart of its database never logs a batch twice.

A server restart can end the connection after the INSERT committed but before the client saw
the commit; the writer then retries on a fresh connection. The retry must find the batch
already stored (same batch id, ``ON CONFLICT DO NOTHING``), or monitoring reads its rows twice
and the log holds more rows than the API answered.
"""

from __future__ import annotations

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
