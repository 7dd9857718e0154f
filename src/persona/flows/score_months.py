"""Scored rows parked by month, then merged into the scores table one month per transaction.

What the batch engines that score the customers table share (``persona score --engine local``
and ``--engine spark``): the scored rows go to a scratch folder first, Parquet under one
``MONTH=…/`` folder per month (as Spark's ``partitionBy`` writes them), so that under ``reject``
a bad row of the last month leaves the table untouched and memory never holds more than a month;
then each month is merged in its own transaction (``upsert``: on PostgreSQL a COPY into a staging
table and one upsert). A lost connection keeps the months committed before it and says which.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from urllib.parse import quote, unquote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from persona.data.file_batches import BatchWriter
from persona.errors import PartialWriteError

logger = logging.getLogger(__name__)

MERGE_CHUNK_ROWS = 100_000  # scored rows per COPY into the staging table (~100 MiB in flight)


def month_folder(folder: Path, month_column: str, month: str) -> Path:
    """Where one month's files go: ``MONTH=<value>``, the value escaped as in a URL."""
    return Path(folder) / f"{month_column}={quote(month, safe='')}"


class MonthSpool:
    """A ``score_stream`` sink: each batch's rows under their month's folder, the month in the
    folder's name (not in the files), one Parquet file per month (``BatchWriter``: kept only
    when the ``with`` block ends without an error)."""

    def __init__(self, folder: Path, month_column: str, schema: pa.Schema) -> None:
        self.folder, self.month_column = Path(folder), month_column
        self.schema = schema.remove(schema.get_field_index(month_column))
        self._writers: dict[str, BatchWriter] = {}

    def __enter__(self) -> MonthSpool:
        self.folder.mkdir(parents=True, exist_ok=True)
        return self

    def write(self, table: pa.Table) -> None:
        months = table.column(self.month_column).combine_chunks()
        if pa.types.is_dictionary(months.type):
            months = months.dictionary_decode()
        rows = table.drop_columns([self.month_column])
        distinct = pc.unique(months).to_pylist()
        for month in distinct:
            part = rows if len(distinct) == 1 else rows.filter(pc.equal(months, month))
            self._writer(str(month)).write(part)

    def _writer(self, month: str) -> BatchWriter:
        if month not in self._writers:
            path = month_folder(self.folder, self.month_column, month) / "part-0.parquet"
            self._writers[month] = BatchWriter(path, self.schema).__enter__()
        return self._writers[month]

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for writer in self._writers.values():
            writer.__exit__(kind, exc, traceback)


def month_parts(
    folder: Path, month_column: str, rows: int = MERGE_CHUNK_ROWS
) -> Iterator[tuple[str, Iterator[pa.Table]]]:
    """Each month of a spooled folder (oldest first) and its scored rows in chunks of at most
    ``rows``, with the month column back and no unscored row."""
    prefix = f"{month_column}="
    for part in sorted(p for p in Path(folder).iterdir() if p.name.startswith(prefix)):
        month = unquote(part.name.removeprefix(prefix))
        files = sorted(part.glob("*.parquet"))
        if files:
            yield month, _scored_chunks(files, month_column, month, rows)


def _scored_chunks(
    files: list[Path], month_column: str, month: str, rows: int
) -> Iterator[pa.Table]:
    for path in files:
        # no pre-buffering: it would read every row group of the month up front
        for batch in pq.ParquetFile(path, pre_buffer=False).iter_batches(batch_size=rows):
            table = pa.Table.from_batches([batch])
            table = table.filter(pc.is_valid(table["persona_id"]))
            if "problems" in table.column_names:
                table = table.drop_columns(["problems"])
            month_values = pa.array([month] * table.num_rows, pa.string())
            yield table.add_column(1, month_column, month_values)


def merge_months(
    folder: Path,
    month_column: str,
    upsert: Callable[[str, Iterator[pa.Table]], int],
    progress: Callable[[str], None],
) -> list[str]:
    """Each month folder's scored rows into the table, oldest first, one ``upsert`` (one
    transaction) per month fed in chunks; the months committed."""
    months = list(month_parts(folder, month_column))  # the chunks are read as merged
    committed: list[str] = []
    rows = 0
    for month, chunks in months:
        try:
            written = upsert(month, chunks)
        except PartialWriteError as exc:  # it knows its one month; the earlier ones stay too
            earlier = f"{', '.join(committed)} committed before it" if committed else "no month"
            raise PartialWriteError(
                f"{exc} ({earlier})",
                committed=tuple(committed),
                committed_rows=rows,
                rolled_back=month,
            ) from None
        rows += written
        committed.append(month)
        progress(f"committed {len(committed)} of {len(months)} months (latest {month})")
        logger.info("month %s merged (%d rows)", month, written)
    return committed
