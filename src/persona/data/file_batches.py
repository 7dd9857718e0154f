"""Customer files read as a stream of Arrow record batches, and rows streamed into a file.

For files larger than memory (``persona score --engine local``): Parquet is read batch by batch
through pyarrow (``ParquetFile.iter_batches``, only the columns asked for); a text file in
chunks by the same pandas C parser, with the same dialect detection, that
``persona.data.files`` uses for a whole file, so a semicolon export with a BOM and a Windows
code page reads the same either way; an Excel workbook whole (the format stops at about a
million rows). Out: Parquet (``pyarrow.parquet.ParquetWriter``) or CSV
(``pyarrow.csv.CSVWriter``), written to a hidden file beside the target and renamed onto it
only when the job completes, so a failed run never leaves half a file under the real name.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import pyarrow as pa

from persona.data.files import (
    PARQUET_SUFFIXES,
    READ_SUFFIXES,
    TEXT_SUFFIXES,
    WRITE_SUFFIXES,
    FileDialect,
    check_read_columns,
    checked_suffix,
    csv_options,
    detect_text_dialect,
    parse_delimiter,
    parse_encoding,
    read_table_with_dialect,
    undecodable,
)
from persona.errors import InvalidInputError

logger = logging.getLogger(__name__)

# (columns to read, rows per batch) -> the batches
Opener = Callable[[Sequence[str], int], Iterator[pa.RecordBatch]]


@dataclass(frozen=True)
class BatchReader:
    """An opened file: how it is read, its columns, and its rows on demand in batches."""

    path: Path
    dialect: FileDialect
    columns: tuple[str, ...]  # every column of the file, in its order
    total_rows: int | None  # None for a text file (counted as it is read)
    opener: Opener

    def batches(self, columns: Sequence[str], rows: int) -> Iterator[pa.RecordBatch]:
        """Record batches of at most ``rows`` rows holding ``columns`` (each in the file)."""
        if rows < 1:
            raise InvalidInputError(f"rows per batch must be at least 1, got {rows}")
        return self.opener(list(columns), rows)


def open_batches(
    path: Path,
    *,
    id_column: str | None = None,
    text_columns: Collection[str] = (),
    expected_columns: Collection[str] = (),
    delimiter: str | None = None,
    encoding: str | None = None,
) -> BatchReader:
    """Open a CSV/TSV/TXT, Parquet or XLSX file to be read in batches.

    ``id_column`` and ``text_columns`` are read as text from a text file (as
    ``persona.data.files.read_table`` reads them), ``text_columns`` (few values: categoricals,
    months) as dictionaries from Parquet; a file with none of ``expected_columns``, or a text
    file that parses into one column, is refused showing how it was read.
    """
    path = Path(path)
    suffix = checked_suffix(path, READ_SUFFIXES)
    if not path.exists():
        raise InvalidInputError(f"{path}: file not found")
    delimiter, encoding = parse_delimiter(delimiter), parse_encoding(encoding)
    text = {*text_columns, *([id_column] if id_column else [])}
    sample = ""
    if suffix in TEXT_SUFFIXES:
        reader, sample = _open_text(path, text, delimiter, encoding)
    elif suffix in PARQUET_SUFFIXES:
        reader = _open_parquet(path, text_columns)
    else:
        reader = _open_excel(path, id_column, text_columns)
    check_read_columns(path, list(reader.columns), reader.dialect, sample, expected_columns)
    logger.info("reading %s in batches (%s)", path, reader.dialect.describe())
    return reader


def _open_parquet(path: Path, text_columns: Collection[str]) -> BatchReader:
    """Text columns of few values (categoricals, months) are read as dictionaries: their
    levels once, an index per row, rather than a string per row."""
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
        levels = [name for name in text_columns if name in names]
        # pre_buffer (pyarrow's default) reads ahead over every row group iter_batches is
        # given: memory then grows with the file (+716 MiB for 8M rows, +171 MiB for 1M);
        # without it, one row group at a time (+117 MiB for both)
        parquet = pq.ParquetFile(path, read_dictionary=levels, pre_buffer=False)
    except (pa.ArrowException, OSError) as exc:
        raise InvalidInputError(f"{path}: cannot read as parquet: {exc}") from None

    def batches(columns: Sequence[str], rows: int) -> Iterator[pa.RecordBatch]:
        try:
            yield from parquet.iter_batches(batch_size=rows, columns=list(columns))
        except (pa.ArrowException, OSError) as exc:
            raise InvalidInputError(f"{path}: cannot read as parquet: {exc}") from None

    return BatchReader(
        path,
        FileDialect(format="parquet"),
        tuple(parquet.schema_arrow.names),
        parquet.metadata.num_rows,
        batches,
    )


def _open_text(
    path: Path, text: set[str], delimiter: str | None, encoding: str | None
) -> tuple[BatchReader, str]:
    import pandas as pd

    dialect, escapechar, sample = detect_text_dialect(path, delimiter, encoding)
    options = csv_options(dialect, escapechar)

    def failed(exc: Exception) -> InvalidInputError:
        if isinstance(exc, UnicodeDecodeError):
            return undecodable(path, dialect, exc)
        if isinstance(exc, pd.errors.EmptyDataError):
            return InvalidInputError(f"{path}: the file is empty")
        return InvalidInputError(
            f"{path}: cannot parse as {dialect.describe()}: {str(exc).strip()}"
        )

    try:
        header = [str(c) for c in pd.read_csv(path, nrows=0, **options).columns]
    except (UnicodeDecodeError, pd.errors.EmptyDataError, pd.errors.ParserError, ValueError) as exc:
        raise failed(exc) from None

    def batches(columns: Sequence[str], rows: int) -> Iterator[pa.RecordBatch]:
        wanted = set(columns)
        dtype = {name: str for name in text if name in wanted}
        try:
            with pd.read_csv(
                path, usecols=lambda c: c in wanted, dtype=dtype, chunksize=rows, **options
            ) as chunks:
                for chunk in chunks:
                    yield pa.RecordBatch.from_pandas(chunk[list(columns)], preserve_index=False)
        except (UnicodeDecodeError, pd.errors.ParserError, ValueError) as exc:
            raise failed(exc) from None

    return BatchReader(path, dialect, tuple(header), None, batches), sample


def _open_excel(path: Path, id_column: str | None, text_columns: Collection[str]) -> BatchReader:
    """A workbook read whole (xlsx holds at most 1,048,576 rows), then cut into batches."""
    frame, dialect = read_table_with_dialect(path, id_column, text_columns=text_columns)

    def batches(columns: Sequence[str], rows: int) -> Iterator[pa.RecordBatch]:
        yield from pa.Table.from_pandas(frame[list(columns)], preserve_index=False).to_batches(rows)

    return BatchReader(path, dialect, tuple(frame.columns), len(frame), batches)


def plain(table: pa.Table) -> pa.Table:
    """Dictionary-encoded columns decoded to their values (e.g. before ``to_pandas``)."""
    fields = [
        field.with_type(field.type.value_type) if pa.types.is_dictionary(field.type) else field
        for field in table.schema
    ]
    return table.cast(pa.schema(fields))


class BatchWriter:
    """Rows streamed into a Parquet or CSV file (by its suffix), one write per batch.

    The rows go to a hidden file beside ``path``, renamed onto it when the ``with`` block ends
    without an error; after an error the hidden file is removed and ``path`` is untouched.
    """

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path = Path(path)
        self.suffix = checked_suffix(self.path, WRITE_SUFFIXES)
        self.schema = schema
        self.partial = self.path.with_name(f".{self.path.name}.{os.getpid()}.partial")
        self.rows = 0
        self._writer: Any = None

    def __enter__(self) -> BatchWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.suffix == ".csv":
            import pyarrow.csv as pacsv

            self._writer = pacsv.CSVWriter(self.partial, self.schema)
        else:
            import pyarrow.parquet as pq

            # dictionary columns are written as they are (no hashing of each row) and, with no
            # Arrow schema stored, read back as plain text, like any Parquet file of strings;
            # a column of distinct values (the ids) is not dictionary-encoded at all
            levels = [f.name for f in self.schema if pa.types.is_dictionary(f.type)]
            self._writer = pq.ParquetWriter(
                self.partial, self.schema, use_dictionary=levels, store_schema=False
            )
        return self

    def write(self, table: pa.Table) -> None:
        self._writer.write_table(table)
        self.rows += table.num_rows

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self._writer.close()
        finally:
            if kind is None:
                self.partial.replace(self.path)
            else:
                self.partial.unlink(missing_ok=True)
