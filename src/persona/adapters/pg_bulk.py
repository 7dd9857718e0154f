"""Bulk I/O with PostgreSQL through ``COPY``: rows in through a staging table, rows out streamed.

Row-by-row ``INSERT … ON CONFLICT`` through executemany moves 4,000–6,000 rows/s and
``pd.read_sql`` builds a Python tuple per row; ``COPY`` moves the same rows as one stream.

**Writes**: a month's rows are encoded chunk by chunk as CSV (``pyarrow.csv``, so memory holds
one chunk of text, and the progress bar moves per chunk) and ``COPY``-ed into a temporary
staging table with the target's column types, then one ``INSERT INTO target SELECT … FROM
staging ON CONFLICT (key) DO UPDATE`` merges them, all in the caller's transaction: the month
commits whole or not at all, and re-ingesting it changes no row count.

**Reads**: ``COPY (SELECT …) TO STDOUT (FORMAT csv)`` is written by a thread into a pipe that
``pyarrow.csv.read_csv`` parses as it arrives, with the column types taken from the table, so
the text is never held whole and parsing overlaps the server's sending.

Why psycopg2's ``COPY`` and ``pyarrow.csv`` rather than an Arrow-native driver
(``adbc-driver-postgresql``, which speaks binary ``COPY``): both are already in every
environment that reads or writes the project tables (``requirements/pipeline.in``: the Mage
image and ``.venv/dev``), so nothing is added, and the scoring image, which never calls this
module (it imports pyarrow lazily), does not grow. The write stays on the SQLAlchemy
connection of the month's transaction, so a lost connection is the same psycopg2/SQLAlchemy
error that ``PartialWriteError`` already names; ADBC would open a second connection with its
own transaction and error types. Nor was it faster here: on the same 1M-row table, in the
same minutes of a loaded 2-core machine, ADBC 1.13 (26 MB installed) read 243–285k rows/s and
this path 222–264k rows/s; the server's sort and formatting are most of the time.
CSV keeps the two distinctions that matter: ``NULL`` is an unquoted empty field and an empty
text is ``""`` (both ways), and PostgreSQL prints floats in their shortest exact form, so
values round-trip bit for bit. Column types outside the mapped ones (dates, booleans, JSON,
…) are read by ``pd.read_sql`` as before.
"""

from __future__ import annotations

import io
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd
import sqlalchemy as sa

from persona.adapters.upstream import database_disconnect

if TYPE_CHECKING:  # pyarrow is imported on use: the scoring image imports this package without it
    import pyarrow as pa

logger = logging.getLogger(__name__)

# Rows per COPY chunk: ~7 MB of CSV for 15 columns; large enough that per-chunk overhead is
# negligible, small enough that the progress bar moves every second or so.
COPY_CHUNK_ROWS = 50_000
STAGING = "persona_staging"
# Sort memory of a streamed read: its ORDER BY (month, id) sorts the whole selection, which
# at PostgreSQL's default 4 MB spills to disk (1M rows: 1.24 s instead of 1.53 s on the server
# with 256 MB; 128 MB holds a ~500k-row month in memory). Only for that transaction.
READ_WORK_MEM = "128MB"
CSV_BLOCK_BYTES = 4 << 20  # COPY output parsed per block: ~50k rows of a customers table
# Statements sent as written: no parameter pass, so a "%" in a column name stays one.
_NO_PARAMETERS = {"no_parameters": True}


# -- pure helpers --------------------------------------------------------------------------


def _plain(dialect: sa.Dialect) -> sa.Dialect:
    """The dialect quoting for statements sent as written: psycopg2's pyformat style doubles
    every ``%`` (in a name too), which only a parameter pass would undo."""
    return type(dialect)(paramstyle="named")


