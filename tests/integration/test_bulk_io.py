"""Bulk I/O on a real PostgreSQL: COPY writes leave what row-by-row upserts left, streamed reads
give what ``pd.read_sql`` gave, a month lost mid-COPY is rolled back whole."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa
from conftest import sessions_in_state

from persona.adapters import database, pg_bulk
from persona.data.schema import DatasetSchema, NumericSpec
from persona.errors import PartialWriteError

SCHEMA = DatasetSchema(
    id_column="cust no",
    month_column="period",
    numeric={"income": NumericSpec(), "visits": NumericSpec(integer=True)},
    categorical={"Channel": None},
    passthrough=("note",),
)
MONTHS = ("2026-01", "2026-02")


def messy(rows: int = 300, seed: int = 5) -> pd.DataFrame:
    """Two months of a table nobody generated here: text ids that look like numbers (leading
    zeros), NULL and NaN, empty texts, quotes, commas and newlines in text, a column that is
    NULL throughout, integers with and without NULLs."""
    rng = np.random.default_rng(seed)
    income = rng.normal(50_000, 20_000, rows)
    income[::13] = np.nan
    channel = rng.choice(["web", "store", "", 'call "back", later\nplease'], rows).astype(object)
    channel[::7] = None
    frame = pd.DataFrame(
        {
            "cust no": [f"{i:06d}" for i in range(rows)],
            "income": income,
            "visits": rng.integers(0, 40, rows),
            "Channel": channel,
            "note": [None] * rows,
        }
    )
    return pd.concat([frame.assign(period=m) for m in MONTHS], ignore_index=True)


def stored(engine: sa.Engine, table: str) -> pd.DataFrame:
    with engine.connect() as connection:
        return pd.read_sql(f'SELECT * FROM "{table}" ORDER BY period, "cust no"', connection)


def columns(engine: sa.Engine, table: str) -> list[tuple[str, str, bool]]:
    return [
        (c["name"], str(c["type"]), c["nullable"]) for c in sa.inspect(engine).get_columns(table)
    ]


@pytest.fixture
def engine(pg_url) -> sa.Engine:
    engine = database.make_engine(pg_url)
    yield engine
    engine.dispose()


def test_copy_leaves_the_same_table_and_rows_as_row_by_row_upserts(engine):
    frame = messy()
    assert database.upsert_frame(engine, "by_copy", frame, SCHEMA, copy=True) == len(frame)
    database.upsert_frame(engine, "by_rows", frame, SCHEMA, copy=False)
    assert columns(engine, "by_copy") == columns(engine, "by_rows")
    pd.testing.assert_frame_equal(stored(engine, "by_copy"), stored(engine, "by_rows"))
    copied = stored(engine, "by_copy")
    assert copied["Channel"].isna().sum() == frame["Channel"].isna().sum() > 0  # NULL stays NULL
    assert (copied["Channel"] == "").sum() == (frame["Channel"] == "").sum() > 0  # "" stays ""
    assert copied["cust no"].iloc[0] == "000000" and copied.note.isna().all()


def test_re_ingesting_a_month_changes_values_not_the_row_count(engine):
    frame = messy()
    database.upsert_frame(engine, "customers", frame, SCHEMA)
    changed = frame.copy()
    changed.loc[0, "income"] = 123.0
    changed.loc[1, "income"] = np.nan  # a value that became unknown is NULL again
    changed.loc[2, "Channel"] = "changed"
    for _ in range(2):
        database.upsert_frame(engine, "customers", changed, SCHEMA)
        assert database.count_rows(engine, "customers") == len(frame)
    after = stored(engine, "customers").set_index(["period", "cust no"])
    first = ("2026-01", "000000"), ("2026-01", "000001"), ("2026-01", "000002")
    assert after.loc[first[0], "income"] == 123.0 and np.isnan(after.loc[first[1], "income"])
    assert after.loc[first[2], "Channel"] == "changed"


def test_a_key_repeated_in_the_frame_keeps_its_last_row_as_before(engine):
    frame = messy(20)
    repeated = pd.concat([frame, frame.iloc[[3]].assign(income=-1.0)], ignore_index=True)
    database.upsert_frame(engine, "by_copy", repeated, SCHEMA, copy=True)
    database.upsert_frame(engine, "by_rows", repeated, SCHEMA, copy=False)
    pd.testing.assert_frame_equal(stored(engine, "by_copy"), stored(engine, "by_rows"))
    assert database.count_rows(engine, "by_copy") == len(frame)
    assert (stored(engine, "by_copy").income == -1.0).sum() == 1


def work_mem(engine: sa.Engine) -> str:
    with engine.connect() as connection:
        return connection.exec_driver_sql("SHOW work_mem").scalar_one()


def test_streamed_reads_equal_read_sql_in_columns_values_and_dtypes(engine):
    database.upsert_frame(engine, "customers", messy(), SCHEMA)
    default_work_mem = work_mem(engine)
    for months in (None, ["2026-02"], ["2026-01", "2026-02"]):
        streamed = database.read_months(engine, "customers", SCHEMA, months, copy=True)
        read_sql = database.read_months(engine, "customers", SCHEMA, months, copy=False)
        pd.testing.assert_frame_equal(streamed, read_sql)
    assert streamed["note"].dtype == object and streamed["note"].isna().all()
    assert {type(name) for name in streamed.columns} == {str}
    assert work_mem(engine) == default_work_mem != pg_bulk.READ_WORK_MEM  # the read's own
    with pytest.raises(database.InvalidInputError, match=r"no rows in 'customers'"):
        database.read_months(engine, "customers", SCHEMA, ["2031-01"], copy=True)


def test_a_month_streams_in_batches_equal_to_the_whole_read_and_a_stop_ends_the_copy(
    engine, pg_url, monkeypatch
):
    monkeypatch.setattr(pg_bulk, "CSV_BLOCK_BYTES", 256 << 10)
    big = pd.concat([messy(40_000, seed) for seed in (1, 2)], ignore_index=True)
    big["cust no"] = [f"{i:07d}" for i in range(len(big))]
    database.upsert_frame(engine, "customers", big, SCHEMA)
    wanted = ["cust no", "period", "income", "Channel"]
    batches = list(database.read_month_batches(engine, "customers", SCHEMA, "2026-02", 50, wanted))
    assert len(batches) > 1  # parsed as it streams in, not as one table
    # in blocks, not in the pipe's 64 KiB reads (~1,000 rows each)
    assert min(batch.num_rows for batch in batches[:-1]) > 3_000
    streamed = pa.Table.from_batches(batches).to_pandas()
    whole = database.read_months(engine, "customers", SCHEMA, ["2026-02"], copy=False)
    assert streamed.columns.tolist() == wanted
    pd.testing.assert_frame_equal(streamed, whole[wanted].reset_index(drop=True))

    reader = database.read_month_batches(engine, "customers", SCHEMA, "2026-01", 50)
    next(reader)
    reader.close()  # a consumer that stops: the COPY ends, its session is not left open
    assert sessions_in_state(pg_url, "active") == 0
    assert sessions_in_state(pg_url) == 0
    on_sqlite = database.make_engine("sqlite://")
    database.upsert_frame(on_sqlite, "customers", big.head(130), SCHEMA)
    chunks = database.read_month_batches(on_sqlite, "customers", SCHEMA, "2026-01", 50)
    assert [batch.num_rows for batch in chunks] == [50, 50, 30]


def test_a_table_made_elsewhere_without_a_month_column_reads_the_same_both_ways(engine):
    """Own DDL: integer and numeric columns, NULLs, and no month column (read by id)."""
    with engine.begin() as connection:
        connection.exec_driver_sql(
            'CREATE TABLE crm ("cust no" text PRIMARY KEY, income numeric(12, 2), '
            "visits integer, age bigint, segment varchar(20))"
        )
        connection.exec_driver_sql(
            "INSERT INTO crm VALUES ('b7', 10.5, 3, 40, ''), ('a1', NULL, NULL, 31, NULL), "
            "('c3', -2, 1, 22, 'gold')"
        )
    streamed = database.read_months(engine, "crm", SCHEMA, copy=True)
    pd.testing.assert_frame_equal(streamed, database.read_months(engine, "crm", SCHEMA, copy=False))
    assert streamed["cust no"].tolist() == ["a1", "b7", "c3"]
    assert streamed.dtypes.astype(str).to_dict() == {
        "cust no": "object",
        "income": "float64",
        "visits": "float64",  # NULL among integers: float, as pandas makes it
        "age": "int64",
        "segment": "object",
    }
    with pytest.raises(database.InvalidInputError, match="no month column 'period'"):
        database.read_months(engine, "crm", SCHEMA, ["2026-01"])


def test_a_column_copy_does_not_map_falls_back_to_read_sql(engine):
    with engine.begin() as connection:
        connection.exec_driver_sql(
            'CREATE TABLE crm ("cust no" text PRIMARY KEY, period text, joined date, vip boolean)'
        )
        connection.exec_driver_sql("INSERT INTO crm VALUES ('a', '2026-01', '2020-02-03', true)")
    streamed = database.read_months(engine, "crm", SCHEMA, copy=True)
    pd.testing.assert_frame_equal(streamed, database.read_months(engine, "crm", SCHEMA, copy=False))


def _terminate_copying_session(url: str) -> None:
    """End the session that is running a COPY in this database (from another session)."""
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            ended = connection.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND query LIKE 'COPY%%' "
                "AND pid <> pg_backend_pid()"
            ).scalars()
            assert list(ended) == [True]
    finally:
        engine.dispose()


def test_a_session_lost_mid_copy_rolls_back_that_month_whole_and_the_rerun_is_exact(
    engine, pg_url, monkeypatch
):
    """The session ends after the second month's first chunk went into COPY: the first month
    stays committed, nothing of the second is left, the error names both."""
    monkeypatch.setattr(pg_bulk, "COPY_CHUNK_ROWS", 100)
    chunks = pg_bulk.csv_chunks
    seen = {"chunks": 0}

    def losing(frame, text_columns, chunk_rows):
        for chunk in chunks(frame, text_columns, chunk_rows):
            seen["chunks"] += 1
            if seen["chunks"] == 5:  # months of 300 rows: chunk 5 is the second month's second
                _terminate_copying_session(pg_url)
            yield chunk

    monkeypatch.setattr(pg_bulk, "csv_chunks", losing)
    heard: list[str] = []
    with pytest.raises(PartialWriteError) as failure:
        database.upsert_frame(
            engine,
            "customers",
            messy(),
            SCHEMA,
            step="persona data ingest",
            on_committed=heard.append,
        )
    assert str(failure.value).startswith(
        "persona data ingest: lost the database connection while writing month 2026-02 of "
        "'customers' ("
    )
    assert str(failure.value).endswith(
        "month 2026-02 was rolled back, committed 1 of 2 months (300 rows: 2026-01); "
        "a rerun is safe"
    )
    assert (failure.value.committed, failure.value.rolled_back) == (("2026-01",), "2026-02")
    assert heard == ["committed 1 of 2 months (300 rows: 2026-01)"]
    assert stored(engine, "customers").period.value_counts().to_dict() == {"2026-01": 300}
    assert sessions_in_state(pg_url) == 0

    monkeypatch.setattr(pg_bulk, "csv_chunks", chunks)
    database.upsert_frame(engine, "customers", messy(), SCHEMA)  # same engine: its pool recovers
    assert stored(engine, "customers").period.value_counts().to_dict() == {m: 300 for m in MONTHS}


def test_progress_moves_chunk_by_chunk_and_each_month_is_on_record(engine, monkeypatch):
    monkeypatch.setattr(pg_bulk, "COPY_CHUNK_ROWS", 120)
    updates: list[int] = []

    class Recorder(database.tqdm):
        def update(self, n=1):
            updates.append(n)
            return super().update(n)

    monkeypatch.setattr(database, "tqdm", Recorder)
    heard: list[str] = []
    database.upsert_frame(engine, "customers", messy(), SCHEMA, on_committed=heard.append)
    assert updates == [120, 120, 60, 120, 120, 60]
    assert heard == [
        "committed 1 of 2 months (300 rows: 2026-01)",
        "committed 2 of 2 months (600 rows: 2026-01, 2026-02)",
    ]


def test_names_with_percent_signs_and_quotes_go_both_ways(engine):
    """Statements sent as written (COPY takes no parameters): a "%" stays one, quotes quoted."""
    odd = DatasetSchema(id_column="id", numeric={'100% "net"': NumericSpec()}, categorical={})
    frame = pd.DataFrame(
        {"id": ["a", "b"], "snapshot_month": ["5%", "5%"], '100% "net"': [1.0, None]}
    )
    for _ in range(2):
        database.upsert_frame(engine, "t%x", frame, odd)
    assert database.count_rows(engine, "t%x") == 2
    streamed = database.read_months(engine, "t%x", odd, ["5%"], copy=True)
    pd.testing.assert_frame_equal(
        streamed, database.read_months(engine, "t%x", odd, ["5%"], copy=False)
    )
    pd.testing.assert_frame_equal(streamed, frame)
