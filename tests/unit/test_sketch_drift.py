"""Drift scores from sketches against Evidently's own stattests and scipy, on small data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from persona.adapters import evidently_report
from persona.data.catalogue import load_catalogue
from persona.data.generator import generate_snapshot
from persona.errors import ConfigurationError
from persona.monitoring.drift import drift_config_from_dict, interpret_report
from persona.monitoring.sketch import (
    GRID,
    FrameSketch,
    NumericSketch,
    categorical_sketch,
    numeric_sketch,
    sketch_frame,
)
from persona.monitoring.sketch_drift import (
    SKETCH_METHODS,
    auto_method,
    cdf_left,
    drift_from_sketches,
    score,
    sketch_columns,
    sturges_edges,
)

ROOT = Path(__file__).resolve().parents[2]
RNG = np.random.default_rng(7)


def _evidently(method: str, ref: pd.Series, cur: pd.Series, kind: str) -> float:
    from evidently.legacy.calculations.stattests.registry import get_registered_stattest
    from evidently.legacy.core import ColumnType

    column_type = ColumnType.Numerical if kind == "numeric" else ColumnType.Categorical
    test = get_registered_stattest(method, column_type)
    return float(test(ref.copy(), cur.copy(), column_type, 0.1).drift_score)


def _sketch(series: pd.Series, kind: str, cap: int):
    return (
        numeric_sketch(series, value_cap=cap) if kind == "numeric" else categorical_sketch(series)
    )


CONTINUOUS = (
    pd.Series(RNG.lognormal(10, 0.5, 6000)),
    pd.Series(RNG.lognormal(10.15, 0.55, 9000)),
)
INTEGERS = (pd.Series(RNG.poisson(30, 5000).astype(float)), pd.Series(RNG.poisson(32, 7000) * 1.0))
FEW_VALUES = (pd.Series(RNG.integers(0, 4, 4000) * 1.0), pd.Series(RNG.integers(0, 5, 3000) * 1.0))
LEVELS = (
    pd.Series(RNG.choice(["a", "b", "c", "d"], 5000, p=[0.4, 0.3, 0.2, 0.1])),
    pd.Series(RNG.choice(["a", "b", "c", "e"], 6000, p=[0.3, 0.3, 0.3, 0.1])),
)


_CASES = {
    # exact value counts: the same numbers as Evidently up to rounding
    "integers": (INTEGERS, "numeric", 1000, 1e-9),
    "few-values": (FEW_VALUES, "numeric", 1000, 1e-9),
    "levels": (LEVELS, "categorical", 1000, 1e-9),
    "continuous-exact": (CONTINUOUS, "numeric", 25_000, 1e-9),
    # interpolated between grid points (what Spark's sketch of a big month holds)
    "continuous-grid": (CONTINUOUS, "numeric", 0, 0.02),
}


@pytest.mark.parametrize(
    ("method", "case"),
    [
        (method, case)
        for method in SKETCH_METHODS
        for case, (_pair, kind, _cap, _tol) in _CASES.items()
        if not (kind == "categorical" and method == "wasserstein")  # numeric only
    ],
)
def test_scores_match_evidently(method, case):
    (ref, cur), kind, cap, tolerance = _CASES[case]
    expected = _evidently(method, ref, cur, kind)
    got = score(method, _sketch(ref, kind, cap), _sketch(cur, kind, cap), kind)
    assert got == pytest.approx(expected, abs=tolerance, rel=tolerance)


def test_wasserstein_matches_scipy_on_continuous_values():
    ref, cur = CONTINUOUS
    expected = stats.wasserstein_distance(ref, cur) / np.std(ref)
    got = score(
        "wasserstein", numeric_sketch(ref, value_cap=0), numeric_sketch(cur, value_cap=0), "numeric"
    )
    assert got == pytest.approx(expected, rel=0.005)


def test_sturges_edges_are_numpys():
    values = RNG.normal(size=12345)
    expected = np.histogram_bin_edges(values, bins="sturges")
    np.testing.assert_allclose(sturges_edges(values.min(), values.max(), len(values)), expected)


def test_cdf_from_the_grid_is_within_one_step():
    values = pd.Series(RNG.gamma(2.0, size=20000))
    sketch = numeric_sketch(values, value_cap=0)
    xs = np.quantile(values, [0.013, 0.25, 0.5, 0.777, 0.999])
    true = np.array([(values < x).mean() for x in xs])
    assert np.max(np.abs(cdf_left(sketch, xs) - true)) <= 1.0 / GRID


def test_infinite_values_count_as_nulls_and_counts_are_exact():
    sketch = numeric_sketch(pd.Series([1.0, 2.0, np.inf, None, 2.0]))
    assert (sketch.count, sketch.nulls, sketch.distinct) == (3, 2, 2)
    assert sketch.values == (1.0, 2.0) and sketch.counts == (1, 2)
    assert sketch.std == pytest.approx(np.std([1.0, 2.0, 2.0]))


def test_automatic_method_follows_evidentlys_rules():
    big, small = numeric_sketch(INTEGERS[0]), numeric_sketch(INTEGERS[0].head(900))
    few = numeric_sketch(FEW_VALUES[0])
    assert auto_method("x", big, big, "numeric") == "wasserstein"
    assert auto_method("x", few, few, "numeric") == "jensenshannon"
    assert (
        auto_method(
            "c", categorical_sketch(LEVELS[0]), categorical_sketch(LEVELS[1]), "categorical"
        )
        == "jensenshannon"
    )
    with pytest.raises(ConfigurationError, match="column x: the reference has 900 values"):
        auto_method("x", small, big, "numeric")


def test_sketch_round_trips_through_json():
    frame = pd.DataFrame({"x": CONTINUOUS[0], "c": LEVELS[0].head(6000)})
    sketch = sketch_frame(frame, ["x"], ["c"], reference_date="2026-01-31")
    back = FrameSketch.from_json(sketch.to_json())
    assert back == sketch
    assert isinstance(back.numeric["x"], NumericSketch) and back.reference_date == "2026-01-31"


@pytest.fixture(scope="module")
def months():
    catalogue = load_catalogue(ROOT / "00_create_data/personas.yaml")
    reference = generate_snapshot(catalogue, 3000, "2026-01", 3, progress=False)
    current = generate_snapshot(catalogue, 4000, "2026-02", 4, "channel_shift", progress=False)
    return catalogue.schema, reference, current


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"defaults": {"numeric": {"method": "psi", "threshold": 0.1}}},
        {"columns": {"channel": {"method": "hellinger", "threshold": 0.05}}},
    ],
    ids=["automatic", "psi", "hellinger"],
)
def test_verdicts_match_the_evidently_report(months, overrides):
    schema, reference, current = months
    config = drift_config_from_dict({"min_rows": 100, **overrides})
    _, report = evidently_report.run_drift_report(reference, current, schema, config)
    expected = interpret_report(report, config, len(reference), len(current))
    numeric, categorical = sketch_columns(schema)
    got = drift_from_sketches(
        sketch_frame(reference, numeric, categorical),
        sketch_frame(current, numeric, categorical),
        schema,
        config,
    )
    assert [(c.column, c.method, c.drifted) for c in got.columns] == [
        (c.column, c.method, c.drifted) for c in expected.columns
    ]
    for mine, theirs in zip(got.columns, expected.columns, strict=True):
        assert mine.score == pytest.approx(theirs.score, abs=0.01), mine.column
    assert (got.drift_share, got.dataset_drift) == (expected.drift_share, expected.dataset_drift)


def test_a_method_that_needs_rows_is_a_clear_error(months):
    schema, reference, current = months
    config = drift_config_from_dict({"min_rows": 100, "columns": {"age": {"method": "ks"}}})
    numeric, categorical = sketch_columns(schema)
    sketch = sketch_frame(reference, numeric, categorical)
    with pytest.raises(
        ConfigurationError, match=r"'ks' for column age .*wasserstein, jensenshannon"
    ):
        drift_from_sketches(sketch, sketch, schema, config)
