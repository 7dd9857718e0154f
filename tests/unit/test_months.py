from datetime import date, datetime

import pandas as pd
import pytest

from persona.data import months
from persona.data.months import check_month, is_month, next_month, previous_month
from persona.data.schema import DatasetSchema
from persona.data.validation import build_pandera_schema
from persona.errors import ConfigurationError


@pytest.mark.parametrize("text", ["2026-01", "1999-12", "2026-10"])
def test_a_month_is_four_digits_a_dash_and_01_to_12(text):
    assert is_month(text) and check_month(text) == text


@pytest.mark.parametrize(
    "text",
    [
        "2026-1",
        "2026-00",
        "2026-13",
        "26-01",
        "2026/01",
        "2026-01-01",
        "2026-01\n",
        "",
        None,
        202601,
    ],
)
def test_anything_else_is_not_a_month(text):
    assert not is_month(text)
    with pytest.raises(ConfigurationError, match=r"when must look like YYYY-MM, got"):
        check_month(text, "when")


def test_the_data_contract_uses_the_same_pattern():
    schema = DatasetSchema(id_column="id", numeric={}, categorical={})
    check = build_pandera_schema(schema).columns["snapshot_month"].checks[0]
    assert check.statistics["pattern"] == months.MONTH_PATTERN
    frame = pd.DataFrame({"id": ["a", "b"], "snapshot_month": ["2026-01", "2026-13"]})
    result = check(frame["snapshot_month"]).check_output.tolist()
    assert result == [is_month("2026-01"), is_month("2026-13")] == [True, False]


def test_month_arithmetic_rolls_over_the_year():
    assert next_month("2026-11") == "2026-12" and next_month("2026-12") == "2027-01"
    assert previous_month(date(2026, 1, 2)) == "2025-12"
    assert previous_month(datetime(2026, 7, 31)) == "2026-06"
