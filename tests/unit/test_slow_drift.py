"""Slow drift (a CUSUM of each numeric column's mean shift over months) and the retrain policy."""

from __future__ import annotations

import json
import math

import pytest
from conftest import ROOT

from persona.data.catalogue import load_catalogue
from persona.data.generator import generate_snapshot
from persona.errors import ConfigurationError
from persona.monitoring.drift import drift_config_from_dict, load_drift_config
from persona.monitoring.retrain_policy import RetrainPolicy, apply_policy, retrain_policy_from_dict
from persona.monitoring.slow_drift import (
    MonthShifts,
    PastRun,
    SlowDriftConfig,
    SlowDriftResult,
    consecutive_months,
    cusum,
    mean_shifts,
    slow_drift_config_from_dict,
)
from persona.values import from_plain, to_plain

pytestmark = pytest.mark.unit

CATALOGUE = load_catalogue(ROOT / "00_create_data/personas.yaml")
NUMERIC = list(CATALOGUE.schema.numeric)
CONFIG = SlowDriftConfig()


@pytest.fixture(scope="module")
def reference():
    return generate_snapshot(CATALOGUE, 20_000, "2026-12", seed=501, progress=False)


def _months(reference, factors, rows=10_000, population=502):
    """Months of the same customers whose incomes are ``factor`` times what they would be."""
    months = []
    for index, factor in enumerate(factors, start=1):
        frame = generate_snapshot(CATALOGUE, rows, f"2027-{index:02d}", population, progress=False)
        frame["annual_income"] = frame["annual_income"] * factor
        months.append(MonthShifts(mean_shifts(reference, frame, NUMERIC), rows, len(reference)))
    return months


def _first_flagged(months) -> int | None:
    return next((t for t in range(1, len(months) + 1) if cusum(months[:t], CONFIG).flagged), None)


def test_three_months_of_3_percent_rises_are_flagged_by_the_third(reference):
    level = _months(reference, [1.03, 1.03, 1.03])  # each month 3% above the reference
    compounding = _months(reference, [1.03, 1.03**2, 1.03**3])
    assert not cusum(level[:1], CONFIG).flagged  # one 3% month alone is within the allowance
    for months in (level, compounding):
        first = _first_flagged(months)
        assert first is not None and first <= 3
        assert cusum(months[:first], CONFIG).flagged_columns == ("annual_income",)
    flagged = cusum(level[: _first_flagged(level)], CONFIG)
    (text,) = flagged.descriptions()
    assert text.startswith("annual_income: cumulative shift +0.") and "months" in text
    assert flagged.descriptions(besides=("annual_income",)) == []  # the alert lists it once


def test_fresh_months_are_not_flagged(reference):
    for population in (503, 504):
        months = _months(reference, [1.0] * 6, population=population)
        assert not any(cusum(months[:t], CONFIG).flagged for t in range(1, 7))


def test_a_small_month_needs_a_larger_shift_to_count():
    assert CONFIG.allowance_for(1_000, 20_000) > CONFIG.allowance_for(100_000, 20_000)
    assert CONFIG.allowance_for(100_000, 20_000) == CONFIG.allowance
    month = {"annual_income": 0.04}
    assert cusum([MonthShifts(month, 100_000, 20_000)] * 2, CONFIG).flagged
    assert not cusum([MonthShifts(month, 1_000, 20_000)] * 2, CONFIG).flagged


def test_a_flagged_side_restarts_and_a_missing_column_carries_the_state():
    shift = MonthShifts({"age": 0.04}, 100_000, 20_000)
    flags = [cusum([shift] * t, CONFIG).flagged for t in range(1, 5)]
    assert flags == [False, True, False, True]  # 0.02, 0.04 > 0.03: flag, restart, ...
    gap = MonthShifts({}, 100_000, 20_000)
    assert cusum([shift, gap, shift], CONFIG).flagged
    down = cusum([MonthShifts({"age": -0.04}, 100_000, 20_000)] * 2, CONFIG)
    assert (
        down.flagged
        and down.columns[0].statistic < 0
        and "-0.08 sd over 2 months" in down.descriptions()[0]
    )


