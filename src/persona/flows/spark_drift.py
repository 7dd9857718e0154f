"""The monitor's Spark engine: a month too big for pandas is summarised by Spark, judged here.

The monitor runs where pyspark is not importable (Mage's environment), so the month's sketch
is made by the Spark environment's ``persona drift-sketch`` in a subprocess (the
``SparkSketcher`` port, :mod:`persona.adapters.spark_jobs`), which also writes a bounded
random sample. Scores and verdicts come from the reference sketch and the month's sketch
(:mod:`persona.monitoring.sketch_drift`); the sample feeds what needs rows (quality checks,
the Evidently page, the persona mix, a retrain).

The reference sketch is logged with the model at training (``reference/reference_sketch.json``,
on the whole training split). A model trained before that has none: its sketch is made from
its reference sample, and a log line says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from persona.data.schema import DatasetSchema
from persona.errors import ConfigurationError, ModelUnavailableError
from persona.flows import train
from persona.monitoring.drift import DriftConfig
from persona.monitoring.sketch import FrameSketch
from persona.monitoring.sketch_drift import require_sketch_methods, sketch_of

logger = logging.getLogger(__name__)

SKETCH_ARTIFACT = f"{train.REFERENCE_FOLDER}/{train.SKETCH_FILE}"
ENGINES = ("pandas", "spark")
SPARK_SOURCES = ("file", "table")
SAMPLE_ROWS = 20_000  # rows of the month the monitor reads: the report page, quality, personas


@dataclass(frozen=True)
class SparkMonth:
    """A month left where it is, for the Spark engine to read (what ``load_current`` hands on
    with engine=spark)."""

    data: train.DataRequest


@dataclass(frozen=True)
class SketchedMonth:
    """What the Spark job wrote: the month's sketch (JSON) and a bounded sample (Parquet)."""

    sketch_path: str
    sample_path: str
    rows: int
    sample_rows: int


class SparkSketcher(Protocol):
    """Runs the Spark job that sketches a month (``persona drift-sketch``)."""

    def sketch(
        self, data: train.DataRequest, reference_date: str | None, folder: Path, sample_rows: int
    ) -> SketchedMonth: ...


def spark_month(data: train.DataRequest) -> SparkMonth:
    """Check the request can be read by Spark: Parquet files or the customers table."""
    if data.source not in SPARK_SOURCES:
        raise ConfigurationError(
            f"engine=spark reads the month from Parquet files (source=file) or the customers "
            f"table (source=table), not source={data.source}; use engine=pandas for it"
        )
    if data.source == "file" and not data.path:
        raise ConfigurationError("engine=spark with source=file needs the variable 'path'")
    return SparkMonth(data)


def reference_sketch(
    registry: train.Registry,
    run_id: str | None,
    reference_path: str,
    schema: DatasetSchema,
    folder: Path,
    today: date,
) -> FrameSketch:
    """The served model's reference sketch: the one logged at training, else made now from its
    reference sample (models trained before sketches were logged)."""
    if run_id is not None:
        try:
            path = registry.download_artifact(run_id, SKETCH_ARTIFACT, folder)
            sketch = FrameSketch.read(path)
            logger.info("reference sketch of run %s: %d rows", run_id, sketch.rows)
            return sketch
        except ModelUnavailableError:
            pass
    logger.info(
        "the served model has no reference sketch (trained before they were logged): "
        "sketching its reference sample %s instead",
        reference_path,
    )
    return sketch_of(pd.read_parquet(reference_path), schema, today)


def sample_note(sketched: SketchedMonth) -> str:
    return (
        f"Spark engine: drift verdicts and scores are computed on all {sketched.rows:,} rows of "
        f"the month (per-column sketches); the charts on this page show a random sample of "
        f"{sketched.sample_rows:,} rows."
    )


def sketch_current(
    sketcher: SparkSketcher | None,
    reference: FrameSketch,
    month: SparkMonth,
    folder: Path,
    sample_rows: int = SAMPLE_ROWS,
) -> SketchedMonth:
    """Run the Spark job on the month, its derived features dated as the reference sketch's."""
    if sketcher is None:
        raise ConfigurationError(
            "engine=spark needs the Spark environment: make install-spark (PERSONA_SPARK_COMMAND)"
        )
    sketched = sketcher.sketch(month.data, reference.reference_date, folder, sample_rows)
    logger.info(
        "Spark sketched %d rows of the month; the monitor reads a sample of %d",
        sketched.rows,
        sketched.sample_rows,
    )
    return sketched


def sketch_month(
    sketcher: SparkSketcher | None,
    registry: train.Registry,
    reference: Any,
    schema: DatasetSchema,
    month: SparkMonth,
    folder: Path,
    today: date,
    config: DriftConfig,
) -> tuple[FrameSketch, SketchedMonth]:
    """The served model's reference sketch and the month's, for the monitor's drift step
    (``reference``: its ``Reference``, the model's run and reference sample)."""
    require_sketch_methods(config, schema)  # a method that needs rows fails before Spark runs
    reference_side = reference_sketch(
        registry, reference.model_run_id, reference.path, schema, Path(reference.path).parent, today
    )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    current = sketch_current(sketcher, reference_side, month, folder / f"spark-{stamp}")
    return reference_side, current


def annotate_html(path: Path, note: str) -> Path:
    """Put ``note`` at the top of a saved report page (what the charts below it are drawn on)."""
    import html

    text = Path(path).read_text("utf-8")
    banner = (
        '<div style="padding:8px 16px;background:#fff4ce;font-family:sans-serif">'
        f"{html.escape(note)}</div>"
    )
    at = text.find("<body")
    at = text.find(">", at) + 1 if at >= 0 else 0
    Path(path).write_text(text[:at] + banner + text[at:], "utf-8")
    return Path(path)
