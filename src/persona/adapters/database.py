"""Project tables (PostgreSQL in Compose/tests, SQLite locally) through SQLAlchemy Core.

On PostgreSQL, writes and reads of customer months go through ``COPY`` (``pg_bulk``); SQLite
keeps row-by-row upserts and ``pd.read_sql``.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from tqdm.auto import tqdm

from persona.adapters.postgres_admin import ensure_database
from persona.adapters.upstream import RERUN_IS_SAFE, database_disconnect, short_reason
from persona.data.schema import DatasetSchema
from persona.errors import InvalidInputError, PartialWriteError, UpstreamUnavailableError

if TYPE_CHECKING:  # pyarrow is imported on use
    import pyarrow as pa

logger = logging.getLogger(__name__)

CHUNK_ROWS = 5_000  # rows per executemany of the row-by-row path (SQLite)


def make_engine(url: str) -> sa.Engine:
    """An engine on ``url``; a missing SQLite folder or PostgreSQL database is created first."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    ensure_database(url)
    return sa.create_engine(url, future=True, pool_pre_ping=True)


def _table(
    metadata: sa.MetaData, name: str, frame: pd.DataFrame, schema: DatasetSchema
) -> sa.Table:
    columns = []
    for column in frame.columns:
        if column in schema.key:
            columns.append(sa.Column(column, sa.String(64), primary_key=True))
        elif pd.api.types.is_numeric_dtype(frame[column]):
            columns.append(sa.Column(column, sa.Float))
        else:
            columns.append(sa.Column(column, sa.Text))
    return sa.Table(name, metadata, *columns)


def _months(frame: pd.DataFrame, schema: DatasetSchema) -> list[tuple[str | None, pd.DataFrame]]:
    """The frame cut into its months (oldest first), or whole when it has no month column."""
    if schema.month_column not in frame.columns or frame.empty:
        return [(None, frame)]
    return [
        (str(month), part)
        for month, part in frame.groupby(schema.month_column, sort=True, dropna=False)
    ]


def _written(committed: list[tuple[str | None, int]], parts: int) -> str:
    """What stays after a lost connection, for the error line: "committed 2 of 4 months
    (150,000 rows: 2026-01, 2026-02)", or "nothing was committed"."""
    if not committed:
        return "nothing was committed"
    rows = sum(n for _, n in committed)
    months = [m for m, _ in committed if m is not None]
    named = f": {', '.join(months)}" if months else ""
    return f"committed {len(committed)} of {parts} months ({rows:,} rows{named})"


def _use_copy(engine: sa.Engine, copy: bool | None) -> bool:
    """COPY on PostgreSQL unless told otherwise (``copy=False``: the row-by-row path)."""
    return engine.dialect.name == "postgresql" if copy is None else copy


def _row_writer(statement: sa.Insert) -> Callable[[sa.Connection, pd.DataFrame, tqdm], None]:
    """Row-by-row upserts, ``CHUNK_ROWS`` per executemany (SQLite; PostgreSQL's former path)."""

    def write(connection: sa.Connection, part: pd.DataFrame, bar: tqdm) -> None:
        records = part.astype(object).where(part.notna(), None).to_dict("records")
        for start in range(0, len(records), CHUNK_ROWS):
            chunk = records[start : start + CHUNK_ROWS]
            connection.execute(statement, chunk)
            bar.update(len(chunk))

    return write


def _copy_writer(
    table: sa.Table, key: list[str]
) -> Callable[[sa.Connection, pd.DataFrame, tqdm], None]:
    from persona.adapters.pg_bulk import copy_upsert

    def write(connection: sa.Connection, part: pd.DataFrame, bar: tqdm) -> None:
        copy_upsert(connection, table, part, key, on_rows=bar.update)

    return write


