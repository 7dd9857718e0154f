from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from persona.data.catalogue import load_catalogue
from persona.data.generator import SCENARIOS, generate_snapshot
from persona.data.schema import load_schema
from persona.errors import ConfigurationError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def catalogue():
    return load_catalogue(ROOT / "00_create_data/personas.yaml")


def test_catalogue_has_enough_personas_and_features(catalogue):
    assert len(catalogue.personas) >= 5
    assert len(catalogue.schema.numeric) >= 8
    assert len(catalogue.schema.categorical) >= 2
    assert all(p.description for p in catalogue.personas)


def test_committed_schema_matches_catalogue(catalogue):
    assert load_schema(ROOT / "00_create_data/schema.yaml").to_dict() == catalogue.schema.to_dict()


def test_same_seed_same_frame(catalogue):
    a = generate_snapshot(catalogue, 3000, "2026-02", seed=7, missing_rate=0.02, progress=False)
    b = generate_snapshot(catalogue, 3000, "2026-02", seed=7, missing_rate=0.02, progress=False)
    pd.testing.assert_frame_equal(a, b)
    c = generate_snapshot(catalogue, 3000, "2026-02", seed=8, progress=False)
    assert not a[["age"]].equals(c[["age"]])


def test_customers_keep_id_and_persona_across_months(catalogue):
    jan = generate_snapshot(catalogue, 2000, "2026-01", seed=3, progress=False)
    feb = generate_snapshot(catalogue, 2000, "2026-02", seed=3, progress=False)
    assert (jan.customer_id == feb.customer_id).all()
    assert (jan.true_persona == feb.true_persona).all()
    assert not np.allclose(jan.annual_income, feb.annual_income)
    assert set(jan.snapshot_month) == {"2026-01"}


def test_values_respect_catalogue_ranges(catalogue):
    frame = generate_snapshot(catalogue, 20000, seed=1, progress=False)
    for name, spec in catalogue.schema.numeric.items():
        assert frame[name].min() >= spec.min and frame[name].max() <= spec.max, name
        if spec.integer:
            assert (frame[name] % 1 == 0).all(), name
    assert frame.age.between(18, 95).all()
    assert (frame.annual_income >= 0).all()
    for name, levels in catalogue.schema.categorical.items():
        assert set(frame[name]) <= set(levels)
    assert frame.customer_id.is_unique


def test_missing_rate_leaves_nulls(catalogue):
    frame = generate_snapshot(catalogue, 20000, seed=1, missing_rate=0.03, progress=False)
    share = frame[list(catalogue.schema.numeric)].isna().mean()
    assert ((share > 0.02) & (share < 0.04)).all()
    assert frame.customer_id.notna().all()


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s != "none"])
def test_every_drift_scenario_changes_the_data(catalogue, scenario):
    base = generate_snapshot(catalogue, 20000, seed=5, progress=False)
    drifted = generate_snapshot(catalogue, 20000, seed=5, scenario=scenario, progress=False)
    if scenario == "income_inflation":
        assert drifted.annual_income.mean() > 1.25 * base.annual_income.mean()
    elif scenario == "mix_shift":
        share = (drifted.true_persona == "Occasional Bargain Hunters").mean()
        assert share > 0.4 > (base.true_persona == "Occasional Bargain Hunters").mean()
    elif scenario == "new_persona":
        assert (drifted.true_persona == "Marketplace Resellers").mean() == pytest.approx(
            0.2, abs=0.02
        )
        assert "Marketplace Resellers" not in set(base.true_persona)
    else:
        assert (drifted.channel == "mobile").mean() > 0.45 > (base.channel == "mobile").mean()


def test_bad_arguments_are_named(catalogue):
    with pytest.raises(ConfigurationError, match="unknown drift scenario 'nope'"):
        generate_snapshot(catalogue, 10, scenario="nope")
    with pytest.raises(ConfigurationError, match="YYYY-MM"):
        generate_snapshot(catalogue, 10, month="January")
    with pytest.raises(ConfigurationError, match="n_rows"):
        generate_snapshot(catalogue, 0)
