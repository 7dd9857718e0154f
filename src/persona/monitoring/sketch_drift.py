"""Evidently's drift scores from two sketches (:mod:`persona.monitoring.sketch`), no rows needed.

Each score follows evidently 0.7.23's own code (``evidently/legacy/calculations/stattests``):

- the automatic method (``registry._get_default_stattest``) for a reference of more than 1000
  finite values: numeric with <= 5 distinct values in reference and current together ->
  ``jensenshannon``, other numerics -> ``wasserstein``, categoricals -> ``jensenshannon``;
- binning (``utils.get_binned_data``): a numeric column whose reference has more than 20
  distinct values gets Sturges bins over the combined range (numpy's
  ``histogram_bin_edges(..., "sturges")``: ``ceil(log2(n) + 1)`` equal bins for ``n``
  reference + current values, the last one closed); otherwise one bin per value seen in
  either. ``psi`` and ``kl_div`` replace empty bins by a small share ("feel zeroes"),
  ``jensenshannon`` does not;
- ``wasserstein``: scipy's W1 divided by ``max(np.std(reference), 0.001)``;
- ``hellinger``: per level for categoricals; for numerics Sturges bins over the distinct values
  of both (their number is estimated when a side has more than ``VALUE_CAP``).

Bin shares come from exact value counts where a sketch has them, else from the CDF read off the
quantile grid (linear between two grid points, so off by at most one grid step, 0.1 % of the
rows, plus the quantile error of an approximate sketch). The p-value tests and energy distance
need the rows: configured for a column they are a ConfigurationError naming the column.
"""

from __future__ import annotations

import logging
import math
from datetime import date

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial import distance

from persona.data.schema import DatasetSchema
from persona.errors import ConfigurationError, InvalidInputError
from persona.model.preprocess import prepare_features
from persona.monitoring.drift import (
    CATEGORICAL,
    NUMERIC,
    ColumnDrift,
    DriftConfig,
    DriftResult,
    column_tests,
    is_drifted,
    summarise,
)
from persona.monitoring.sketch import (
    CategoricalSketch,
    FrameSketch,
    NumericSketch,
    sketch_frame,
)

logger = logging.getLogger(__name__)

SKETCH_METHODS = ("wasserstein", "jensenshannon", "psi", "kl_div", "hellinger")
AUTO_MIN_REFERENCE = 1000  # Evidently: a reference of <= 1000 values gets p-value tests
VALUE_BINS_UP_TO = 20  # Evidently: a reference with <= 20 distinct values is binned by value
CATEGORICAL_LIKE_UP_TO = 5  # Evidently: <= 5 distinct numeric values -> jensenshannon
OTHER = "\x00other"  # values of a side without exact counts, lumped into one bin

Sketch = NumericSketch | CategoricalSketch


def unsupported(column: str, method: str) -> ConfigurationError:
    return ConfigurationError(
        f"drift method {method!r} for column {column} needs the rows; the Spark engine answers "
        f"{', '.join(SKETCH_METHODS)} (set one in drift.yaml, or run with --engine pandas)"
    )


def _union_distinct(ref: Sketch, cur: Sketch) -> int:
    """Distinct values of both together: exact when both keep their values, else estimated
    (continuous values rarely repeat across months; integer-like ones mostly do)."""
    keys_ref, keys_cur = _keys(ref), _keys(cur)
    if keys_ref is not None and keys_cur is not None:
        return len(set(keys_ref) | set(keys_cur))
    return int(ref.distinct + cur.distinct)


def _keys(sketch: Sketch) -> tuple | None:
    if isinstance(sketch, CategoricalSketch):
        return sketch.levels
    return sketch.values


def _counts(sketch: Sketch) -> dict:
    if isinstance(sketch, CategoricalSketch):
        return dict(zip(sketch.levels, sketch.counts, strict=True))
    return dict(zip(sketch.values or (), sketch.counts or (), strict=True))


def auto_method(column: str, ref: Sketch, cur: Sketch, column_type: str) -> str:
    """Evidently's automatic choice for this pair, or an error where it would need rows."""
    if ref.count <= AUTO_MIN_REFERENCE:
        raise ConfigurationError(
            f"column {column}: the reference has {ref.count} values, for which Evidently "
            "chooses a p-value test the Spark engine cannot compute; set a method in drift.yaml "
            f"({', '.join(SKETCH_METHODS)}) or run with --engine pandas"
        )
    if column_type == CATEGORICAL:
        return "jensenshannon"
    return "jensenshannon" if _union_distinct(ref, cur) <= CATEGORICAL_LIKE_UP_TO else "wasserstein"


# --------------------------------------------------------------------------- numeric helpers


