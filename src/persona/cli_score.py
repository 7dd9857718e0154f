"""The ``persona score`` command: customers of the table (a month, or all) or of a file, scored by
the model holding the production alias. Handler of :mod:`persona.cli` (entry point layer).

Two engines: ``http`` (the default of ``make score``) sends chunks to the running scoring API,
so the job scores with whatever the API serves; ``local`` loads the same model the way an API
worker does and streams the rows through it in this process (``persona.flows.score_stream``):
Arrow record batches in, the same checks, fast path and labels as the API, bounded memory;
``spark`` does the same per batch on Spark's executors (``persona.adapters.spark_scoring``,
run from the Spark environment: ``.venv/spark/bin/persona``), reading the table's months in
parallel and writing Parquet partitioned by month or, month by month, the scores table.
"""

from __future__ import annotations

import argparse
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing, nullcontext
from pathlib import Path
from typing import Any

from persona.settings import Settings

ENGINES = ("http", "local", "spark")
HTTP_CHUNK_ROWS = 5_000


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``persona score`` that choose and tune the engine."""
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default="http",
        help="http: through the scoring API (PERSONA_SCORING_URL); local: load the production "
        "model in this process and stream the rows through it (for big batches; --out is "
        "Parquet or CSV); spark: the same on Spark's executors (SPARK_MASTER; run from the "
        "Spark environment, .venv/spark/bin/persona; --out is a folder of Parquet partitioned "
        "by month) (default: %(default)s)",
    )
    parser.add_argument(
        "--master",
        help="spark engine: the Spark master, local[*] or spark://HOST:PORT (default: "
        "SPARK_MASTER)",
    )
    parser.add_argument(
        "--on-invalid",
        choices=("reject", "flag"),
        help="local and spark engines, a row that breaks the model's data contract: reject stops naming "
        "field, rule and rows and keeps nothing; flag scores the others, writes it to --out "
        "with no persona and a problems column (left out of the table), lists it in the "
        "summary and exits 1 (default: reject)",
    )
    parser.add_argument(
        "--chunk-rows",
        type=int,
        help=f"rows per request (http, default {HTTP_CHUNK_ROWS:,}) or per streamed batch "
        "(local, default 100,000)",
    )


def score(args: argparse.Namespace, settings: Settings) -> Any:
    from persona.errors import ConfigurationError

    if args.master and args.engine != "spark":
        raise ConfigurationError("--master applies to --engine spark")
    if args.engine == "spark":
        from persona.cli_spark import score_spark

        return score_spark(args, settings)
    if args.engine == "local":
        return _score_local(args, settings)
    if args.on_invalid:
        raise ConfigurationError(
            "--on-invalid applies to --engine local and spark (through the API a chunk with a "
            "bad row fails whole and is reported by customer id)"
        )
    return _score_http(args, settings)


def _score_http(args: argparse.Namespace, settings: Settings) -> Any:
    from persona.adapters import database
    from persona.data.files import read_table, write_table
    from persona.data.schema import load_schema
    from persona.flows.score import score_frame
    from persona.job_records import tracked_job
    from persona.serving.client import ScoringClient

    schema = load_schema(settings.schema_path)
    months = [args.month] if args.month else None
    if args.file:
        frame = read_table(
            Path(args.file),
            schema.id_column,
            text_columns=[*schema.categorical, *schema.date_columns],
            expected_columns=schema.features,
            delimiter=args.delimiter,
            encoding=args.encoding,
        )
        if months and schema.month_column not in frame:
            frame[schema.month_column] = args.month  # a file of one month: label its rows
        elif months:
            frame = frame[frame[schema.month_column].astype(str).isin(months)]
    else:
        engine = database.make_engine(settings.project_database_url)
        frame = database.read_months(engine, settings.customers_table, schema, months)
    client = ScoringClient(
        args.url or settings.scoring_url, settings.api_token, segmentation=settings.segmentation
    )
    into_table = not args.out and not args.file
    label = f"{args.file or settings.customers_table} -> {args.out or settings.scores_table}"
    # a job that writes the scores table is on the record (a file out is the user's to see)
    with tracked_job(settings, "score", label) if into_table else nullcontext() as job:
        outcome = score_frame(frame, schema, client, args.chunk_rows or HTTP_CHUNK_ROWS)
        summary = outcome.summary()
        if args.out:
            write_table(outcome.scored, Path(args.out))
            summary["file"] = args.out
        elif into_table and len(outcome.scored):
            database.upsert_frame(
                engine,
                settings.scores_table,
                outcome.scored,
                schema,
                step="persona score",
                on_committed=job.progress,
            )
            summary["table"] = settings.scores_table
            summary["table_rows"] = database.count_rows(engine, settings.scores_table)
    return summary


def _score_local(args: argparse.Namespace, settings: Settings) -> Any:
    """The production model in this process, the rows streamed through it in record batches.

    A file is opened and its columns checked before MLflow is asked for the model, so a wrong
    file is said at once, whether MLflow answers or not.
    """
    with ExitStack() as stack:  # a stop (reject, an error) ends the table's read at once
        return _score_local_in(args, settings, stack)


def _score_local_in(args: argparse.Namespace, settings: Settings, stack: ExitStack) -> Any:
    import pyarrow as pa

    from persona.adapters import database
    from persona.data.file_batches import BatchWriter
    from persona.data.schema import load_schema
    from persona.errors import ConfigurationError
    from persona.flows.score_months import MonthSpool
    from persona.flows.score_stream import DEFAULT_BATCH_ROWS, StreamRequest, score_stream
    from persona.job_records import tracked_job
    from persona.serving.contract import InputSpec

    if args.file and not args.out:
        raise ConfigurationError("--engine local --file needs --out (a .parquet or .csv to write)")
    rows, on_invalid = args.chunk_rows or DEFAULT_BATCH_ROWS, args.on_invalid or "reject"
    schema = load_schema(settings.schema_path)
    summary: dict[str, Any] = {"segmentation": settings.segmentation}
    if args.file:
        # the schema's contract first (the served model's, unless it was trained under another)
        expected = InputSpec.from_schema(schema, rows, extra_columns="ignore")
        reader = _open_checked(args, expected, schema.month_column)
        served = production_model(settings, schema, rows)
        spec = served.spec
        if (spec.id_column, spec.categorical) != (expected.id_column, expected.categorical):
            reader = _open_checked(args, spec, schema.month_column)
        has_month = schema.month_column in reader.columns
        request = StreamRequest(
            spec.id_column, schema.month_column, has_month, args.month, on_invalid, rows
        )
        batches = reader.batches(request.columns_to_read(spec, reader.columns), rows)
        total, summary["read"] = reader.total_rows, reader.dialect.to_dict()
    else:
        served = production_model(settings, schema, rows)
        spec = served.spec
        engine = database.make_engine(settings.project_database_url)
        table_name = settings.customers_table
        months = [args.month] if args.month else None
        counts, available = database.month_counts(engine, table_name, schema, months)
        request = StreamRequest(spec.id_column, schema.month_column, True, None, on_invalid, rows)
        columns = request.columns_to_read(spec, available)

        def month_batches() -> Iterator[pa.RecordBatch]:
            """The table a month at a time, oldest first, each streamed in record batches."""
            for month in sorted(counts):
                yield from database.read_month_batches(
                    engine, table_name, schema, month, rows, columns
                )

        batches = stack.enter_context(closing(month_batches()))
        total = sum(counts.values())
    if args.out:
        with BatchWriter(Path(args.out), request.result_schema()) as writer:
            outcome = score_stream(served, batches, writer, request, total)
        return {**summary, **outcome.summary(), "file": args.out}
    label = f"{settings.customers_table} -> {settings.scores_table} (local)"
    scratch = settings.home / "scratch" / f"score-{uuid.uuid4().hex[:12]}"
    with tracked_job(settings, "score", label) as job:
        try:
            with MonthSpool(scratch, schema.month_column, request.result_schema()) as spool:
                outcome = score_stream(served, batches, spool, request, total)
            merged = merge_scored_months(settings, engine, schema, scratch, job.progress)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        table_rows = database.count_rows(engine, settings.scores_table) if merged else 0
    return {
        **summary,
        **outcome.summary(),
        "months": merged,
        "table": settings.scores_table,
        "table_rows": table_rows,
    }


def merge_scored_months(
    settings: Settings, engine: Any, schema: Any, folder: Path, progress: Callable[[str], None]
) -> list[str]:
    """Scored rows spooled by month (``score_months``) into the scores table, each month one
    transaction, oldest first; the months committed. Both table-bound batch engines end here."""
    from persona.adapters import database
    from persona.flows.score_months import merge_months

    def upsert(month: str, chunks: Iterator[Any]) -> int:
        frames = (chunk.to_pandas() for chunk in chunks)
        table = settings.scores_table
        return database.upsert_month_chunks(engine, table, month, frames, schema, "persona score")

    return merge_months(folder, schema.month_column, upsert, progress)


def _open_checked(args: argparse.Namespace, spec: Any, month_column: str | None) -> Any:
    """``args.file`` opened for batches (a ``BatchReader``); refused in one line when it cannot
    be read or lacks a feature column of ``spec`` (InputSpec), as the first batch would be."""
    from persona.data.file_batches import open_batches
    from persona.serving.columns import check_columns

    reader = open_batches(
        Path(args.file),
        id_column=spec.id_column,
        text_columns=[*spec.categorical, *([month_column] if month_column else [])],
        expected_columns=[spec.id_column, *spec.features],
        delimiter=args.delimiter,
        encoding=args.encoding,
    )
    check_columns([c for c in reader.columns if c in spec.known], reader.total_rows or 0, spec)
    return reader


def production_model(settings: Settings, schema: Any, rows: int) -> Any:
    """The version holding the alias, loaded, compiled and named as an API worker serves it (a
    ``ServedModel``); columns the model does not read are never read from the input: none is
    "extra". MLflow not answering is one line naming it (nothing is written yet)."""
    from persona.adapters.mlflow_serving import RegistryModelSource
    from persona.adapters.upstream import rerun_is_safe
    from persona.errors import UpstreamUnavailableError
    from persona.serving.model_store import served_now, spec_for_model

    source = RegistryModelSource(settings.mlflow_tracking_uri, settings.model_name)
    try:
        return served_now(source, settings.model_alias, spec_for_model(schema, rows, "ignore"))
    except UpstreamUnavailableError as exc:
        raise rerun_is_safe("persona score", str(exc)) from None