def test_the_history_starts_again_for_a_new_month_set_and_skips_thin_or_repeated_months():
    runs = [
        PastRun("2027-01", True, False, False, {"age": 0.1}, 10_000, 20_000),
        PastRun("2027-02", False, False, None),  # too little data: no month
        PastRun("2027-01", True, True, False, {"age": 0.2}, 10_000, 20_000),  # a rerun
        PastRun("2027-03", True, False, False, {"age": 0.3}, 10_000, 20_000),
    ]
    kept = consecutive_months(runs, "2027-04")
    assert [(m.data_window, m.shifts["age"]) for m in kept] == [("2027-01", 0.2), ("2027-03", 0.3)]
    assert [m.data_window for m in consecutive_months(runs, "2027-03")] == ["2027-01"]
    rolling = [PastRun("scoring log, last 30 days", True, False)] * 3
    assert len(consecutive_months(rolling, "scoring log, last 30 days", repeatable=True)) == 3
    assert cusum([], CONFIG) == SlowDriftResult()


def test_slow_drift_and_policy_cross_the_mage_boundary():
    result = cusum([MonthShifts({"age": 0.05, "web_visits": math.nan}, 10**5, 20_000)] * 2, CONFIG)
    back = from_plain(SlowDriftResult, json.loads(json.dumps(to_plain(result))))
    assert back.flagged_columns == ("age",) and math.isnan(back.columns[1].shift)
    verdict = apply_policy(RetrainPolicy(2, 3), [False, True])
    assert from_plain(type(verdict), json.loads(json.dumps(to_plain(verdict)))) == verdict


def test_the_policy_retrains_on_k_of_the_last_n_drifted_months():
    assert apply_policy(RetrainPolicy(), [False, True]).retrain  # today's behaviour
    held = apply_policy(RetrainPolicy(2, 3), [False, False, True])
    assert not held.retrain and held.rule == ("1 of the last 3 months drifted, the policy needs 2")
    assert apply_policy(RetrainPolicy(2, 3), [True, False, True]).retrain
    assert not apply_policy(RetrainPolicy(2, 3), [True, False, False, True]).retrain
    short = apply_policy(RetrainPolicy(2, 3), [True])
    assert not short.retrain and short.rule.endswith("the policy needs 2 of 3")


@pytest.mark.parametrize(
    ("section", "raw", "message"),
    [
        ("slow_drift", {"limit": 0}, "slow_drift.limit must be a number > 0, got 0"),
        ("slow_drift", {"allowance": "x"}, "slow_drift.allowance must be a number > 0"),
        ("slow_drift", {"enabled": "yes"}, "slow_drift.enabled must be true or false"),
        ("slow_drift", {"limits": 1}, "slow_drift: unknown keys ['limits']"),
        ("slow_drift", [1], "slow_drift must be a mapping"),
        ("retrain_policy", {"drifted_months": 0}, "retrain_policy.drifted_months must be"),
        ("retrain_policy", {"drifted_months": 3, "of_last_months": 2}, "must be <="),
        ("retrain_policy", {"k": 2}, "retrain_policy: unknown keys ['k']"),
    ],
)
def test_config_errors_name_the_key_and_value(section, raw, message):
    with pytest.raises(ConfigurationError, match="drift.yaml") as error:
        drift_config_from_dict({section: raw}, "drift.yaml")
    assert message in str(error.value)


def test_the_shipped_config_holds_the_defaults():
    config = load_drift_config(ROOT / "04_monitoring/drift.yaml")
    assert config.slow_drift == SlowDriftConfig() and config.retrain_policy == RetrainPolicy()
    assert slow_drift_config_from_dict(None) == SlowDriftConfig()
    assert retrain_policy_from_dict({"drifted_months": 2, "of_last_months": 3}).of_last_months == 3