def sturges_edges(low: float, high: float, n: int) -> np.ndarray:
    """numpy's ``histogram_bin_edges(x, "sturges")`` for ``n`` values spanning low..high."""
    if low == high:
        low, high = low - 0.5, high + 0.5
        return np.linspace(low, high, 2)
    width = (high - low) / (math.log2(n) + 1.0)
    bins = int(np.ceil((high - low) / width))
    return np.linspace(low, high, bins + 1)


def cdf_left(sketch: NumericSketch, x: np.ndarray) -> np.ndarray:
    """P(X < x) from the quantile grid (exact value counts when the sketch has them)."""
    x = np.asarray(x, dtype="float64")
    if sketch.values is not None:
        values = np.asarray(sketch.values)
        cumulative = np.concatenate([[0], np.cumsum(sketch.counts)]) / sketch.count
        return cumulative[np.searchsorted(values, x, side="left")]
    q = np.asarray(sketch.quantiles, dtype="float64")
    p = np.asarray(sketch.probabilities, dtype="float64")
    i = np.clip(np.searchsorted(q, x, side="left"), 1, len(q) - 1)
    lo, hi = q[i - 1], q[i]
    span = np.where(hi > lo, hi - lo, 1.0)
    out = p[i - 1] + (x - lo) / span * (p[i] - p[i - 1])
    # x is one of the grid's values (a point mass): P(X < x) lies between the two grid points
    out = np.where(hi == x, (p[i - 1] + p[i]) / 2, out)
    out = np.where(x <= q[0], 0.0, out)
    return np.where(x > q[-1], 1.0, out)


def bin_shares(sketch: NumericSketch, edges: np.ndarray) -> np.ndarray:
    """Shares of the values in numpy's histogram bins: [e0, e1), ..., [e_{k-1}, e_k]."""
    if sketch.values is not None:
        counts, _ = np.histogram(sketch.values, edges, weights=sketch.counts)
        return counts / sketch.count
    left = cdf_left(sketch, edges)
    left[-1] = 1.0  # the last bin is closed: everything up to the max
    return np.clip(np.diff(left), 0.0, None)


def quantile_function(sketch: NumericSketch, p: np.ndarray) -> np.ndarray:
    return np.interp(p, sketch.probabilities, sketch.quantiles)


def wasserstein(ref: NumericSketch, cur: NumericSketch) -> float:
    """Normed W1 = integral |F_ref - F_cur| dx / max(std_ref, 0.001)."""
    norm = max(float(ref.std), 0.001)
    if ref.values is not None and cur.values is not None:  # exact on the union of values
        xs = np.union1d(ref.values, cur.values)
        gaps = np.diff(xs)
        f_ref = cdf_left(ref, xs[1:])  # F(x) on [x_i, x_{i+1}) = P(X < x_{i+1})
        f_cur = cdf_left(cur, xs[1:])
        return float(np.sum(np.abs(f_ref - f_cur) * gaps)) / norm
    # integral over p of |Q_ref(p) - Q_cur(p)|, both linear between their grid points (a
    # side with exact counts read at the other's); a segment where they cross is split there
    grid = np.union1d(ref.probabilities, cur.probabilities)
    p = np.union1d(grid, (grid[1:] + grid[:-1]) / 2)
    d = quantile_function(ref, p) - quantile_function(cur, p)
    a, b, h = d[:-1], d[1:], np.diff(p)
    same = a * b >= 0
    total = np.where(
        same,
        (np.abs(a) + np.abs(b)) / 2 * h,
        (a * a + b * b) / (2 * np.maximum(np.abs(a) + np.abs(b), 1e-300)) * h,
    )
    return float(total.sum()) / norm


# --------------------------------------------------------------------------- binned tests


def _fill_zeroes(shares: np.ndarray) -> np.ndarray:
    shares = shares.astype("float64").copy()
    smallest = shares[shares != 0].min()
    shares[shares == 0] = smallest / 10**6 if smallest <= 0.0001 else 0.0001
    return shares


def binned(ref: Sketch, cur: Sketch, column_type: str, fill_zeroes: bool) -> tuple:
    """Evidently's ``get_binned_data`` from two sketches."""
    if column_type == NUMERIC and ref.distinct > VALUE_BINS_UP_TO:
        edges = sturges_edges(min(ref.min, cur.min), max(ref.max, cur.max), ref.count + cur.count)
        shares = bin_shares(ref, edges), bin_shares(cur, edges)
    else:
        shares = _value_shares(ref, cur)
    if fill_zeroes:
        shares = tuple(_fill_zeroes(s) for s in shares)
    return shares


