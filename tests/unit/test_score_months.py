"""Scoring the customers table in process (``persona score --engine local`` without --file), on
SQLite with a model in memory: a month in memory at a time, scored rows spooled by month, each
month merged in its own transaction, nothing kept under reject."""

from __future__ import annotations

import argparse

import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa
from memory_source import CATALOGUE, ROOT, tiny_model
from test_score_stream import served, synthetic_rows

from persona import cli_score
from persona.adapters import database
from persona.errors import InvalidInputError
from persona.flows.score_months import MonthSpool, month_parts
from persona.flows.score_stream import TEXT_LEVELS
from persona.settings import load_settings

pytestmark = pytest.mark.unit

SCHEMA = CATALOGUE.schema
MONTH = SCHEMA.month_column


def test_spooled_months_come_back_with_their_month_and_only_scored_rows(tmp_path):
    schema = pa.schema(
        [
            ("customer_id", pa.string()),
            (MONTH, TEXT_LEVELS),
            ("persona_id", pa.int64()),
            ("problems", pa.string()),
        ]
    )
    months = ["2026-02", "2026-01", "2026-02", "odd/month 3"]
    table = pa.table(
        {
            "customer_id": ["a", "b", "c", "d"],
            MONTH: pa.array(months).dictionary_encode(),
            "persona_id": pa.array([1, 2, None, 4], pa.int64()),
            "problems": [None, None, "age: >= 18", None],
        },
        schema=schema,
    )
    with MonthSpool(tmp_path, MONTH, schema) as spool:
        spool.write(table.slice(0, 2))
        spool.write(table.slice(2))
    parts = {
        month: pa.concat_tables(chunks).to_pydict()
        for month, chunks in month_parts(tmp_path, MONTH, rows=1)
    }
    assert list(parts) == ["2026-01", "2026-02", "odd/month 3"]
    assert parts["2026-02"] == {"customer_id": ["a"], MONTH: ["2026-02"], "persona_id": [1]}
    assert parts["odd/month 3"]["customer_id"] == ["d"]


@pytest.fixture
def project(tmp_path, monkeypatch):
    """Settings on a SQLite project database holding two months of customers, and the
    served model in memory standing in for the registry's production version."""
    settings = load_settings(
        environ={},
        overrides={"home": tmp_path, "schema_path": ROOT / "00_create_data/schema.yaml"},
    )
    engine = database.make_engine(settings.project_database_url)
    rows = pd.concat([synthetic_rows(120, 1, "2026-01"), synthetic_rows(90, 2, "2026-02")])
    database.upsert_frame(engine, settings.customers_table, rows, SCHEMA)
    model = served(tiny_model(), SCHEMA)
    monkeypatch.setattr(cli_score, "production_model", lambda *args: model)
    read = []  # (month, rows) of each batch read
    real_read = database.read_month_batches

    def read_month_batches(*args):
        for batch in real_read(*args):
            read.append((args[3], batch.num_rows))
            yield batch

    monkeypatch.setattr(database, "read_month_batches", read_month_batches)
    return settings, engine, rows, read


def score_table(settings, on_invalid="reject", month=None):
    args = argparse.Namespace(
        file=None, out=None, chunk_rows=50, on_invalid=on_invalid, month=month
    )
    return cli_score._score_local(args, settings)


def test_the_table_is_read_a_month_at_a_time_and_merged_month_by_month(project):
    settings, engine, rows, read = project
    for _ in range(2):  # a rerun updates the same rows
        summary = score_table(settings)
        assert (summary["scored_rows"], summary["table_rows"]) == (210, 210)
        assert summary["months"] == ["2026-01", "2026-02"]
    # month by month, oldest first, in batches of --chunk-rows: never the whole table
    once = [("2026-01", 50), ("2026-01", 50), ("2026-01", 20), ("2026-02", 50), ("2026-02", 40)]
    assert read == once * 2
    stored = database.read_months(engine, settings.scores_table, SCHEMA)
    assert stored.groupby(MONTH).size().to_dict() == {"2026-01": 120, "2026-02": 90}
    assert not list((settings.home / "scratch").iterdir())
    assert score_table(settings, month="2026-02")["months"] == ["2026-02"]


def test_reject_keeps_nothing_when_a_later_month_has_a_bad_row(project):
    settings, engine, rows, read = project
    bad = rows[rows[MONTH] == "2026-02"].head(1).assign(age=-500)
    database.upsert_frame(engine, settings.customers_table, bad, SCHEMA)
    with pytest.raises(InvalidInputError, match="age"):
        score_table(settings)
    assert not sa.inspect(engine).has_table(settings.scores_table)  # nothing was written
    assert not list((settings.home / "scratch").iterdir())
    summary = score_table(settings, on_invalid="flag")
    assert (summary["failed_rows"], summary["table_rows"]) == (1, 209)
