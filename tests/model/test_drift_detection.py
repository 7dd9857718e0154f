"""Detection quality at the default thresholds of 04_monitoring/drift.yaml.

The reference is what training stores (a January sample of ``reference_sample_rows``); each
current month has 10k rows. Every drift scenario must be flagged; of 20 fresh months without
drift at most one may be.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from persona.adapters import evidently_report
from persona.data.catalogue import load_catalogue
from persona.data.generator import generate_snapshot
from persona.monitoring.drift import DriftResult, interpret_report, load_drift_config

ROOT = Path(__file__).resolve().parents[2]
CURRENT_ROWS = 10_000


@pytest.fixture(scope="module")
def setup():
    catalogue = load_catalogue(ROOT / "00_create_data/personas.yaml")
    config = load_drift_config(ROOT / "04_monitoring/drift.yaml")
    reference = generate_snapshot(
        catalogue, config.reference_sample_rows, "2026-01", 42, "none", progress=False
    )
    return catalogue, config, reference


def _check(setup, month: str, seed: int, scenario: str) -> DriftResult:
    catalogue, config, reference = setup
    current = generate_snapshot(catalogue, CURRENT_ROWS, month, seed, scenario, progress=False)
    _, report = evidently_report.run_drift_report(reference, current, catalogue.schema, config)
    return interpret_report(report, config, len(reference), len(current))


@pytest.mark.parametrize(
    ("scenario", "must_drift"),
    [
        ("income_inflation", {"annual_income", "avg_basket_value"}),
        ("mix_shift", {"recency_days", "purchase_frequency"}),
        ("new_persona", {"purchase_frequency", "web_visits"}),
        ("channel_shift", {"channel"}),
    ],
)
def test_every_drift_scenario_is_flagged(setup, scenario, must_drift):
    result = _check(setup, "2026-03", 7, scenario)
    assert result.enough_data
    assert result.dataset_drift, result.to_dict()
    assert must_drift <= set(result.drifted_columns), result.to_dict()


def test_months_without_drift_are_quiet(setup):
    flagged = [
        result.to_dict()
        for i in range(20)
        if (result := _check(setup, f"2026-{2 + i % 11:02d}", 1000 + i, "none")).dataset_drift
    ]
    assert len(flagged) <= 1, flagged