def _value_shares(ref: Sketch, cur: Sketch) -> tuple[np.ndarray, np.ndarray]:
    """One bin per value of either side; a side without exact counts (a current month with
    more than VALUE_CAP distinct values against a reference of <= 20) puts the values the
    other side lacks into one bin, which leaves Jensen-Shannon exact."""
    ref_counts, cur_counts = _counts(ref), _counts(cur)
    keys = sorted(set(ref_counts) | set(cur_counts), key=str)
    for side, counts in ((ref, ref_counts), (cur, cur_counts)):
        if isinstance(side, NumericSketch) and side.values is None and side.count:
            known = sum(counts.values())
            counts.clear()
            missing = side.count - known
            counts[OTHER] = missing
            logger.warning(
                "a column has more than its exact value counts hold: %d values binned together",
                missing,
            )
    if OTHER in ref_counts or OTHER in cur_counts:
        keys = [*keys, OTHER]
    ref_shares = np.array([ref_counts.get(k, 0) for k in keys], dtype="float64") / ref.count
    cur_shares = np.array([cur_counts.get(k, 0) for k in keys], dtype="float64") / cur.count
    return ref_shares, cur_shares


def hellinger(ref: Sketch, cur: Sketch, column_type: str) -> float:
    if column_type == CATEGORICAL:
        ref_shares, cur_shares = _value_shares(ref, cur)
    else:
        edges = sturges_edges(
            min(ref.min, cur.min), max(ref.max, cur.max), _union_distinct(ref, cur)
        )
        ref_shares, cur_shares = bin_shares(ref, edges), bin_shares(cur, edges)
    coefficient = float(np.clip(np.sum(np.sqrt(ref_shares * cur_shares)), 0, 1))
    return math.sqrt(1 - coefficient)


def score(method: str, ref: Sketch, cur: Sketch, column_type: str) -> float:
    """The score of ``method`` (a name in SKETCH_METHODS) for one column's two sketches."""
    if method == "wasserstein":
        return wasserstein(ref, cur)
    if method == "jensenshannon":
        r, c = binned(ref, cur, column_type, fill_zeroes=False)
        return float(distance.jensenshannon(r, c))
    if method == "psi":
        r, c = binned(ref, cur, column_type, fill_zeroes=True)
        return float(np.sum((r - c) * np.log(r / c)))
    if method == "kl_div":
        r, c = binned(ref, cur, column_type, fill_zeroes=True)
        return float(stats.entropy(r, c))
    if method == "hellinger":
        return hellinger(ref, cur, column_type)
    raise ValueError(f"not a sketch method: {method}")


def require_sketch_methods(config: DriftConfig, schema: DatasetSchema) -> dict:
    """Each column's configured test, checked to be one a sketch answers (before any work)."""
    tests = column_tests(config, schema.model_schema)
    for name, spec in tests.items():
        if spec.method is not None and spec.method not in SKETCH_METHODS:
            raise unsupported(name, spec.method)
    return tests


def drift_from_sketches(
    reference: FrameSketch,
    current: FrameSketch,
    schema: DatasetSchema,
    config: DriftConfig,
) -> DriftResult:
    """The same verdict the Evidently path makes (``interpret_report``), from two sketches."""
    from persona.monitoring.drift import STAT_TESTS

    inputs = schema.model_schema
    tests = require_sketch_methods(config, schema)
    columns = []
    for name, spec in tests.items():
        column_type = NUMERIC if name in inputs.numeric else CATEGORICAL
        ref, cur = reference.column(name), current.column(name)
        for side, role in ((ref, "reference"), (cur, "current")):
            if side.count == 0:
                raise InvalidInputError(
                    f"column {name}: the {role} data has no values to compare (all null)"
                )
        method = spec.method or auto_method(name, ref, cur, column_type)
        test = STAT_TESTS[method]
        threshold = test.default_threshold if spec.threshold is None else spec.threshold
        value = score(method, ref, cur, column_type)
        columns.append(
            ColumnDrift(name, method, value, threshold, is_drifted(value, threshold, test))
        )
    return summarise(columns, config, _count(reference), _count(current))


def _count(sketch: FrameSketch) -> int:
    return sketch.rows


def sketch_columns(schema: DatasetSchema) -> tuple[list[str], list[str]]:
    """The model inputs a drift sketch holds: (numeric, categorical)."""
    from persona.monitoring.drift import feature_columns

    inputs = schema.model_schema
    columns = feature_columns(inputs)
    return [c for c in columns if c in inputs.numeric], [
        c for c in columns if c not in inputs.numeric
    ]


def sketch_of(frame: pd.DataFrame, schema: DatasetSchema, day: date | str | None) -> FrameSketch:
    """The exact sketch of the model inputs of raw rows, derived features counted to ``day``
    (the schema's own date when it fixes one)."""
    dated = schema.with_reference_date(day)
    numeric, categorical = sketch_columns(dated)
    features = prepare_features(frame, dated)
    stamp = None if dated.reference_date is None else str(dated.reference_date)
    return sketch_frame(features, numeric, categorical, reference_date=stamp)
