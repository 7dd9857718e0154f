"""The validator catches seeded defects and names column, rule, count and rows."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from persona.data.catalogue import load_catalogue
from persona.data.generator import generate_snapshot
from persona.data.validation import require_valid, validate_frame
from persona.errors import DataValidationError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def catalogue():
    return load_catalogue(ROOT / "00_create_data/personas.yaml")


@pytest.fixture
def clean(catalogue):
    return generate_snapshot(catalogue, 1000, seed=11, missing_rate=0.01, progress=False)


def only_finding(frame, schema):
    report = validate_frame(frame, schema)
    assert len(report.findings) == 1, report.to_text()
    return report.findings[0]


def test_clean_data_passes(clean, catalogue):
    assert validate_frame(clean, catalogue.schema).ok


def test_missing_column(clean, catalogue):
    finding = only_finding(clean.drop(columns=["tenure_months"]), catalogue.schema)
    assert (finding.column, finding.rule) == ("tenure_months", "column present")


def test_wrong_dtype_names_the_bad_values(clean, catalogue):
    frame = clean.astype({"web_visits": object})
    frame.loc[[4, 9], "web_visits"] = ["many", "n/a"]
    finding = only_finding(frame, catalogue.schema)
    assert finding.column == "web_visits" and "numeric dtype" in finding.rule
    assert finding.count == 2
    assert [e["web_visits"] for e in finding.examples] == ["many", "n/a"]
    assert finding.examples[0]["customer_id"] == clean.customer_id[4]


def test_out_of_range(clean, catalogue):
    frame = clean.copy()
    frame.loc[[2, 3, 5], "age"] = [12, 130, 140]
    report = validate_frame(frame, catalogue.schema)
    rules = {(f.column, f.rule): f for f in report.findings}
    assert rules[("age", ">= 18")].count == 1
    assert rules[("age", "<= 95")].count == 2
    assert {e["age"] for e in rules[("age", "<= 95")].examples} == {130, 140}


def test_too_many_nulls(clean, catalogue):
    frame = clean.copy()
    frame.loc[:199, "annual_income"] = np.nan  # 20% > 5%
    finding = only_finding(frame, catalogue.schema)
    assert finding.column == "annual_income"
    share = frame.annual_income.isna().mean()
    assert finding.rule == f"null share <= 5% (got {share:.1%})"
    assert finding.count == frame.annual_income.isna().sum()


def test_duplicate_keys(clean, catalogue):
    frame = pd.concat([clean, clean.iloc[[10, 20]]], ignore_index=True)
    finding = only_finding(frame, catalogue.schema)
    assert finding.column == "customer_id, snapshot_month"
    assert finding.rule == "unique key (duplicate rows)"
    assert finding.count == 4
    assert finding.examples[0]["customer_id"] == clean.customer_id[10]


def test_unknown_category_and_bad_month(clean, catalogue):
    frame = clean.copy()
    frame.loc[7, "channel"] = "fax"
    frame.loc[8, "snapshot_month"] = "2026-13"
    report = validate_frame(frame, catalogue.schema)
    columns = {f.column for f in report.findings}
    assert columns == {"channel", "snapshot_month"}


def test_require_valid_stops_with_full_report(clean, catalogue):
    frame = clean.drop(columns=["region"])
    frame.loc[0, "age"] = 200
    with pytest.raises(DataValidationError) as error:
        require_valid(frame, catalogue.schema)
    text = str(error.value)
    assert "2 problem(s)" in text and "'region'" in text and "'age'" in text and "200" in text
    assert error.value.report.to_dict()["ok"] is False
