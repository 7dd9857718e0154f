"""``persona score --engine spark``: the production model on Spark's executors (entry point layer:
reads settings, builds the adapters; the per-batch work is ``score_stream.score_batch``).

Runs in the Spark environment (``.venv/spark/bin/persona``, ``PERSONA_SPARK_COMMAND``) on
``--master`` or ``SPARK_MASTER``. ``--file`` (a file or a folder of them) needs ``--out``, a
folder of Parquet partitioned by the schema's month column (``snapshot_month=2026-01/part-…``);
the table's months (``--month`` or all) go into the scores table month by month, each month one
transaction (``pg_bulk``: COPY into a staging table, one upsert), as the other engines do.
Everything is written to a hidden folder first: under reject, one bad row means nothing is
moved to ``--out`` and nothing reaches the table.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from persona.settings import Settings

logger = logging.getLogger(__name__)


def score_spark(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Score the file(s) or the table's months in Spark; the command's JSON summary."""
    from persona.adapters.spark_session import executor_errors, spark_session
    from persona.cli_score import production_model
    from persona.data.schema import load_schema
    from persona.errors import ConfigurationError
    from persona.flows.score_stream import DEFAULT_BATCH_ROWS

    if args.file and not args.out:
        raise ConfigurationError("--engine spark --file needs --out (a folder of Parquet to write)")
    if args.out and Path(args.out).suffix.lower() in (".csv", ".xlsx"):
        raise ConfigurationError(
            f"--engine spark writes a folder of Parquet partitioned by month, not {args.out}"
        )
    if args.out:
        _check_out(Path(args.out))
    rows = args.chunk_rows or DEFAULT_BATCH_ROWS
    master = args.master or settings.spark_master
    schema = load_schema(settings.schema_path)
    served = production_model(settings, schema, rows)
    conf = {
        "spark.sql.execution.arrow.maxRecordsPerBatch": str(rows),
        # a month folder "snapshot_month=2026-01" stays text when read back
        "spark.sql.sources.partitionColumnTypeInference.enabled": "false",
    }
    job = _Job(args, settings, schema, served, rows)
    started = time.perf_counter()
    with spark_session(master, "persona-score", conf) as session, executor_errors():
        job.session = session
        summary = job.run()
    seconds = time.perf_counter() - started
    summary.update(
        engine="spark",
        master=master,
        seconds=round(seconds, 3),
        rows_per_s=round(summary["rows_read"] / seconds) if seconds > 0 else None,
    )
    return summary


def _check_out(out: Path) -> None:
    """``--out`` is replaced only when it is an earlier output (Spark's ``_SUCCESS`` in it) or
    an empty folder: never a folder of someone's files, nor a file."""
    from persona.errors import ConfigurationError

    if not out.exists():
        return
    if out.is_dir() and ((out / "_SUCCESS").exists() or not any(out.iterdir())):
        return
    raise ConfigurationError(
        f"--out {out} exists and is not an earlier output of persona score --engine spark; "
        "name a new folder (it is replaced whole)"
    )


