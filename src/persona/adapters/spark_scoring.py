"""Batch scoring in Spark (``persona score --engine spark``): rows in from files or the customers
table, scored on the executors, results out as Parquet partitioned by month.

The scoring itself is not Spark's: the driver loads the production model as the in-process
engine does, broadcasts it, and every partition's Arrow record batches go through
``persona.flows.score_stream.score_batch`` inside ``mapInArrow`` (the contract's checks, the
compiled fast path, or the pyfunc when a model has none; the same labels as the API). Spark
adds the parallel reads, the scheduling over executors and the partitioned write.

Why the pyfunc inside ``mapInArrow`` (through ``check_and_score``) and not
``mlflow.pyfunc.spark_udf`` for a model the fast path cannot compile: the rows still get the
contract's checks, the flagging of bad rows and the served persona names, from the one model
the driver loaded (``spark_udf`` scores unchecked pandas frames, reloads the model from its
artifacts on every executor and returns only what the pyfunc returns), and measured here
(STACK_NOTES) ``spark_udf`` moved 0.09–0.15 M rows/s against 0.38–0.59 M for a broadcast
pipeline in ``mapInPandas``.

Inputs: Parquet is read by Spark itself (files split by row group); CSV/TSV/TXT/XLSX files are
one task each, read on the executor by the same dialect detection as the local engine
(``persona.data.file_batches``), so a ``;`` export with a BOM reads the same either way.
The customers table on PostgreSQL: each executor task streams one slice of one month with
``COPY … TO STDOUT`` (``pg_bulk``), a month cut into slices by a hash of the id, so the reads
run in parallel on the executors and never pass through the driver. No JDBC jar: psycopg2 is
already in the Spark environment, and ``COPY`` is several times faster than JDBC's row fetches.
Other databases (SQLite, local use) are read by the driver.

A bad row never raises in an executor: it comes back unscored with a ``problems`` cell, and
the driver applies the policy (reject: nothing is committed; flag: the rest is).

pyspark is never imported here (``spark_session`` is its one importer): sessions and DataFrames
are used through their methods, schemas are DDL text.
"""

from __future__ import annotations

import logging
import math
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow as pa

from persona.data.file_batches import open_batches, plain
from persona.errors import InvalidInputError
from persona.flows.score_stream import StreamRequest, score_batch
from persona.serving.model_store import ServedModel

logger = logging.getLogger(__name__)

PARTITION_ROWS = 250_000  # rows per table slice read by one task
IDS_SHOWN = 50
ROWS_SHOWN = 5
PARQUET = (".parquet", ".pq")
READABLE = (".csv", ".tsv", ".txt", ".parquet", ".pq", ".xlsx")


@dataclass(frozen=True)
class FileOptions:
    """How the driver opened the input files; each executor opens its file the same way."""

    id_column: str
    text_columns: tuple[str, ...]
    expected_columns: tuple[str, ...]
    delimiter: str | None = None
    encoding: str | None = None

    def open(self, path: Path) -> Any:
        return open_batches(
            path,
            id_column=self.id_column,
            text_columns=self.text_columns,
            expected_columns=self.expected_columns,
            delimiter=self.delimiter,
            encoding=self.encoding,
        )


@dataclass(frozen=True)
class TableSlice:
    """One task's rows of the customers table: a month, one hash bucket of its ids."""

    month: str
    bucket: int
    buckets: int


def result_ddl(request: StreamRequest) -> str:
    """The results' Spark schema: the columns of ``request.result_schema()`` as plain text."""
    kinds = {"persona_id": "bigint"}
    return ", ".join(
        f"`{name}` {kinds.get(name, 'string')}" for name in request.result_schema().names
    )


def input_files(path: Path) -> list[Path]:
    """The file, or the readable files under the folder (sorted), or one line saying why none."""
    path = Path(path)
    if not path.exists():
        raise InvalidInputError(f"{path}: file not found")
    if path.is_file():
        return [path]
    found = sorted(
        p
        for p in path.rglob("*")
        if p.is_file() and p.suffix.lower() in READABLE and not p.name.startswith((".", "_"))
    )
    if not found:
        raise InvalidInputError(f"{path}: no {', '.join(READABLE)} file in this folder")
    return found


