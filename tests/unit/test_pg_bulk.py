"""The pure parts of PostgreSQL bulk I/O: the CSV that COPY receives and the parse of what it
sends, the merge statement, the inline SQL of a read. (On a real server:
tests/integration/test_bulk_io.py.)"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import psycopg2 as pg_psycopg2

from persona.adapters import database, pg_bulk
from persona.data.schema import DatasetSchema, NumericSpec

pytestmark = pytest.mark.unit

PREPARER = pg_bulk._plain(pg_psycopg2.dialect()).identifier_preparer


def _csv(frame: pd.DataFrame, text_columns, chunk_rows: int = 3) -> bytes:
    return b"".join(text for text, _ in pg_bulk.csv_chunks(frame, text_columns, chunk_rows))


def test_null_and_empty_text_stay_apart_and_nan_is_null():
    frame = pd.DataFrame(
        {"id": ["a", "b", "c"], "note": ["", None, 'say "hi",\nthen go'], "x": [1.5, np.nan, 2]}
    )
    assert _csv(frame, ["id", "note"]) == (
        b'"a","",1.5\n"b",,\n"c","say ""hi"",\nthen go",2\n'  # NULL unquoted, "" quoted
    )


def test_non_text_values_in_a_text_column_are_sent_as_their_str():
    """What executemany left in a text column: an int id 7 became '7', a float id '7.5'."""
    frame = pd.DataFrame({"id": [7, 8], "mixed": ["x", 3], "when": [7.5, None]})
    assert _csv(frame, ["id", "mixed", "when"]) == b'"7","x","7.5"\n"8","3",\n'


def test_chunks_cover_every_row_once_with_their_counts():
    frame = pd.DataFrame({"id": [f"C{i}" for i in range(7)], "x": range(7)})
    chunks = list(pg_bulk.csv_chunks(frame, ["id"], chunk_rows=3))
    assert [rows for _, rows in chunks] == [3, 3, 1]
    assert b"".join(text for text, _ in chunks).count(b"\n") == 7


def test_a_frame_round_trips_through_the_csv_exactly():
    """What COPY receives parses back (with the read's options) to the same values: floats bit
    for bit, NULLs as NULLs, empty texts as empty texts, newlines and quotes in values."""
    rng = np.random.default_rng(4)
    values = rng.normal(0, 1e6, 200)
    values[::17] = np.nan
    frame = pd.DataFrame(
        {
            "customer_id": [f"C{i:05d}" for i in range(200)],
            "snapshot_month": ["2026-01"] * 200,
            "income": values,
            "channel": [
                None if i % 11 == 0 else ["web", "", 'a "b"\nc'][i % 3] for i in range(200)
            ],
        }
    )
    types = {"customer_id": pa.string(), "snapshot_month": pa.string()}
    types |= {"income": pa.float64(), "channel": pa.string()}
    text = _csv(frame, ["customer_id", "snapshot_month", "channel"], chunk_rows=64)
    back = pg_bulk.frame_like_read_sql(pg_bulk.parse_csv(pa.BufferReader(text), types))
    pd.testing.assert_frame_equal(back, frame)
    assert back.channel.tolist().count("") == frame.channel.tolist().count("") > 0


def test_postgresql_special_floats_parse():
    """PostgreSQL prints float8 infinities and NaN as words."""
    types = {"x": pa.float64(), "note": pa.string()}
    table = pg_bulk.parse_csv(pa.BufferReader(b'Infinity,"NaN"\n-Infinity,\nNaN,""\n'), types)
    x = table.column("x").to_pylist()
    assert x[:2] == [math.inf, -math.inf] and math.isnan(x[2])
    assert table.column("note").to_pylist() == ["NaN", None, ""]


def test_frames_look_like_read_sql_ones():
    """pd.read_sql gives None-holding objects for text, float for an int column with NULLs and
    objects holding None for a column NULL throughout."""
    table = pa.table(
        {
            "t": pa.array(["a", None]),
            "i": pa.array([1, None], pa.int64()),
            "j": pa.array([1, 2], pa.int64()),
            "f": pa.array([None, None], pa.float64()),
        }
    )
    expected = pd.DataFrame.from_records(
        [("a", 1, 1, None), (None, None, 2, None)], columns=list("tijf"), coerce_float=True
    )
    pd.testing.assert_frame_equal(pg_bulk.frame_like_read_sql(table), expected)


@pytest.mark.parametrize(
    ("column_type", "arrow"),
    [
        (sa.Float(), pa.float64()),
        (sa.Numeric(10, 2), pa.float64()),
        (sa.BigInteger(), pa.int64()),
        (sa.String(64), pa.string()),
        (sa.Text(), pa.string()),
        (sa.Date(), None),
        (sa.Boolean(), None),
    ],
)
def test_column_types_that_copy_reads(column_type, arrow):
    assert pg_bulk.arrow_type(column_type) == arrow


def test_merge_updates_every_column_but_the_key_where_a_value_differs():
    sql = pg_bulk.merge_sql(PREPARER, "customers", ["customer_id", "snapshot_month", "Age"], KEY)
    assert sql == (
        'INSERT INTO customers (customer_id, snapshot_month, "Age") SELECT customer_id, '
        'snapshot_month, "Age" FROM persona_staging ON CONFLICT (customer_id, snapshot_month) '
        'DO UPDATE SET "Age" = EXCLUDED."Age" '
        'WHERE ROW(customers."Age") IS DISTINCT FROM ROW(EXCLUDED."Age")'
    )
    only_key = pg_bulk.merge_sql(PREPARER, "t", KEY, KEY)
    assert only_key.endswith("ON CONFLICT (customer_id, snapshot_month) DO NOTHING")


KEY = ["customer_id", "snapshot_month"]
SCHEMA = DatasetSchema(id_column="customer_id", numeric={"income": NumericSpec()}, categorical={})


def test_a_read_is_one_inline_statement_with_values_quoted_once():
    table = sa.Table(
        "customers",
        sa.MetaData(),
        sa.Column("customer_id", sa.String(64)),
        sa.Column("snapshot_month", sa.String(64)),
        sa.Column("100% income", sa.Float),
    )
    query = database.months_query(table, SCHEMA, ["2026-01", "it's 5%"])
    sql = pg_bulk._sql_text(query, pg_psycopg2.dialect())
    assert "IN ('2026-01', 'it''s 5%')" in sql and '"100% income"' in sql and "%%" not in sql
    assert sql.endswith("ORDER BY customers.snapshot_month, customers.customer_id")


def test_a_table_without_a_month_column_reads_by_id_and_refuses_months():
    table = sa.Table(
        "t", sa.MetaData(), sa.Column("customer_id", sa.String), sa.Column("x", sa.Float)
    )
    sql = str(database.months_query(table, SCHEMA, None))
    assert sql.endswith("ORDER BY t.customer_id")
    with pytest.raises(database.InvalidInputError, match="no month column 'snapshot_month'"):
        database.months_query(table, SCHEMA, ["2026-01"])


def test_the_copy_stream_reports_each_chunk_once_it_is_sent():
    heard: list[int] = []
    stream = pg_bulk._ChunkStream(iter([(b"a\n", 1), (b"b\nc\n", 2)]), heard.append)
    assert stream.read(8) == b"a\n" and heard == []
    assert stream.read(8) == b"b\nc\n" and heard == [1]
    assert stream.read(8) == b"" and heard == [1, 2]
