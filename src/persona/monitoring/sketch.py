"""Per-column summaries (sketches) of a frame, small enough to keep as JSON, rich enough to
answer Evidently's distance tests without the rows.

A month too big for pandas is summarised in Spark (:mod:`persona.adapters.spark_sketch`), the
model's training frame at training time, and both are compared in process by
:mod:`persona.monitoring.sketch_drift`. This module is pure: numpy and pandas only, the
sketch of a pandas frame here is exact.

What a numeric column keeps, and why:

- ``count`` (finite values) and ``nulls`` (null or infinite): Evidently drops both before a
  test, and its automatic choice looks at the reference's remaining size (> 1000 rows);
- ``mean``/``std`` (population, as ``np.std``): the normed Wasserstein divides by the
  reference's std; ``min``/``max``: the Sturges bins span the combined range;
- ``quantiles`` at ``probabilities``: ``k / GRID`` (min and max at the ends) and as many again
  in each 1 % tail ("inverted CDF", an actual value of the column, as Spark's
  ``approxQuantile`` returns): the CDF and the quantile function that bin counts and
  Wasserstein are read from;
- ``distinct`` and, for at most ``VALUE_CAP`` distinct values (``EXACT_VALUE_CAP`` in
  process), the exact ``values`` and their ``counts``: Evidently bins by value when the reference has <= 20 distinct values, treats
  <= 5 distinct values (reference and current together) as categorical-like, and the integer
  columns of a customer table (age, tenure, visits) are then counted exactly, not interpolated.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from persona.errors import InvalidInputError
from persona.values import from_plain, to_plain

GRID = 1000  # quantile probabilities 0, 1/GRID, ..., 1: 0.1 % of the rows between two
TAIL = 0.01  # ... and GRID more in each 1 % tail (0.001 % apart): skewed columns (incomes,
# basket values) put most Sturges bins in the sparse upper tail, where a coarse grid smears
VALUE_CAP = 1000  # numeric columns with at most this many distinct values keep exact counts
# ... in process (exact anyway) up to this many: a model's reference sample (20,000 rows) is then
# kept whole, so its sparse tails are not smeared across the empty bins PSI and KL are so
# sensitive to (an empty bin is filled with a share a million times below the smallest one)
EXACT_VALUE_CAP = 25_000
SKETCH_VERSION = 1
# what `persona drift-sketch` writes into its --out folder for the monitor
SKETCH_NAME, SAMPLE_NAME, ANSWER_NAME = "current_sketch.json", "current_sample.parquet", "job.json"


def grid_probabilities(grid: int = GRID) -> np.ndarray:
    """The probabilities of the quantiles a sketch keeps: the core grid and the two tails."""
    core = np.linspace(0.0, 1.0, grid + 1)
    low, high = np.linspace(0.0, TAIL, grid + 1), np.linspace(1.0 - TAIL, 1.0, grid + 1)
    return np.unique(np.round(np.concatenate([core, low, high]), 12))


@dataclass(frozen=True)
class NumericSketch:
    count: int  # finite values
    nulls: int  # null or infinite: what Evidently drops
    mean: float
    std: float  # population std (ddof=0), as np.std in Evidently's normed Wasserstein
    min: float
    max: float
    distinct: int  # exact when ``values`` is set; else exact (pandas) or HLL++ (Spark)
    quantiles: tuple[float, ...] = ()  # () when count == 0
    probabilities: tuple[float, ...] = ()  # of the quantiles, increasing from 0 to 1
    values: tuple[float, ...] | None = None  # sorted distinct values (<= VALUE_CAP of them)
    counts: tuple[int, ...] | None = None  # their counts

    @property
    def exact_values(self) -> bool:
        return self.values is not None


@dataclass(frozen=True)
class CategoricalSketch:
    count: int  # non-null values
    nulls: int
    levels: tuple[str, ...] = ()
    counts: tuple[int, ...] = ()

    @property
    def distinct(self) -> int:
        return len(self.levels)


@dataclass(frozen=True)
class FrameSketch:
    """Sketches of a frame's model inputs; ``reference_date`` is the date derived features
    counted days to (None: the schema has no date features or fixes its own)."""

    rows: int
    numeric: dict[str, NumericSketch] = field(default_factory=dict)
    categorical: dict[str, CategoricalSketch] = field(default_factory=dict)
    reference_date: str | None = None
    method: str = "exact"  # how the quantiles were found (exact, or approxQuantile's error)
    version: int = SKETCH_VERSION

    def column(self, name: str) -> NumericSketch | CategoricalSketch:
        found = self.numeric.get(name) or self.categorical.get(name)
        if found is None:
            raise InvalidInputError(
                f"the drift sketch has no column {name!r} (it has "
                f"{sorted([*self.numeric, *self.categorical])})"
            )
        return found

    def to_json(self) -> str:
        return json.dumps(to_plain(self), allow_nan=False)

    @classmethod
    def from_json(cls, text: str, source: str = "drift sketch") -> FrameSketch:
        try:
            raw = json.loads(text)
            sketch = from_plain(cls, raw)
        except (ValueError, TypeError, KeyError) as exc:
            raise InvalidInputError(f"{source}: not a drift sketch ({exc})") from None
        if sketch.version != SKETCH_VERSION:
            raise InvalidInputError(
                f"{source}: drift sketch version {sketch.version}, expected {SKETCH_VERSION}"
            )
        return sketch

    def write(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json(), "utf-8")
        return path

    @classmethod
    def read(cls, path: Path) -> FrameSketch:
        return cls.from_json(Path(path).read_text("utf-8"), source=str(path))


# --------------------------------------------------------------------------- pandas, exact


def numeric_sketch(
    series: pd.Series, grid: int = GRID, value_cap: int = EXACT_VALUE_CAP
) -> NumericSketch:
    """The exact sketch of one numeric column (infinite values count as nulls, as in Evidently)."""
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    finite = values[np.isfinite(values)]
    nulls = int(len(values) - len(finite))
    if not len(finite):
        return NumericSketch(0, nulls, math.nan, math.nan, math.nan, math.nan, 0)
    points, counts = np.unique(finite, return_counts=True)
    probabilities = grid_probabilities(grid)
    quantiles = np.quantile(finite, probabilities, method="inverted_cdf")
    small = len(points) <= value_cap
    return NumericSketch(
        count=int(len(finite)),
        nulls=nulls,
        mean=float(finite.mean()),
        std=float(finite.std()),
        min=float(finite.min()),
        max=float(finite.max()),
        distinct=int(len(points)),
        quantiles=tuple(float(q) for q in quantiles),
        probabilities=tuple(float(p) for p in probabilities),
        values=tuple(float(v) for v in points) if small else None,
        counts=tuple(int(c) for c in counts) if small else None,
    )


def categorical_sketch(series: pd.Series) -> CategoricalSketch:
    """Level counts of one categorical column, levels as text (what JSON keys hold)."""
    present = series.dropna()
    counts = present.astype(str).value_counts(sort=False).sort_index()
    return CategoricalSketch(
        count=int(len(present)),
        nulls=int(len(series) - len(present)),
        levels=tuple(str(v) for v in counts.index),
        counts=tuple(int(c) for c in counts.to_numpy()),
    )


def sketch_frame(
    frame: pd.DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
    reference_date: str | None = None,
    value_cap: int = EXACT_VALUE_CAP,
) -> FrameSketch:
    """The exact sketch of the model inputs of ``frame`` (derived features already computed)."""
    missing = [c for c in (*numeric, *categorical) if c not in frame.columns]
    if missing:
        raise InvalidInputError(f"cannot sketch: the frame lacks the columns {missing}")
    return FrameSketch(
        rows=len(frame),
        numeric={name: numeric_sketch(frame[name], value_cap=value_cap) for name in numeric},
        categorical={name: categorical_sketch(frame[name]) for name in categorical},
        reference_date=reference_date,
        method="exact",
    )


def merge_value_counts(parts: Mapping[Any, int]) -> tuple[tuple[Any, ...], tuple[int, ...]]:
    """Sorted keys and their counts (helper for adapters that count values themselves)."""
    keys = sorted(parts)
    return tuple(keys), tuple(int(parts[k]) for k in keys)