# -- executor side -------------------------------------------------------------------------


def _scored(
    served: ServedModel, request: StreamRequest, scored_at: str, records: Iterator[pa.RecordBatch]
) -> Iterator[pa.RecordBatch]:
    """Each record batch through the one per-batch step, in slices of ``batch_rows``."""
    schema = request.result_schema()
    read = 0
    for record in records:
        record = _levels(record, served.spec.categorical)
        for start in range(0, record.num_rows, request.batch_rows):
            part = record.slice(start, request.batch_rows)
            done = score_batch(served, part, request, scored_at, first_row=read, schema=schema)
            read += part.num_rows
            if done is not None:
                yield from plain(done.results).to_batches()


def _levels(record: pa.RecordBatch, categorical: Sequence[str]) -> pa.RecordBatch:
    """Categorical text as dictionaries, as the local engine reads them from Parquet: Spark
    hands over plain strings, which the contract's checks read about twice as slowly."""
    import pyarrow.compute as pc

    names = record.schema.names
    for name in categorical:
        if name in names:
            index = names.index(name)
            column = record.column(index)
            if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
                record = record.set_column(index, name, pc.dictionary_encode(column))
    return record


def _score_batches(model: Any, request: StreamRequest, scored_at: str) -> Callable:
    """mapInArrow's function over input rows (Parquet read by Spark, a driver-read table)."""

    def score_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        yield from _scored(model.value, request, scored_at, batches)

    return score_partition


def _score_files(
    model: Any, request: StreamRequest, scored_at: str, options: FileOptions, columns: list[str]
) -> Callable:
    """mapInArrow's function over file paths: each file read here, then scored."""

    def score_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for paths in batches:
            for path in paths.column(0).to_pylist():
                reader = options.open(Path(path))
                records = reader.batches(columns, request.batch_rows)
                yield from _scored(model.value, request, scored_at, records)

    return score_partition


def _score_slices(
    model: Any,
    request: StreamRequest,
    scored_at: str,
    url: str,
    table_name: str,
    columns: list[str],
) -> Callable:
    """mapInArrow's function over table slices: each streamed out of PostgreSQL with COPY."""

    def score_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import sqlalchemy as sa

        from persona.adapters.pg_bulk import copy_read_arrow, hash_bucket

        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        table = sa.Table(table_name, sa.MetaData(), autoload_with=engine)
        month, key = table.c[request.month_column], table.c[request.id_column]
        try:
            for slices in batches:
                for item in slices.to_pylist():
                    query = (
                        sa.select(*[table.c[c] for c in columns])
                        .where(month == item["month"])
                        .where(hash_bucket(key, item["buckets"]) == item["bucket"])
                        .order_by(key)
                    )
                    with engine.connect() as connection:
                        rows = copy_read_arrow(connection, query)
                    if rows is None or not rows.num_rows:
                        continue
                    yield from _scored(model.value, request, scored_at, iter(rows.to_batches()))
        finally:
            engine.dispose()

    return score_partition


# -- driver side ---------------------------------------------------------------------------


def scored_frame(
    session: Any,
    served: ServedModel,
    request: StreamRequest,
    scored_at: str,
    *,
    files: Sequence[Path] = (),
    options: FileOptions | None = None,
    columns: Sequence[str] = (),
    slices: Sequence[TableSlice] = (),
    database_url: str | None = None,
    table_name: str | None = None,
    rows: pa.Table | None = None,
) -> Any:
    """The scored rows as a Spark DataFrame (lazy): from ``files`` (opened with ``options``),
    table ``slices`` read on the executors, or ``rows`` the driver read."""
    executor_request = replace(request, on_invalid="flag")  # bad rows come back, never raise
    model = session.sparkContext.broadcast(served)
    ddl = result_ddl(executor_request)
    columns = list(columns)
    if rows is not None:
        source = session.createDataFrame(rows.to_pandas())
        return source.mapInArrow(_score_batches(model, executor_request, scored_at), ddl)
    if slices:
        items = [(s.month, s.bucket, s.buckets) for s in slices]
        source = session.createDataFrame(items, "month string, bucket int, buckets int")
        function = _score_slices(
            model, executor_request, scored_at, str(database_url), str(table_name), columns
        )
        return source.repartition(len(items)).mapInArrow(function, ddl)
    if all(p.suffix.lower() in PARQUET for p in files):
        source = session.read.parquet(*[str(p) for p in files]).select(*columns)
        return source.mapInArrow(_score_batches(model, executor_request, scored_at), ddl)
    if options is None:
        raise ValueError("files other than Parquet need their FileOptions")
    paths = session.createDataFrame([(str(p),) for p in files], "path string")
    function = _score_files(model, executor_request, scored_at, options, columns)
    return paths.repartition(len(files)).mapInArrow(function, ddl)