def upsert_frame(
    engine: sa.Engine,
    table_name: str,
    frame: pd.DataFrame,
    schema: DatasetSchema,
    progress: bool | None = None,
    step: str | None = None,
    per_month: bool = True,
    on_committed: Callable[[str], None] | None = None,
    copy: bool | None = None,
) -> int:
    """Insert or update rows by (id, month); re-running the same month changes no row count.

    Each month is its own transaction: a lost connection keeps the months already committed,
    rolls back the one being written (never a partial month), and says so in one line
    (``PartialWriteError``, naming ``step``); the rerun upserts the same rows again.
    ``per_month=False``: the whole frame in one transaction (all or nothing).
    ``on_committed`` hears what is committed after each month (a job's progress record).
    On PostgreSQL a month is ``COPY``-ed into a staging table and merged in one statement
    (``pg_bulk``); ``copy=False`` forces the row-by-row path (the benchmark's baseline).
    """
    parts = _months(frame, schema) if per_month else [(None, frame)]
    months = [(month, [part], len(part)) for month, part in parts]
    step = step or f"writing {table_name!r}"
    return _upsert(
        engine, table_name, frame.head(0), months, schema, step, progress, copy, on_committed
    )


def upsert_month_chunks(
    engine: sa.Engine,
    table_name: str,
    month: str,
    chunks: Iterable[pd.DataFrame],
    schema: DatasetSchema,
    step: str,
) -> int:
    """One month's rows arriving in chunks, upserted as ``upsert_frame`` upserts a month (one
    transaction, never a partial month) without the month ever whole in memory."""
    chunks = iter(chunks)
    first = next(chunks, None)
    if first is None:
        return 0
    months = [(month, itertools.chain([first], chunks), None)]
    return _upsert(engine, table_name, first.head(0), months, schema, step, False, None, None)


def _upsert(
    engine: sa.Engine,
    table_name: str,
    columns: pd.DataFrame,
    months: list[tuple[str | None, Iterable[pd.DataFrame], int | None]],
    schema: DatasetSchema,
    step: str,
    progress: bool | None,
    copy: bool | None,
    on_committed: Callable[[str], None] | None,
) -> int:
    """Each (month, chunks, rows) in its own transaction into ``table_name``, created from
    ``columns`` (the frames' columns and types) when missing."""
    metadata = sa.MetaData()
    table = _table(metadata, table_name, columns, schema)
    try:
        metadata.create_all(engine, checkfirst=True)
        existing = {c["name"] for c in sa.inspect(engine).get_columns(table_name)}
    except OperationalError as exc:
        raise UpstreamUnavailableError(
            f"{step}: database unreachable ({short_reason(exc)}); nothing was written"
        ) from None
    missing = [c for c in columns.columns if c not in existing]
    if missing:
        raise InvalidInputError(
            f"table {table_name!r} exists without column(s) {missing}; use another table name"
        )
    key = [c for c in schema.key if c in columns.columns]
    if _use_copy(engine, copy):
        write = _copy_writer(table, key)
    else:
        insert = (postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert)(
            table
        )
        updates = {c.name: insert.excluded[c.name] for c in table.columns if c.name not in key}
        write = _row_writer(insert.on_conflict_do_update(index_elements=key, set_=updates))
    disable = None if progress is None else not progress
    known = [rows for _, _, rows in months]
    total = None if None in known else sum(known)  # type: ignore[arg-type]
    committed: list[tuple[str | None, int]] = []
    with tqdm(total=total, desc=f"upsert {table_name}", unit="rows", disable=disable) as bar:
        for month, chunks, _ in months:
            written = 0
            try:
                with engine.begin() as connection:
                    for part in chunks:
                        write(connection, part, bar)
                        written += len(part)
            except Exception as exc:  # SQLAlchemy's errors, and psycopg2's from COPY
                reason = database_disconnect(exc)
                if reason is None:
                    raise
                where = f"month {month}" if month is not None else "the rows"
                raise PartialWriteError(
                    f"{step}: lost the database connection while writing {where} of "
                    f"{table_name!r} ({reason}); {where} was rolled back, "
                    f"{_written(committed, len(months))}; {RERUN_IS_SAFE}",
                    committed=tuple(m for m, _ in committed if m is not None),
                    committed_rows=sum(n for _, n in committed),
                    rolled_back=month,
                ) from None
            committed.append((month, written))
            if on_committed is not None:
                on_committed(_written(committed, len(months)))
            if month is not None and len(months) > 1:
                logger.info(
                    "%s: month %s committed (%d rows; %d of %d months)",
                    table_name,
                    month,
                    written,
                    len(committed),
                    len(months),
                )
    rows = sum(n for _, n in committed)
    logger.info("upserted %d rows into %s", rows, table_name)
    return rows