class _Job:
    """One run's values and its steps (the session is set once it is open)."""

    def __init__(
        self, args: argparse.Namespace, settings: Settings, schema: Any, served: Any, rows: int
    ) -> None:
        self.args, self.settings, self.schema, self.served, self.rows = (
            args,
            settings,
            schema,
            served,
            rows,
        )
        self.on_invalid = args.on_invalid or "reject"
        self.scored_at = datetime.now(UTC).isoformat(timespec="seconds")
        self.session: Any = None

    def request(self, has_month: bool, month: str | None) -> Any:
        from persona.flows.score_stream import StreamRequest

        spec = self.served.spec
        return StreamRequest(
            spec.id_column, self.schema.month_column, has_month, month, self.on_invalid, self.rows
        )

    def run(self) -> dict[str, Any]:
        summary: dict[str, Any] = {"segmentation": self.settings.segmentation}
        if self.args.file:
            frame, request = self.from_files(summary)
        else:
            frame, request = self.from_table(summary)
        if self.args.out:
            out = Path(self.args.out)
            partial = out.with_name(f".{out.name}.{os.getpid()}.partial")
            tallied = self.write(frame, request, partial)
            from persona.adapters.spark_scoring import replace_folder

            replace_folder(partial, out)
            return {**summary, **self.outcome(tallied), "file": str(out)}
        return {**summary, **self.into_table(frame, request)}

    def from_files(self, summary: dict[str, Any]) -> tuple[Any, Any]:
        """Every file checked on the driver (columns, month), scored on the executors."""
        from persona.adapters.spark_scoring import FileOptions, input_files, scored_frame
        from persona.errors import InvalidInputError

        spec, month_column = self.served.spec, self.schema.month_column
        options = FileOptions(
            spec.id_column,
            (*spec.categorical, month_column),
            (spec.id_column, *spec.features),
            self.args.delimiter,
            self.args.encoding,
        )
        files = input_files(Path(self.args.file))
        columns: list[str] | None = None
        request = None
        for path in files:
            reader = options.open(path)
            has_month = month_column in reader.columns
            this = self.request(has_month, self.args.month)
            wanted = this.columns_to_read(spec, reader.columns)
            if columns is None:
                columns, request = wanted, this
                summary["read"] = reader.dialect.to_dict()
            elif set(wanted) != set(columns):
                raise InvalidInputError(
                    f"{path}: its columns {sorted(wanted)} differ from those of {files[0]} "
                    f"({sorted(columns)}); score files of one layout together"
                )
        summary["files"] = len(files)
        frame = scored_frame(
            self.session,
            self.served,
            request,
            self.scored_at,
            files=files,
            options=options,
            columns=columns or [],
        )
        return frame, request

    def from_table(self, summary: dict[str, Any]) -> tuple[Any, Any]:
        """PostgreSQL: slices of each month read by the executors; otherwise the driver reads."""
        import pyarrow as pa

        from persona.adapters import database
        from persona.adapters.spark_scoring import scored_frame, table_slices

        request = self.request(True, None)
        engine = database.make_engine(self.settings.project_database_url)
        months = [self.args.month] if self.args.month else None
        table_name = self.settings.customers_table
        if engine.dialect.name != "postgresql":
            rows = database.read_months(engine, table_name, self.schema, months)
            columns = request.columns_to_read(self.served.spec, list(rows.columns))
            arrow = pa.Table.from_pandas(rows[columns], preserve_index=False)
            frame = scored_frame(self.session, self.served, request, self.scored_at, rows=arrow)
            return frame, request
        counts, available = database.month_counts(engine, table_name, self.schema, months)
        columns = request.columns_to_read(self.served.spec, available)
        slices = table_slices(counts, self.session.sparkContext.defaultParallelism)
        summary["table_slices"] = len(slices)
        frame = scored_frame(
            self.session,
            self.served,
            request,
            self.scored_at,
            slices=slices,
            database_url=self.settings.project_database_url,
            table_name=table_name,
            columns=columns,
        )
        return frame, request

    def write(self, frame: Any, request: Any, folder: Path) -> Any:
        """The scored rows under ``folder``; under reject, a bad row removes it and raises."""
        from persona.adapters.spark_scoring import tally, write_parquet

        try:
            write_parquet(frame, folder, request.month_out)
            tallied = tally(self.session, folder, request.id_column)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        if tallied.failed and self.on_invalid == "reject":
            shutil.rmtree(folder, ignore_errors=True)
            raise tallied.rejection()
        return tallied

    def into_table(self, frame: Any, request: Any) -> dict[str, Any]:
        """Each month of the scored rows merged into the scores table in its own transaction."""
        from persona.adapters import database
        from persona.cli_score import merge_scored_months
        from persona.job_records import tracked_job

        settings = self.settings
        scratch = Path(settings.home) / "spark" / f"score-{uuid.uuid4().hex[:12]}"
        label = f"{settings.customers_table} -> {settings.scores_table} (spark)"
        engine = database.make_engine(settings.project_database_url)
        with tracked_job(settings, "score", label) as job:
            try:
                tallied = self.write(frame, request, scratch)
                merged = merge_scored_months(settings, engine, self.schema, scratch, job.progress)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            table_rows = database.count_rows(engine, settings.scores_table) if merged else 0
        return {
            **self.outcome(tallied),
            "months": merged,
            "table": settings.scores_table,
            "table_rows": table_rows,
        }

    def outcome(self, tallied: Any) -> dict[str, Any]:
        """The keys of the local engine's summary."""
        return {
            "rows_read": tallied.rows,
            "scored_rows": tallied.scored,
            "failed_rows": tallied.failed,
            "failed_ids": list(tallied.failed_ids),
            "problems": list(tallied.problems),
            "model_versions": [self.served.version],
            "model": {"name": self.served.name, "version": self.served.version},
            "fast_path": self.served.compiled is not None,
        }
