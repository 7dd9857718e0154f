"""Persona monitoring's pure core: the config section, the comparison, the alert, the pages."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT

from persona.errors import ConfigurationError
from persona.flows import monitor
from persona.monitoring import alerts, trend
from persona.monitoring.drift import DriftResult, drift_config_from_dict, load_drift_config
from persona.monitoring.personas import (
    CHI_SQUARE,
    PersonaConfig,
    PersonaMix,
    compare_personas,
    period_of,
    persona_config_from_dict,
)
from persona.values import from_plain, to_plain

pytestmark = pytest.mark.unit

NAMES = {
    0: "Budget Families",
    1: "Affluent Professionals",
    2: "Young Digital Natives",
    3: "Retirees",
}
SHARES = (0.31, 0.29, 0.25, 0.15)


def assigned(rows: int, seed: int, shares=SHARES, scale: dict[int, float] | None = None):
    """What the served model returns for ``rows`` customers of the given persona shares."""
    rng = np.random.default_rng(seed)
    ids = rng.choice(len(shares), size=rows, p=np.asarray(shares) / sum(shares))
    distance = rng.gamma(9.0, 0.15, size=rows) * np.array([(scale or {}).get(i, 1.0) for i in ids])
    confidence = np.clip(1.0 - 0.02 * distance**2, 0.0, 1.0)
    return pd.DataFrame(
        {
            "persona_id": ids,
            "persona_name": [NAMES[i] for i in ids],
            "confidence": confidence,
            "distance": distance,
        }
    )


REFERENCE = assigned(20_000, 1)


def test_a_fresh_month_flags_nothing():
    for seed in (2, 3, 4):
        mix = compare_personas(REFERENCE, assigned(5_000, seed), PersonaConfig(), NAMES)
        assert not mix.drifted and mix.flagged == () and mix.reason is None
        assert [p.name for p in mix.personas] == list(NAMES.values())
        assert sum(p.current_share for p in mix.personas) == pytest.approx(1.0)


def test_a_shifted_mix_is_flagged_and_the_persona_named():
    shifted = assigned(5_000, 2, shares=(0.18, 0.29, 0.38, 0.15))
    mix = compare_personas(REFERENCE, shifted, PersonaConfig(), NAMES, period="2026-04")
    assert mix.drifted and mix.mix_drifted  # a 13-point move: Jensen-Shannon 0.12 >= 0.1
    assert {p.name for p in mix.flagged} == {"Budget Families", "Young Digital Natives"}
    budget = mix.flagged[0]
    assert budget.reason.startswith("share 31% → 18%") and budget.change == pytest.approx(
        -0.13, abs=0.02
    )
    assert "Budget Families: share 31% → 18%" in mix.reason

    text = alerts.drift_alert(
        model_name="personas",
        window="2026-04",
        drift_share=0.0,
        threshold=0.1,
        drifted_columns=[],
        personas=mix,
    ).text
    assert "<b>Budget Families</b> 31% → 18%" in text and "Persona drift detected" in text


def test_a_persona_that_fits_worse_is_flagged_though_its_share_holds():
    worse = assigned(5_000, 2, scale={3: 1.6})
    mix = compare_personas(REFERENCE, worse, PersonaConfig(), NAMES)
    (retirees,) = mix.flagged
    assert retirees.name == "Retirees" and retirees.distance_ratio == pytest.approx(1.6, rel=0.05)
    assert retirees.fit_reasons[0].startswith("fits worse: mean distance")
    assert retirees.low_confidence_current > retirees.low_confidence_reference
    assert not mix.mix_drifted


def test_the_mix_tests_and_a_persona_nobody_is_assigned_to_any_more():
    gone = assigned(5_000, 2, shares=(0.0, 0.4, 0.35, 0.25))
    mix = compare_personas(REFERENCE, gone, PersonaConfig(), NAMES)
    budget = mix.personas[0]
    assert (budget.n_current, budget.current_share) == (0, 0.0)
    assert math.isnan(budget.mean_distance_current) and budget.flagged
    assert mix.mix_drifted and mix.score >= 0.1 and math.isnan(mix.statistic)
    chi = compare_personas(
        REFERENCE, gone, PersonaConfig(mix_method=CHI_SQUARE, mix_threshold=0.05)
    )
    assert chi.mix_drifted and chi.score < 1e-6 and chi.statistic > 0


def test_a_persona_with_too_few_customers_is_not_judged_on_fit():
    few = assigned(5_000, 2, shares=(0.31, 0.29, 0.3995, 0.0005), scale={3: 3.0})
    mix = compare_personas(REFERENCE, few, PersonaConfig(), NAMES)
    retirees = mix.personas[3]
    assert retirees.n_current < 50 and retirees.fit_reasons == ()


def test_the_personas_section_of_drift_yaml_and_errors_that_name_the_key():
    shipped = load_drift_config(ROOT / "04_monitoring/drift.yaml").personas
    assert shipped == PersonaConfig()  # the file states the defaults, with their reasons
    assert drift_config_from_dict({}).personas == PersonaConfig()
    parsed = persona_config_from_dict({"mix": {"method": "chisquare"}, "max_share_change": 0.1})
    assert (parsed.mix_method, parsed.mix_threshold, parsed.max_share_change) == (
        "chisquare",
        0.05,
        0.1,
    )
    for raw, words in (
        ({"max_share_change": 5}, ["personas.max_share_change", "5", "(0, 1]"]),
        ({"max_distance_ratio": 0.9}, ["personas.max_distance_ratio", "0.9", "> 1"]),
        ({"min_customers": 0}, ["personas.min_customers", ">= 1"]),
        ({"mix": {"method": "ks"}}, ["personas.mix.method", "'ks'", "chisquare"]),
        ({"mix": {"method": "chisquare", "threshold": 2}}, ["p-value", "2"]),
        ({"enabled": "yes"}, ["personas.enabled", "'yes'"]),
        ({"max_shift": 0.1}, ["unknown keys", "max_shift"]),
    ):
        with pytest.raises(ConfigurationError) as caught:
            drift_config_from_dict({"personas": raw}, source="drift.yaml")
        assert all(word in str(caught.value) for word in ["drift.yaml", *words]), caught.value


def test_a_check_with_personas_crosses_the_mage_boundary_as_json_and_back():
    mix = compare_personas(
        REFERENCE,
        assigned(5_000, 2, shares=(0.0, 0.4, 0.35, 0.25)),
        PersonaConfig(),
        NAMES,
        "2026-04",
    )
    check = monitor.DriftCheck(
        DriftResult(20_000, 5_000, (), 0.0, False), "x.html", None, personas=mix
    )
    back = from_plain(monitor.DriftCheck, json.loads(json.dumps(to_plain(check))))
    assert isinstance(back.personas, PersonaMix)
    assert [p.to_dict() for p in back.personas.personas] == [p.to_dict() for p in mix.personas]
    assert back.personas.period == "2026-04" and back.personas.flagged[0].name == "Budget Families"
    assert math.isnan(back.personas.personas[0].mean_distance_current)
    assert (
        monitor.decide(back, monitor.MonitorRequest.from_variables({"source": "synthetic"}))
        == monitor.RETRAIN
    )


def _history(mix: PersonaMix, run_id: str, checked_at: str) -> list[dict]:
    verdict = {"period": mix.period, "mix_method": mix.method, "mix_score": mix.score}
    verdict |= {"mix_threshold": mix.threshold, "mix_drifted": mix.mix_drifted}
    return [
        {**p.to_dict(), **verdict, "run_id": run_id, "checked_at": checked_at} for p in mix.personas
    ]


def test_the_trend_holds_each_month_once_and_both_pages_name_the_personas():
    config = PersonaConfig()
    march = compare_personas(REFERENCE, assigned(5_000, 2), config, NAMES, "2026-03")
    april = compare_personas(
        REFERENCE, assigned(5_000, 3, shares=(0.18, 0.29, 0.38, 0.15)), config, NAMES, "2026-04"
    )
    history = pd.DataFrame(
        _history(march, "r1", "2026-04-01T00:00:00Z")
        + _history(march, "r2", "2026-04-02T00:00:00Z")  # a rerun of March replaces r1
        + _history(april, "r3", "2026-05-01T00:00:00Z")
    )
    frame = trend.trend_frame(history)
    assert sorted(frame["run_id"].unique()) == ["r2", "r3"]
    assert list(frame.drop_duplicates("month")["month"]) == ["2026-03", "2026-04"]
    page = trend.trend_page(history, "Persona trend")
    assert "2026-03" in page and "2026-04" in page and "Budget Families" in page
    assert "<script" in page and "cdn" not in page.lower()[:2000]  # opens offline
    run_page = trend.mix_page(april, "Persona mix")
    assert "Budget Families" in run_page and "share 31% → 1" in run_page


def test_period_is_the_month_of_the_rows():
    assert period_of(pd.Series(["2026-04", "2026-04"])) == "2026-04"
    assert period_of(pd.Series(["2026-04", "2026-03"])) == "2026-03..2026-04"
    assert period_of(pd.Series([], dtype=object)) is None