def months_query(table: sa.Table, schema: DatasetSchema, months: Sequence[str] | None) -> sa.Select:
    """The rows of ``months`` (all when None), by month then id; by id alone in a table
    without a month column, which has no months to choose."""
    query = sa.select(table)
    month = table.c.get(schema.month_column)
    if month is None:
        if months:
            raise InvalidInputError(
                f"table {table.name!r} has no month column {schema.month_column!r}; "
                f"it cannot be read by month ({', '.join(months)})"
            )
        return query.order_by(table.c[schema.id_column])
    if months:
        query = query.where(month.in_(list(months)))
    return query.order_by(month, table.c[schema.id_column])


def read_months(
    engine: sa.Engine,
    table_name: str,
    schema: DatasetSchema,
    months: Sequence[str] | None = None,
    copy: bool | None = None,
) -> pd.DataFrame:
    """Rows of the given months (all months when None), in a stable order.

    On PostgreSQL they stream out through ``COPY`` (``pg_bulk``), equal to what ``pd.read_sql``
    gives; ``copy=False`` reads them with ``pd.read_sql`` (SQLite, the benchmark's baseline).
    """
    table = _reflected(engine, table_name, schema)
    frame = _read(engine, months_query(table, schema, months), copy)
    if frame.empty:
        raise InvalidInputError(
            f"no rows in {table_name!r} for month(s) {list(months) if months else 'any'}"
        )
    return frame


def read_month_batches(
    engine: sa.Engine,
    table_name: str,
    schema: DatasetSchema,
    month: str,
    rows: int,
    columns: Sequence[str] | None = None,
) -> Iterator[pa.RecordBatch]:
    """One month's rows (only ``columns`` when given) as Arrow record batches, in bounded
    memory whatever the month's size: on PostgreSQL one ``COPY`` parsed as it streams in
    (``pg_bulk``), elsewhere ``pd.read_sql`` in chunks of ``rows``. Close the iterator when
    stopping early: that ends the read."""
    import pyarrow as pa

    table = _reflected(engine, table_name, schema)
    query = months_query(table, schema, [month])
    if columns:
        query = query.with_only_columns(*(table.c[name] for name in columns))
    with engine.connect() as connection:
        if _use_copy(engine, None):
            from persona.adapters.pg_bulk import copy_read_batches

            batches = copy_read_batches(connection, query)
            if batches is not None:
                yield from batches
                return
        for frame in pd.read_sql(query, connection, chunksize=rows):
            frame.columns = [str(name) for name in frame.columns]
            yield from pa.Table.from_pandas(frame, preserve_index=False).to_batches()


def _reflected(engine: sa.Engine, table_name: str, schema: DatasetSchema) -> sa.Table:
    """The table as the database has it, with the schema's id column, or a one-line error."""
    try:
        table = sa.Table(table_name, sa.MetaData(), autoload_with=engine)
    except sa.exc.NoSuchTableError:
        raise InvalidInputError(f"table {table_name!r} does not exist; ingest data first") from None
    except SQLAlchemyError as exc:
        raise UpstreamUnavailableError(f"database unreachable: {short_reason(exc)}") from None
    if schema.id_column not in table.c:
        raise InvalidInputError(
            f"table {table_name!r} has no id column {schema.id_column!r} (the schema's); "
            f"its columns: {[c.name for c in table.columns][:20]}"
        )
    return table


