"""``persona drift-sketch``: the Spark side of ``persona monitor --engine spark``.

Runs in the Spark environment (``.venv/spark/bin/persona``), started by the monitor as a
subprocess: reads one month (Parquet files, or the customers table), writes its drift sketch
(JSON), a bounded random sample of its rows (Parquet) and a small answer file the monitor
reads (``job.json``). Handler of :mod:`persona.cli` (entry point layer).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from persona.settings import Settings


def add_parser(commands: Any) -> None:
    sketch = commands.add_parser(
        "drift-sketch",
        help="(Spark environment) sketch a month's model inputs for the Spark drift engine: "
        "what `persona monitor --engine spark` runs",
    )
    sketch.add_argument("--source", choices=("file", "table"), default="file")
    sketch.add_argument("--path", action="append", default=[], help="Parquet file or folder")
    sketch.add_argument("--month", action="append", default=[], help="YYYY-MM (repeatable)")
    sketch.add_argument("--schema", help="schema YAML (default PERSONA_SCHEMA)")
    sketch.add_argument("--out", required=True, help="folder for the sketch, sample and answer")
    sketch.add_argument("--sample-rows", type=int, default=20_000)
    sketch.add_argument("--master", help="Spark master (default SPARK_MASTER)")
    sketch.add_argument(
        "--reference-date", help="YYYY-MM-DD derived date features count to (default: today)"
    )
    sketch.set_defaults(handler=drift_sketch)


def drift_sketch(args: argparse.Namespace, settings: Settings) -> Any:
    from datetime import UTC, datetime

    from persona.adapters import spark_sketch
    from persona.adapters.spark_session import spark_session
    from persona.data.schema import load_schema
    from persona.errors import ConfigurationError
    from persona.monitoring.sketch import ANSWER_NAME, SAMPLE_NAME, SKETCH_NAME

    schema = load_schema(Path(args.schema) if args.schema else settings.schema_path)
    schema = schema.with_reference_date(args.reference_date or datetime.now(UTC).date())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    master = args.master or settings.spark_master
    started = time.perf_counter()
    with spark_session(master, "persona-drift-sketch") as spark:
        if args.source == "file":
            if not args.path:
                raise ConfigurationError("drift-sketch --source file needs --path")
            raw = spark_sketch.read_parquet(spark, args.path, schema, args.month)
        else:
            raw = spark_sketch.read_table(
                spark, settings.project_database_url, settings.customers_table, schema, args.month
            )
        sketch, sample = spark_sketch.sketch_month(raw, schema, args.sample_rows)
    sketch.write(out / SKETCH_NAME)
    sample.to_parquet(out / SAMPLE_NAME, index=False)
    answer = {
        "sketch_path": str((out / SKETCH_NAME).resolve()),
        "sample_path": str((out / SAMPLE_NAME).resolve()),
        "rows": sketch.rows,
        "sample_rows": len(sample),
    }
    (out / ANSWER_NAME).write_text(json.dumps(answer), "utf-8")
    return {**answer, "master": master, "seconds": round(time.perf_counter() - started, 1)}
