"""A month's drift sketch (:mod:`persona.monitoring.sketch`) computed by Spark, in three passes.

Imports pyspark: it runs in the Spark environment only (``persona drift-sketch``, started by
the monitor as a subprocess). The month is read from Parquet files or from the customers table,
turned into model inputs by the model's own code (``prepare_features`` in ``mapInPandas``, so
derived features are computed exactly as in training and serving), kept in memory/disk once,
then summarised:

1. one ``agg``: rows, finite values, mean, population std, min, max and an HLL++ distinct count
   of every numeric column, non-null count of every categorical;
2. one ``approxQuantile`` over all numeric columns at the grid's interior probabilities, then
   the 1 % tails again (an ``agg`` counting them, an ``approxQuantile`` over the columns
   masked to their tails): skewed columns put most Sturges bins in their sparse upper tail;
3. one ``groupBy`` over (column, value) pairs of the categoricals and of the numerics with at
   most ``VALUE_CAP`` distinct values: exact level/value counts.

Relative error of the quantiles: ``RELATIVE_ERROR = 1 / (2 * GRID)`` = 0.0005, i.e. a grid
quantile's rank is off by at most 0.05 % of the rows, half the grid's spacing. Bin shares read
off the interpolated CDF are then off by at most about one grid step (0.1 %) plus that, far
below what moves a distance test near its threshold (0.1); a finer error costs memory
(Greenwald-Khanna keeps O(1/e) entries per column and partition) and time for nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd

from persona.data.schema import DatasetSchema
from persona.errors import InvalidInputError
from persona.model.preprocess import prepare_features
from persona.monitoring.sketch import (
    GRID,
    TAIL,
    VALUE_CAP,
    CategoricalSketch,
    FrameSketch,
    NumericSketch,
)
from persona.monitoring.sketch_drift import sketch_columns

logger = logging.getLogger(__name__)

RELATIVE_ERROR = 1.0 / (2 * GRID)
# HLL++ error of the distinct count: it only picks the columns counted exactly (<= VALUE_CAP
# values, with margin); rsd 0.01 made the pass 8x slower (28 s vs 3.4 s at 1M rows, local[2])
DISTINCT_RSD = 0.05


def read_parquet(spark: Any, paths: Sequence[str], schema: DatasetSchema, months: Sequence[str]):
    """The rows of ``months`` (all when empty) in Parquet files or folders."""
    from pyspark.errors import AnalysisException
    from pyspark.sql import functions as F

    try:
        frame = spark.read.parquet(*paths)
    except AnalysisException as exc:  # a missing path, or files that are not Parquet
        reason = str(exc).splitlines()[0][:300]
        raise InvalidInputError(f"cannot read {', '.join(paths)} as Parquet: {reason}") from None
    month = schema.month_column
    if months:
        if month not in frame.columns:
            raise InvalidInputError(
                f"{', '.join(paths)}: no month column {month!r} to pick {list(months)} from"
            )
        frame = frame.where(F.col(month).cast("string").substr(1, 7).isin(list(months)))
    return frame


def model_inputs(frame: Any, schema: DatasetSchema) -> Any:
    """Model inputs of the raw rows, by ``prepare_features`` on each Arrow batch: numerics as
    double, categoricals as text (what the in-process sketch holds)."""
    from pyspark.sql import types as T

    numeric, categorical = sketch_columns(schema)
    missing = [c for c in schema.features if c not in frame.columns]
    if missing:
        raise InvalidInputError(f"the current data lacks the raw feature columns {missing}")
    fields = [T.StructField(c, T.DoubleType()) for c in numeric]
    fields += [T.StructField(c, T.StringType()) for c in categorical]
    raw = frame.select(*schema.features)

    def convert(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            features = prepare_features(batch, schema)
            out = features[numeric].copy()
            for name in categorical:
                values = features[name]
                out[name] = values.where(values.isna(), values.astype(str))
            yield out[[*numeric, *categorical]]

    return raw.mapInPandas(convert, T.StructType(fields))


def sketch_spark_frame(
    frame: Any,
    numeric: Sequence[str],
    categorical: Sequence[str],
    reference_date: str | None = None,
    relative_error: float = RELATIVE_ERROR,
) -> FrameSketch:
    """The sketch of a DataFrame of model inputs (see the module's docstring for the passes)."""
    from pyspark.sql import functions as F

    clean = frame.select(
        *[
            F.when(F.isnan(c) | F.col(c).isin(float("inf"), float("-inf")), None)
            .otherwise(F.col(c))
            .alias(c)
            for c in numeric
        ],
        *categorical,
    )
    stats_row = clean.agg(
        F.count(F.lit(1)).alias("__rows"),
        *[
            expression.alias(f"{c}__{name}")
            for c in numeric
            for name, expression in (
                ("count", F.count(c)),
                ("mean", F.mean(c)),
                ("std", F.stddev_pop(c)),
                ("min", F.min(c)),
                ("max", F.max(c)),
                ("distinct", F.approx_count_distinct(c, DISTINCT_RSD)),
            )
        ],
        *[F.count(c).alias(f"{c}__count") for c in categorical],
    ).first()
    stats = stats_row.asDict()
    rows = int(stats["__rows"])
    present = [c for c in numeric if stats[f"{c}__count"]]
    grids = _quantile_grids(
        clean, present, {c: int(stats[f"{c}__count"]) for c in present}, relative_error
    )
    small = [c for c in present if stats[f"{c}__distinct"] <= VALUE_CAP * (1 + 5 * DISTINCT_RSD)]
    counts = _value_counts(clean, small, categorical)
    numeric_sketches = {}
    for c in numeric:
        count = int(stats[f"{c}__count"])
        if not count:
            numeric_sketches[c] = NumericSketch(0, rows, *(float("nan"),) * 4, 0)
            continue
        low, high = float(stats[f"{c}__min"]), float(stats[f"{c}__max"])
        values = counts.get(c)
        exact = values is not None and len(values) <= VALUE_CAP
        numeric_sketches[c] = NumericSketch(
            count=count,
            nulls=rows - count,
            mean=float(stats[f"{c}__mean"]),
            std=float(stats[f"{c}__std"]),
            min=low,
            max=high,
            distinct=len(values) if exact else int(stats[f"{c}__distinct"]),
            quantiles=tuple(float(q) for q in (low, *grids[c][1][1:-1], high)),
            probabilities=tuple(float(p) for p in grids[c][0]),
            values=tuple(float(v) for v in sorted(values)) if exact else None,
            counts=tuple(int(values[v]) for v in sorted(values)) if exact else None,
        )
    categorical_sketches = {}
    for c in categorical:
        levels = counts.get(c, {})
        keys = sorted(levels)
        categorical_sketches[c] = CategoricalSketch(
            count=int(stats[f"{c}__count"]),
            nulls=rows - int(stats[f"{c}__count"]),
            levels=tuple(keys),
            counts=tuple(int(levels[k]) for k in keys),
        )
    return FrameSketch(
        rows=rows,
        numeric=numeric_sketches,
        categorical=categorical_sketches,
        reference_date=reference_date,
        method=f"spark approxQuantile, relative error {relative_error:g}",
    )


def _quantile_grids(
    frame: Any, columns: Sequence[str], counts: dict[str, int], relative_error: float
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(probabilities, quantiles) of each column: the core grid in one ``approxQuantile``, then
    each 1 % tail again in one more over the columns masked to their tails (its counts in one
    ``agg``), so a tail quantile's rank is off by ``relative_error`` of the tail's rows only."""
    from pyspark.sql import functions as F

    if not columns:
        return {}
    core = np.linspace(0.0, 1.0, GRID + 1)
    found = frame.approxQuantile(list(columns), core[1:-1].tolist(), relative_error)
    cores = {c: np.array([np.nan, *q, np.nan]) for c, q in zip(columns, found, strict=True)}
    low_at, high_at = int(round(TAIL * GRID)), int(round((1 - TAIL) * GRID))
    masked = frame.select(
        *[F.when(F.col(c) <= float(cores[c][low_at]), F.col(c)).alias(f"{c}__lo") for c in columns],
        *[
            F.when(F.col(c) >= float(cores[c][high_at]), F.col(c)).alias(f"{c}__hi")
            for c in columns
        ],
    )
    sizes = masked.agg(*[F.count(name).alias(name) for name in masked.columns]).first().asDict()
    local = np.linspace(0.0, 1.0, GRID + 1)
    tails = masked.approxQuantile(masked.columns, local[1:-1].tolist(), relative_error)
    tails = dict(zip(masked.columns, tails, strict=True))
    grids = {}
    for c in columns:
        low_share, high_share = sizes[f"{c}__lo"] / counts[c], sizes[f"{c}__hi"] / counts[c]
        keep = (core > low_share) & (core < 1 - high_share)
        probabilities = np.concatenate(
            [
                [0.0],
                local[1:-1] * low_share,
                core[keep],
                1 - high_share + local[1:-1] * high_share,
                [1.0],
            ]
        )
        quantiles = np.concatenate(
            [[np.nan], tails[f"{c}__lo"], cores[c][keep], tails[f"{c}__hi"], [np.nan]]
        )
        order = np.argsort(probabilities, kind="stable")
        probabilities, quantiles = probabilities[order], quantiles[order]
        inner = np.maximum.accumulate(quantiles[1:-1])  # approximate ranks may cross
        grids[c] = probabilities, np.array([np.nan, *inner, np.nan])
    return grids


def _value_counts(frame: Any, numeric: Sequence[str], categorical: Sequence[str]) -> dict:
    """Exact counts per (column, value) of the given columns, in one groupBy."""
    from pyspark.sql import functions as F

    if not numeric and not categorical:
        return {}
    pairs = [
        F.struct(F.lit(c).alias("k"), F.lit(None).cast("string").alias("s"), F.col(c).alias("n"))
        for c in numeric
    ] + [
        F.struct(F.lit(c).alias("k"), F.col(c).alias("s"), F.lit(None).cast("double").alias("n"))
        for c in categorical
    ]
    exploded = frame.select(F.explode(F.array(*pairs)).alias("p")).select("p.k", "p.s", "p.n")
    grouped = (
        exploded.where(F.col("s").isNotNull() | F.col("n").isNotNull())
        .groupBy("k", "s", "n")
        .count()
        .collect()
    )
    out: dict[str, dict] = {}
    for row in grouped:
        key = row["n"] if row["k"] in numeric else row["s"]
        out.setdefault(row["k"], {})[key] = int(row["count"])
    return out


def bounded_sample(frame: Any, rows: int, total: int, seed: int = 7) -> pd.DataFrame:
    """About ``rows`` random rows (at most that many) of the raw month, as pandas: what the
    report page, the quality checks and the persona mix look at."""
    fraction = min(1.0, rows * 1.05 / max(total, 1))
    sample = frame if fraction >= 1.0 else frame.sample(fraction=fraction, seed=seed)
    return sample.limit(rows).toPandas()


def sketch_month(
    raw: Any, schema: DatasetSchema, sample_rows: int, seed: int = 7
) -> tuple[FrameSketch, pd.DataFrame]:
    """The sketch of a month's model inputs (``schema`` dated as the reference sketch is) and a
    random sample of at most ``sample_rows`` of its raw rows."""
    from pyspark import StorageLevel

    numeric, categorical = sketch_columns(schema)
    inputs = model_inputs(raw, schema).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        stamp = None if schema.reference_date is None else str(schema.reference_date)
        sketch = sketch_spark_frame(inputs, numeric, categorical, reference_date=stamp)
    finally:
        inputs.unpersist()
    if not sketch.rows:
        raise InvalidInputError("the month has no rows to check for drift")
    sample = bounded_sample(raw, sample_rows, sketch.rows, seed)
    logger.info("sketched %d rows; sample of %d rows", sketch.rows, len(sample))
    return sketch, sample


def read_table(
    spark: Any,
    url: str,
    table_name: str,
    schema: DatasetSchema,
    months: Sequence[str],
    partitions: int | None = None,
) -> Any:
    """The rows of ``months`` of the customers table, read by the executors: each task streams
    its share (``pg_bulk.hash_bucket`` of the id) with ``COPY ... TO STDOUT`` (``pg_bulk``),
    so no row passes through the driver and no JDBC jar is needed."""
    import sqlalchemy as sa
    from pyspark.sql import types as T

    from persona.adapters.database import months_query
    from persona.adapters.pg_bulk import arrow_type

    engine = sa.create_engine(url)
    try:
        table = sa.Table(table_name, sa.MetaData(), autoload_with=engine)
    except sa.exc.NoSuchTableError:
        raise InvalidInputError(f"table {table_name!r} does not exist; ingest data first") from None
    finally:
        engine.dispose()
    if engine.dialect.name != "postgresql":
        raise InvalidInputError(
            "engine=spark reads the customers table from PostgreSQL only; export the month "
            "to Parquet and use source=file"
        )
    types = {str(c.name): arrow_type(c.type) for c in table.columns}
    spark_types = {"int64": T.LongType(), "double": T.DoubleType(), "string": T.StringType()}
    unmapped = [name for name, kind in types.items() if kind is None]
    if unmapped:
        raise InvalidInputError(f"table {table_name!r}: columns of unsupported types {unmapped}")
    out_schema = T.StructType([T.StructField(n, spark_types[str(k)]) for n, k in types.items()])
    parts = partitions or max(2, spark.sparkContext.defaultParallelism * 2)
    id_column = schema.id_column

    def read(batches: Iterator[Any]) -> Iterator[Any]:
        import pyarrow as pa

        from persona.adapters.pg_bulk import copy_read, hash_bucket

        worker = sa.create_engine(url, poolclass=sa.pool.NullPool)
        mirror = sa.Table(table_name, sa.MetaData(), autoload_with=worker)
        arrow_schema = pa.schema([(n, t) for n, t in types.items()])
        bucket = hash_bucket(mirror.c[id_column], parts)
        for batch in batches:
            for part in batch.column("id").to_pylist():
                query = months_query(mirror, schema, months or None).where(bucket == part)
                with worker.connect() as connection:
                    frame = copy_read(connection, query)
                if len(frame):
                    yield from pa.Table.from_pandas(
                        frame, arrow_schema, preserve_index=False
                    ).to_batches()
        worker.dispose()

    ids = spark.range(0, parts, numPartitions=parts)
    return ids.mapInArrow(read, out_schema)