def _read(engine: sa.Engine, query: sa.Select, copy: bool | None) -> pd.DataFrame:
    frame = None
    with engine.connect() as connection:
        if _use_copy(engine, copy):
            from persona.adapters.pg_bulk import copy_read

            frame = copy_read(connection, query)
        if frame is None:
            frame = pd.read_sql(query, connection)
    # Reflected names are SQLAlchemy quoted_name objects; scikit-learn only records
    # feature names that are exactly str, so a model fitted on them could not be refitted.
    frame.columns = [str(name) for name in frame.columns]
    return frame


def month_counts(
    engine: sa.Engine, table_name: str, schema: DatasetSchema, months: Sequence[str] | None = None
) -> tuple[dict[str, int], list[str]]:
    """Rows per month of the table (only ``months`` when given), and its columns: what the
    batch engines read a table by, one month (or slice of one) at a time."""
    table = _reflected(engine, table_name, schema)
    if schema.month_column not in table.c:
        raise InvalidInputError(
            f"table {table_name!r} has no month column {schema.month_column!r}: batch scoring "
            "reads a table month by month"
        )
    month = table.c[schema.month_column]
    query = sa.select(month, sa.func.count()).group_by(month)
    if months:
        query = query.where(month.in_(list(months)))
    try:
        with engine.connect() as connection:
            counts = {str(m): int(n) for m, n in connection.execute(query) if m is not None}
    except SQLAlchemyError as exc:
        raise UpstreamUnavailableError(f"database unreachable: {short_reason(exc)}") from None
    if not counts:
        raise InvalidInputError(
            f"no rows in {table_name!r} for month(s) {list(months) if months else 'any'}"
        )
    return counts, [c.name for c in table.columns]


def count_rows(engine: sa.Engine, table_name: str) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.text(f'SELECT count(*) FROM "{table_name}"')).scalar_one())


class PostgresCustomers:
    """The ``CustomerStore`` port on the project database: customer months and the scoring log."""

    def __init__(self, url: str, table: str, scoring_log_table: str) -> None:
        self.url, self.table, self.scoring_log_table = url, table, scoring_log_table

    @cached_property
    def engine(self) -> sa.Engine:
        return make_engine(self.url)  # on first use: building a store connects nothing

    def read_months(self, schema: DatasetSchema, months: Sequence[str] | None) -> pd.DataFrame:
        return read_months(self.engine, self.table, schema, months)

    def read_scored(self, days: float) -> pd.DataFrame:
        from persona.adapters.scoring_log import read_scoring_log

        return read_scoring_log(self.url, self.scoring_log_table, days)

    def replace_months(
        self, frame: pd.DataFrame, schema: DatasetSchema, months: Sequence[str]
    ) -> int:
        """Delete ``months`` from the table, then upsert ``frame``: a re-run leaves exactly it.

        An upsert alone would keep rows of an earlier, larger run of the same months.
        """
        try:
            table = None
            if sa.inspect(self.engine).has_table(self.table):
                table = sa.Table(self.table, sa.MetaData(), autoload_with=self.engine)
            if table is not None and schema.month_column in table.c:  # else upsert says why
                with self.engine.begin() as connection:
                    deleted = connection.execute(
                        table.delete().where(table.c[schema.month_column].in_(list(months)))
                    ).rowcount
                if deleted:
                    logger.info(
                        "removed %d earlier rows of %s from %s",
                        deleted,
                        ", ".join(months),
                        self.table,
                    )
        except SQLAlchemyError as exc:
            raise UpstreamUnavailableError(f"database unreachable: {short_reason(exc)}") from None
        return upsert_frame(self.engine, self.table, frame, schema, progress=False)

    def read_drift_runs(self, limit: int) -> pd.DataFrame:
        from persona.adapters.drift_store import read_runs

        return read_runs(self.engine, limit=limit)