def table_slices(month_rows: dict[str, int], parallelism: int) -> list[TableSlice]:
    """Each month cut into hash buckets of about ``PARTITION_ROWS`` rows, at least enough
    slices over all months to keep ``parallelism`` cores busy."""
    if not month_rows:
        return []
    least = math.ceil(parallelism / len(month_rows))
    found = []
    for month, count in sorted(month_rows.items()):
        buckets = max(1, least, math.ceil(count / PARTITION_ROWS))
        found += [TableSlice(month, b, buckets) for b in range(buckets)]
    return found


def write_parquet(frame: Any, folder: Path, month_column: str | None) -> None:
    """The scored rows as Parquet under ``folder``, ``MONTH=…/part-….parquet`` per month."""
    writer = frame.write.mode("overwrite")
    if month_column:
        writer = writer.partitionBy(month_column)
    writer.parquet(str(folder))


@dataclass(frozen=True)
class Tally:
    """What the written rows say: counts, the unscored ids, problems by field and rule."""

    rows: int
    scored: int
    failed_ids: tuple[str, ...]
    problems: tuple[dict[str, Any], ...]

    @property
    def failed(self) -> int:
        return self.rows - self.scored

    def rejection(self) -> InvalidInputError:
        """reject's one line: each field and rule with its count and first ids."""
        parts = [
            f"{p['field']}: {p['rule']} ({p['count']:,} rows; ids: {', '.join(p['ids'])}"
            f"{', ...' if p['count'] > len(p['ids']) else ''})"
            for p in self.problems
        ]
        return InvalidInputError(
            f"{self.failed:,} rows break the model's data contract: {'; '.join(parts)}; "
            "nothing is kept — fix those rows, or score the valid ones and name the others "
            "with --on-invalid flag"
        )


def tally(session: Any, folder: Path, id_column: str) -> Tally:
    """Counts and problems of the rows written under ``folder`` (Spark SQL, no row to the
    driver but the few ids shown)."""
    written = session.read.parquet(str(folder))
    counts = written.selectExpr("count(*) AS n", "count(persona_id) AS scored").first()
    if counts["n"] == counts["scored"]:
        return Tally(int(counts["n"]), int(counts["scored"]), (), ())
    bad = written.where("problems IS NOT NULL")
    ids = tuple(str(r[0]) for r in bad.select(f"`{id_column}`").limit(IDS_SHOWN).collect())
    each = bad.selectExpr(f"`{id_column}` AS id", "explode(split(problems, '; ')) AS problem")
    problems = []
    for row in each.groupBy("problem").count().orderBy("problem").collect():
        field, _, rule = str(row["problem"]).partition(": ")
        shown = each.where(each["problem"] == row["problem"]).select("id").limit(ROWS_SHOWN)
        problems.append(
            {
                "field": field,
                "rule": rule,
                "count": int(row["count"]),
                "ids": [str(r[0]) for r in shown.collect()],
            }
        )
    return Tally(int(counts["n"]), int(counts["scored"]), ids, tuple(problems))


def replace_folder(partial: Path, target: Path) -> None:
    """``partial`` renamed onto ``target`` (an earlier output there is removed first)."""
    if target.exists():
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    partial.replace(target)