def _text_array(series: pd.Series) -> pa.Array:
    """A text column as Arrow strings; values that are not str (ints, floats in an object
    column) as ``str(value)``, which is what PostgreSQL stored for them from executemany."""
    import pyarrow as pa

    try:
        return pa.array(series, type=pa.string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        as_text = series.map(str, na_action="ignore")
        return pa.array(as_text.astype(object), type=pa.string(), from_pandas=True)


def _value_array(series: pd.Series) -> pa.Array:
    """A numeric column as Arrow (NaN becomes null); anything Arrow cannot type, as text."""
    import pyarrow as pa

    try:
        return pa.array(series, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return _text_array(series)


def csv_chunks(
    frame: pd.DataFrame, text_columns: Sequence[str], chunk_rows: int = COPY_CHUNK_ROWS
) -> Iterator[tuple[bytes, int]]:
    """``frame`` as ``COPY … (FORMAT csv)`` input, ``chunk_rows`` at a time: (text, rows).

    No header. NULL (None, NaN, NA) is an unquoted empty field; every text value is quoted,
    so an empty text stays an empty text. Columns in ``text_columns`` are sent as text.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    text = set(text_columns)
    options = pacsv.WriteOptions(include_header=False)
    for start in range(0, len(frame), chunk_rows):
        part = frame.iloc[start : start + chunk_rows]
        arrays = [
            _text_array(part[c]) if c in text else _value_array(part[c]) for c in part.columns
        ]
        table = pa.Table.from_arrays(arrays, names=[str(c) for c in part.columns])
        buffer = io.BytesIO()
        pacsv.write_csv(table, buffer, options)
        yield buffer.getvalue(), len(part)


def arrow_type(column_type: sa.types.TypeEngine) -> pa.DataType | None:
    """The Arrow type a reflected column reads as, matching what ``pd.read_sql`` gives after
    pandas' conversion (floats, integers, numerics as float, text); None for any other type."""
    import pyarrow as pa

    if isinstance(column_type, sa.Integer):
        return pa.int64()
    if isinstance(column_type, sa.Float | sa.Numeric):  # Float is a Numeric; both read as float
        return pa.float64()
    if isinstance(column_type, sa.String):  # Text, VARCHAR, CHAR
        return pa.string()
    return None


def frame_like_read_sql(table: pa.Table) -> pd.DataFrame:
    """An Arrow table as ``pd.read_sql`` would give the same rows: text as objects with None,
    an integer column with NULLs as float, and a column that is NULL throughout as objects
    holding None (pandas infers no type from no value)."""
    frame = table.to_pandas()
    for name in frame.columns:
        if len(frame) and table.column(name).null_count == len(frame):
            frame[name] = pd.Series([None] * len(frame), index=frame.index, dtype=object)
    return frame


def _csv_options(types: dict[str, pa.DataType]) -> dict[str, Any]:
    """How ``COPY … (FORMAT csv)`` output reads (no header, columns as ``types``): an unquoted
    empty field is NULL, a quoted one an empty text; values may hold newlines."""
    import pyarrow.csv as pacsv

    return {
        "read_options": pacsv.ReadOptions(column_names=list(types), block_size=CSV_BLOCK_BYTES),
        "parse_options": pacsv.ParseOptions(newlines_in_values=True),
        "convert_options": pacsv.ConvertOptions(
            column_types=types,
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
    }


def parse_csv(source, types: dict[str, pa.DataType]) -> pa.Table:
    """``COPY … (FORMAT csv)`` output as an Arrow table."""
    import pyarrow.csv as pacsv

    return pacsv.read_csv(source, **_csv_options(types))


def csv_reader(source, types: dict[str, pa.DataType]) -> Iterator[pa.RecordBatch]:
    """``COPY … (FORMAT csv)`` output as record batches, one per block read."""
    import pyarrow.csv as pacsv

    return pacsv.open_csv(source, **_csv_options(types))


def merge_sql(
    preparer: sa.sql.compiler.IdentifierPreparer,
    target: str,
    columns: Sequence[str],
    key: Sequence[str],
    staging: str = STAGING,
) -> str:
    """One ``INSERT … SELECT … ON CONFLICT`` from the staging table into ``target``: new keys
    inserted, existing ones updated when a value differs (nothing to update when every column
    is the key). A row that is already as sent is left alone: re-ingesting the same month
    writes no new row versions, only checks them."""
    quote = preparer.quote
    names = ", ".join(quote(c) for c in columns)
    changing = [quote(c) for c in columns if c not in key]
    action = "DO NOTHING"
    if changing:
        sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in changing)
        ours = ", ".join(f"{quote(target)}.{c}" for c in changing)
        theirs = ", ".join(f"EXCLUDED.{c}" for c in changing)
        action = f"DO UPDATE SET {sets} WHERE ROW({ours}) IS DISTINCT FROM ROW({theirs})"
    return (
        f"INSERT INTO {quote(target)} ({names}) SELECT {names} FROM {quote(staging)} "
        f"ON CONFLICT ({', '.join(quote(c) for c in key)}) {action}"
    )


class _ChunkStream(io.RawIOBase):
    """A readable file over CSV chunks, for ``copy_expert``: a chunk is encoded only when
    PostgreSQL is ready for it; ``on_rows`` hears each chunk's row count once it is sent."""

    def __init__(self, chunks: Iterator[tuple[bytes, int]], on_rows: Callable[[int], None]):
        self._chunks, self._on_rows = chunks, on_rows
        self._pending = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:  # psycopg2 sends whatever length comes back
        if self._pending:
            self._on_rows(self._pending)
            self._pending = 0
        text, rows = next(self._chunks, (b"", 0))
        self._pending = rows
        return text


# -- writes --------------------------------------------------------------------------------


def copy_upsert(
    connection: sa.Connection,
    table: sa.Table,
    frame: pd.DataFrame,
    key: Sequence[str],
    on_rows: Callable[[int], None] = lambda rows: None,
    chunk_rows: int | None = None,
) -> None:
    """Upsert ``frame`` into ``table`` on ``connection`` (inside the caller's transaction):
    COPY into a temporary staging table, then one INSERT … ON CONFLICT.

    Rows repeating a key keep the last one, as row-by-row upserts left it.
    """
    if frame.empty:
        return
    duplicated = frame.duplicated(subset=list(key), keep="last")
    if duplicated.any():
        frame = frame[~duplicated]
    preparer = _plain(connection.dialect).identifier_preparer
    quote = preparer.quote
    columns = [str(c) for c in frame.columns]
    names = ", ".join(quote(c) for c in columns)
    connection.exec_driver_sql(
        f"DROP TABLE IF EXISTS pg_temp.{quote(STAGING)}; "
        f"CREATE TEMPORARY TABLE {quote(STAGING)} ON COMMIT DROP AS "
        f"SELECT {names} FROM {quote(table.name)} WITH NO DATA",
        execution_options=_NO_PARAMETERS,
    )
    text_columns = [c.name for c in table.columns if isinstance(c.type, sa.String)]
    stream = _ChunkStream(csv_chunks(frame, text_columns, chunk_rows or COPY_CHUNK_ROWS), on_rows)
    cursor = connection.connection.cursor()
    try:
        cursor.copy_expert(
            f"COPY {quote(STAGING)} ({names}) FROM STDIN WITH (FORMAT csv)", stream, size=1 << 20
        )
    except Exception as exc:
        # the driver's error, past SQLAlchemy: a lost session must not go back to the pool
        if database_disconnect(exc) is not None:
            connection.invalidate()
        raise
    finally:
        cursor.close()
    connection.exec_driver_sql(
        merge_sql(preparer, table.name, columns, key), execution_options=_NO_PARAMETERS
    )


# -- reads ---------------------------------------------------------------------------------


def _sql_text(query: sa.Select, dialect: sa.Dialect) -> str:
    """``query`` as one SQL text with its values inline (COPY takes no parameters)."""
    return str(query.compile(dialect=_plain(dialect), compile_kwargs={"literal_binds": True}))


class _PipeWriter(io.RawIOBase):
    """The write end of a pipe; closing it is the reader's end of file."""

    def __init__(self, fd: int) -> None:
        self._fd, self.written = fd, 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        while view:
            view = view[os.write(self._fd, view) :]
        self.written += len(data)
        return len(data)

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


def hash_bucket(column: sa.ColumnElement, buckets: int) -> sa.ColumnElement:
    """The bucket (0 .. ``buckets`` - 1) of each row by a hash of ``column``: how a table's rows
    are cut into slices that parallel readers (Spark's executors) each stream with ``COPY``.
    The column is hashed as text (ids may be integers); the int4 hash is taken as a bigint, as
    ``abs()`` of int4's minimum overflows."""
    hashed = sa.func.hashtext(sa.cast(column, sa.Text))
    return sa.func.abs(sa.cast(hashed, sa.BigInteger)) % buckets


def copy_read(connection: sa.Connection, query: sa.Select) -> pd.DataFrame | None:
    """The rows of ``query`` through ``COPY … TO STDOUT``, parsed by Arrow as they stream in,
    equal to ``pd.read_sql(query)``; None when a column has a type not mapped here."""
    table = copy_read_arrow(connection, query)
    return None if table is None else frame_like_read_sql(table)


class _CopyOut:
    """``COPY (query) TO STDOUT`` as CSV in a pipe (``source``), written by a thread as the
    server sends it. Leaving the ``with`` closes the read end first (a reader that stopped
    breaks the pipe, which ends the COPY), then joins the thread; ``failure`` is what the
    COPY raised, ``written`` how many bytes it sent."""

    def __init__(self, connection: sa.Connection, query: sa.Select) -> None:
        self._copy = f"COPY ({_sql_text(query, connection.dialect)}) TO STDOUT WITH (FORMAT csv)"
        connection.exec_driver_sql(
            f"SET LOCAL work_mem = '{READ_WORK_MEM}'", execution_options=_NO_PARAMETERS
        )
        self._cursor = connection.connection.cursor()
        self.failure: list[BaseException] = []

    def __enter__(self) -> _CopyOut:
        read_end, write_end = os.pipe()
        self._writer = _PipeWriter(write_end)
        self.source = os.fdopen(read_end, "rb", buffering=0)
        self._producer = threading.Thread(target=self._produce, name="copy-out", daemon=True)
        self._producer.start()
        return self

    def _produce(self) -> None:
        try:
            with io.BufferedWriter(self._writer, buffer_size=1 << 20) as out:
                self._cursor.copy_expert(self._copy, out)
        except BaseException as exc:  # raised in the caller's thread
            self.failure.append(exc)

    @property
    def written(self) -> int:
        return self._writer.written

    def __exit__(self, *exc: object) -> None:
        try:
            self.source.close()
        finally:
            self._producer.join()
            self._cursor.close()


def _column_types(query: sa.Select) -> dict[str, pa.DataType] | None:
    types = {str(c.name): arrow_type(c.type) for c in query.selected_columns}
    if any(t is None for t in types.values()):
        logger.debug("a column type COPY does not map here; reading with pd.read_sql")
        return None
    return types  # type: ignore[return-value]


def _raise_failed(connection: sa.Connection, out: _CopyOut, unparsed: BaseException | None) -> None:
    """What a COPY read ended with: the COPY's error, or a CSV Arrow could not parse (an
    empty one is no rows); the session may be mid-COPY, so it never goes back to the pool."""
    if out.failure or (unparsed is not None and out.written):
        connection.invalidate()
        raise unparsed if unparsed is not None and out.written else out.failure[0]


def copy_read_arrow(connection: sa.Connection, query: sa.Select) -> pa.Table | None:
    """The rows of ``query`` through ``COPY … TO STDOUT`` as an Arrow table (what Spark's
    executors score, with no pandas step); None when a column has a type not mapped here."""
    import pyarrow as pa

    types = _column_types(query)
    if types is None:
        return None
    table: pa.Table | None = None
    unparsed: pa.ArrowInvalid | None = None
    with _CopyOut(connection, query) as out:
        try:
            table = parse_csv(out.source, types)
        except pa.ArrowInvalid as exc:  # also what Arrow says of an empty CSV: no rows
            unparsed = exc
    _raise_failed(connection, out, unparsed)
    if table is None:
        table = pa.table({name: pa.array([], type=kind) for name, kind in types.items()})
    return table


def copy_read_batches(
    connection: sa.Connection, query: sa.Select
) -> Iterator[pa.RecordBatch] | None:
    """The rows of ``query`` through one ``COPY … TO STDOUT``, as Arrow record batches parsed
    while the rows stream in (a few MB each): any number of rows in bounded memory. None when
    a column has a type not mapped here. A consumer that stops early ends the COPY, and the
    session is dropped rather than pooled."""
    types = _column_types(query)
    return None if types is None else _streamed(connection, query, types)


def _streamed(
    connection: sa.Connection, query: sa.Select, types: dict[str, pa.DataType]
) -> Iterator[pa.RecordBatch]:
    import pyarrow as pa

    unparsed: pa.ArrowInvalid | None = None
    try:
        with _CopyOut(connection, query) as out:
            # whole blocks: a pipe gives at most 64 KiB a read, and the streaming reader makes
            # a batch of each read (~1,000 rows: the scoring's per-batch cost then dominates)
            blocks = io.BufferedReader(out.source, buffer_size=CSV_BLOCK_BYTES)
            try:
                yield from csv_reader(blocks, types)
            except pa.ArrowInvalid as exc:  # also what Arrow says of an empty CSV: no rows
                unparsed = exc
    except BaseException:  # stopped early (GeneratorExit) or failed: the session may be mid-COPY
        connection.invalidate()
        raise
    _raise_failed(connection, out, unparsed)
