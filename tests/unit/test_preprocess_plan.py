"""The feature plan: which columns the search log-scales and which it leaves out, and why."""

from dataclasses import replace
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from persona.data.catalogue import catalogue_from_dict, load_catalogue
from persona.data.generator import generate_snapshot
from persona.model.params import load_params
from persona.model.preprocess import (
    FeaturePlan,
    build_preprocessor,
    eta_squared,
    heavy_tailed_columns,
    independence_p_value,
    plan_features,
    prepare_features,
    tail_share,
)
from persona.model.pyfunc import load_estimator, save_estimator

ROOT = Path(__file__).resolve().parents[2]
PARAMS = load_params(ROOT / "01_model/params.yaml")
PRE = PARAMS.preprocessing
K = 9  # the default candidates' largest k, which the search screens with
DEMO = load_catalogue(ROOT / "00_create_data/personas.yaml")
HARD = load_catalogue(ROOT / "00_create_data/personas_hard.yaml")


@cache
def features(which: str, rows: int, seed: int) -> pd.DataFrame:
    catalogue = HARD if which == "hard" else DEMO
    frame = generate_snapshot(catalogue, rows, seed=seed, missing_rate=0.03, progress=False)
    return prepare_features(frame, catalogue.schema)


def test_tail_share_tells_a_heavy_tail_from_a_normal_column():
    rng = np.random.default_rng(0)
    normal = rng.normal(50, 10, 5000)
    lognormal = rng.lognormal(3, 1.0, 5000)
    assert tail_share(normal) < 0.1  # about 0.07 for any normal sample
    assert tail_share(lognormal) > 0.25
    assert tail_share(np.full(10, 3.0)) == 0.0


def test_heavy_tailed_amounts_are_logged_and_nothing_else():
    log, shares = heavy_tailed_columns(features("hard", 3000, 1), HARD.schema, PRE.log_tail_share)
    lognormal = {name for name, kind in HARD.distributions.items() if kind == "lognormal"}
    assert set(log) == lognormal
    assert max(shares[name] for name in HARD.schema.numeric if name not in log) < 0.2


def test_a_column_the_schema_does_not_declare_non_negative_is_never_logged():
    frame = features("hard", 3000, 1)
    numeric = dict(HARD.schema.numeric)
    numeric["avg_basket_value"] = replace(numeric["avg_basket_value"], min=None)
    schema = replace(HARD.schema, numeric=numeric)
    log, _ = heavy_tailed_columns(frame, schema, PRE.log_tail_share)
    assert "avg_basket_value" not in log and "annual_income" in log
    assert heavy_tailed_columns(frame, HARD.schema, None)[0] == ()  # null: never


def test_columns_without_persona_signal_are_left_out_and_the_others_kept():
    plan = plan_features(features("hard", 3000, 2), HARD.schema, PRE, K, PARAMS.seed)
    assert set(plan.dropped) == set(HARD.shared)
    kept = [name for name in HARD.schema.numeric if name not in plan.dropped]
    assert min(plan.explained[name] for name in kept) > 0.3
    assert max(plan.explained[name] for name in plan.dropped) < 0.02
    assert all(plan.p_value[name] >= PRE.drop_uninformative_p for name in plan.dropped)


def test_independence_p_value_is_uniform_for_random_groups_and_tiny_for_real_ones():
    rng = np.random.default_rng(1)
    values = rng.normal(size=4000)
    p_values = []
    for _ in range(200):
        groups = rng.integers(0, 9, size=4000)
        p_values.append(independence_p_value(eta_squared(values, groups), 9, 4000))
    assert 0.35 < np.mean(p_values) < 0.65  # uniform under independence
    assert np.mean(np.array(p_values) < 0.05) < 0.12
    shifted = values + (groups == 0) * 0.5  # one group of nine moved by half a sd
    assert independence_p_value(eta_squared(shifted, groups), 9, 4000) < 1e-6


@pytest.mark.parametrize("rows", [300, 3000])
def test_the_demo_catalogue_is_prepared_as_before(rows):
    """Nothing there is heavy-tailed or signal-free: the search sees the same features."""
    plan = plan_features(features("demo", rows, 3), DEMO.schema, PRE, K, PARAMS.seed)
    assert plan.log == () and plan.dropped == ()
    assert len(plan.p_value) == len(DEMO.schema.numeric)  # it did look


def test_a_column_that_alone_separates_a_small_segment_is_kept():
    """Only x tells P1 (10%) from P0: clusters of y and z lump them together, so they explain
    little of x, but far more than chance. A cut on eta squared itself would drop x."""
    centres = {"P0": (0, 0, 0), "P1": (6, 0, 0), "P2": (0, 4, 0), "P3": (0, 0, 4)}
    shares = {"P0": 0.5, "P1": 0.1, "P2": 0.2, "P3": 0.2}
    raw = {
        "numeric_features": {axis: {"min": -50, "max": 50} for axis in "xyz"},
        "personas": [
            {
                "name": name,
                "share": shares[name],
                "numeric": {axis: [centre[j], 1] for j, axis in enumerate("xyz")},
            }
            for name, centre in centres.items()
        ],
    }
    catalogue = catalogue_from_dict(raw)
    frame = generate_snapshot(catalogue, 2000, seed=2, progress=False)
    plan = plan_features(prepare_features(frame, catalogue.schema), catalogue.schema, PRE, 6, 0)
    assert plan.explained["x"] < 0.05
    assert plan.p_value["x"] < 1e-6
    assert plan.dropped == ()


def test_a_planned_preprocessor_is_plain_sklearn_that_loads_with_trusted_types(tmp_path):
    frame = features("hard", 1000, 1)
    plan = FeaturePlan(log=("annual_income", "avg_basket_value"), dropped=("household_size",))
    pre = build_preprocessor(HARD.schema, PRE, plan).fit(frame)
    names = list(pre.get_feature_names_out())
    assert "log_numeric__annual_income" in names and "numeric__age" in names
    assert not any("household_size" in name for name in names)
    loaded = load_estimator(save_estimator(pre, tmp_path / "pre.skops"))
    np.testing.assert_array_equal(loaded.transform(frame), pre.transform(frame))
    income = pre.named_transformers_["log_numeric"]
    column = frame["annual_income"].fillna(frame["annual_income"].median())
    expected = (np.log1p(column) - income["scale"].mean_[0]) / income["scale"].scale_[0]
    transformed = pre.transform(frame)[:, names.index("log_numeric__annual_income")]
    np.testing.assert_allclose(transformed, expected)
