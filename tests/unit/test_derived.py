"""Derived features: the expression language, its evaluation, the schema and the served model.

The parser refuses a bad expression at schema load naming the feature, the expression and the
problem; evaluation gives the same numbers on a DataFrame and on the scoring API's arrays; a
model with derived features computes them itself, on the pyfunc and on the fast path alike.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT
from marketing import REFERENCE_DATE, marketing_frame, marketing_model, marketing_schema

from persona.data.schema import load_schema, schema_from_dict
from persona.data.validation import validate_frame
from persona.errors import ConfigurationError, InvalidInputError
from persona.serving.contract import Batch, check_rows
from persona.serving.fastpath import CompiledModel
from persona.serving.model_source import LoadedVersion
from persona.serving.model_store import served_model, spec_for_model

RAW = {
    "id_column": "ID",
    "numeric_features": {
        "Year_Birth": {},
        "Income": {},
        "MntWines": {},
        "MntFruits": {},
        "MntMeatProducts": {},
    },
    "categorical_features": {"Education": ["Basic", "PhD"]},
    "date_columns": {"Dt_Customer": {"format": "%d-%m-%Y"}, "Dt_Iso": None},
    "passthrough": ["crm_segment"],
}


def schema_with(derived, **more):
    return schema_from_dict({**RAW, "derived": derived, **more}, "my_schema.yaml")


def refusal(expression: str) -> str:
    with pytest.raises(ConfigurationError) as caught:
        schema_with({"age": "2026 - Year_Birth", "spend": expression})
    return str(caught.value)


# ------------------------------------------------------------------------------------- parser


def test_a_schema_reads_raw_columns_and_feeds_the_model_its_derived_inputs():
    schema = schema_with(
        {
            "age": "2026 - Year_Birth",
            "tenure_days": {"expr": "days_since(Dt_Customer)", "min": 0, "unit": "days"},
            "total_spend": 'sum("Mnt*")',
            "log_income": "log1p(coalesce(Income, 0))",
        },
        inputs_only=["Year_Birth", "MntWines", "MntFruits", "MntMeatProducts"],
    )
    assert schema.features == [
        "Year_Birth",
        "Income",
        "MntWines",
        "MntFruits",
        "MntMeatProducts",
        "Dt_Customer",  # read by a derived feature; Dt_Iso is not, so it is no input
        "Education",
    ]
    inputs = schema.model_schema
    assert inputs.features == [
        "Income",
        "age",
        "tenure_days",
        "total_spend",
        "log_income",
        "Education",
    ]
    assert (inputs.numeric["tenure_days"].min, inputs.numeric["tenure_days"].unit) == (0, "days")
    assert schema.derived.needs_reference_date and schema.reference_date is None
    assert schema.derived.date_columns == ("Dt_Customer",)
    assert schema.derived.numeric_columns == (
        "Year_Birth",
        "MntWines",
        "MntFruits",
        "MntMeatProducts",
        "Income",
    )
    again = schema_from_dict(schema.to_dict())
    assert again.to_dict() == schema.to_dict() and again.derived == schema.derived


def test_a_schema_without_derived_features_is_what_it_was():
    schema = load_schema(ROOT / "00_create_data/schema.yaml")
    assert schema.model_schema is schema
    assert schema.features == [*schema.numeric, *schema.categorical]
    assert not {"derived", "date_columns", "inputs_only"} & set(schema.to_dict())
    assert schema.with_reference_date(date(2026, 1, 1)) is schema


def test_the_reference_date_is_frozen_once_and_only_when_needed():
    schema = schema_with({"tenure": "days_since(Dt_Customer)"})
    frozen = schema.with_reference_date("2026-03-01")
    assert frozen.reference_date == date(2026, 3, 1)
    assert frozen.with_reference_date("2030-01-01") is frozen  # a model keeps its date
    assert frozen.to_dict()["derived"]["reference_date"] == "2026-03-01"
    fixed = schema_with({"reference_date": date(2025, 1, 1), "tenure": "days_since(Dt_Customer)"})
    assert fixed.with_reference_date("2026-03-01").reference_date == date(2025, 1, 1)
    no_dates = schema_with({"age": "2026 - Year_Birth"})
    assert no_dates.with_reference_date("2026-03-01") is no_dates
    with pytest.raises(ConfigurationError, match="no reference date"):
        schema.derived.evaluate(pd.DataFrame({"Dt_Customer": ["04-09-2012"]}))


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("MntWine + MntFruits", "unknown column 'MntWine'; did you mean 'MntWines'?"),
        ("exec('import os')", "function 'exec' is not allowed (allowed: log1p, log, sqrt"),
        ("__import__('os').system('id')", "only plain function calls"),
        ("2026 -", "syntax error at the end"),
        ("log1p(Income", "syntax error at column 6 ('(Income'): '(' was never closed"),
        ("Income ** 2", "operator '**' is not allowed (use + - * /)"),
        ("Income.real", "attribute access ('.') not allowed"),
        ("Income if Income else 0", "'if ... else' not allowed"),
        ("[Income][0]", "indexing ('[...]') not allowed"),
        ("lambda: 1", "lambda not allowed"),
        ("days_since(Income)", "days_since() needs a date column; 'Income' is numeric"),
        ("Dt_Customer + 1", "date column 'Dt_Customer' can only be read through days_since()"),
        ("year(Dt_Customr)", "year() needs a date column: unknown column 'Dt_Customr'; did you"),
        ("Education + 1", "column 'Education' is a categorical feature, not a numeric or date"),
        ("ID * 2", "column 'ID' is the id column"),
        ("crm_segment", "column 'crm_segment' is a passthrough column"),
        ("age + 1", "'age' is another derived feature"),
        ("log", "function 'log' must be called"),
        ("log(Income, 10)", "log() takes 1 argument, got 2"),
        ("clip(Income, 10)", "clip() takes 3 arguments, got 2"),
        ("clip(Income, 100, 10)", "clip(): lo 100 is above hi 10"),
        ("clip(Income, 0, MntWines)", "clip(x, lo, hi) takes numbers as lo and hi"),
        ("log1p(x=Income)", "log1p() takes positional arguments only (got x=)"),
        ('sum("Amt*")', "pattern 'Amt*' matches no numeric column"),
        ("sum()", "sum() needs at least one argument"),
        ("'Income'", "text 'Income' is only allowed as a column pattern in sum()"),
        ("True * Income", "constant True is not allowed (numbers only)"),
        ("1e999 * Income", "number inf is not finite"),
        ("2026 - 1990", "reads no column (a constant is not a feature)"),
        ("Income + " * 200 + "1", "longer than 1000 characters"),
    ],
)
def test_a_bad_expression_is_refused_naming_feature_expression_and_problem(expression, problem):
    message = refusal(expression)
    assert message.startswith(f"my_schema.yaml: derived feature 'spend' = {expression!r}: ")
    assert problem in message


@pytest.mark.parametrize(
    ("derived", "more", "problem"),
    [
        ({"Income": "log1p(Income)"}, {}, "'Income': the name is already a numeric feature"),
        ({"Education": "log1p(Income)"}, {}, "already a categorical feature of the schema"),
        ({"x": {"expr": "Income", "scale": 2}}, {}, "unknown keys ['scale']"),
        ({"x": {"expr": "Income", "min": 5, "max": 1}}, {}, "min 5 is above max 1"),
        ({"x": {"expr": "Income", "min": "low"}}, {}, "min: expected a number, got 'low'"),
        ({"x": 42}, {}, "expected an expression (text)"),
        ({"reference_date": "someday", "x": "Income"}, {}, "expected a date YYYY-MM-DD"),
        ({"x": "log1p(Income)"}, {"inputs_only": ["Education"]}, "is not a numeric feature"),
        ({"x": "log1p(Income)"}, {"inputs_only": ["MntWines"]}, "read by no derived feature"),
        (
            {"x": "year(D)"},
            {"date_columns": {"D": {"format": "dd-mm-yyyy"}}},
            "format must be a strptime pattern",
        ),
        ({"x": "year(D)"}, {"date_columns": {"Income": None}}, "are already features or roles"),
    ],
)
def test_a_bad_section_is_refused_at_schema_load(derived, more, problem):
    with pytest.raises(ConfigurationError, match="my_schema.yaml") as caught:
        schema_with(derived, **more)
    assert problem in str(caught.value)


# --------------------------------------------------------------------------------- evaluation

EVERYTHING = {
    "age": "2026 - Year_Birth",
    "tenure_days": "days_since(Dt_Customer)",
    "tenure_years": "years_since(Dt_Iso)",
    "since": "year(Dt_Customer)",
    "total_spend": 'sum("Mnt*")',
    "log_income": "log1p(Income)",
    "income_or_zero": "coalesce(Income, 0)",
    "per_wine": "Income / MntWines",
    "log_wines": "log(MntWines)",
    "root": "sqrt(MntFruits - 10)",
    "bounded": "clip(-MntFruits * 2, -30, -5)",
    "distance": "abs(Year_Birth - 1980) + (MntWines - MntFruits) * 0.5",
}


def raw_rows() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Year_Birth": [1970, 1990, np.nan],
            "Income": [50_000.0, np.nan, 0.0],
            "MntWines": [100.0, 0.0, 10.0],
            "MntFruits": [20.0, 5.0, np.nan],
            "MntMeatProducts": [30.0, 1.0, 2.0],
            "Dt_Customer": ["04-09-2012", "2013-01-31", None],  # the format, ISO, missing
            "Dt_Iso": ["2024-01-01", None, "2025-01-01"],
        }
    )


def test_evaluation_is_vectorised_nan_propagating_and_finite():
    schema = schema_with({"reference_date": "2026-01-01", **EVERYTHING})
    values = schema.derived.evaluate(raw_rows())
    expected = {
        "age": [56, 36, np.nan],
        "tenure_days": [4867, 4718, np.nan],
        "tenure_years": [731 / 365.2425, np.nan, 365 / 365.2425],
        "since": [2012, 2013, np.nan],
        "total_spend": [150, 6, np.nan],  # a missing amount makes the sum missing
        "log_income": [np.log1p(50_000), np.nan, 0.0],
        "income_or_zero": [50_000, 0, 0],
        "per_wine": [500, np.nan, 0.0],  # x / 0 is not a number the model can use: missing
        "log_wines": [np.log(100), np.nan, np.log(10)],  # log(0) = -inf: missing
        "root": [np.sqrt(10), np.nan, np.nan],  # sqrt of a negative: missing
        "bounded": [-30, -10, np.nan],
        "distance": [50, 10 + (0 - 5) * 0.5, np.nan],
    }
    assert list(values) == list(EVERYTHING)
    for name, wanted in expected.items():
        np.testing.assert_allclose(values[name], wanted, err_msg=name)
        assert values[name].dtype == np.float64


def test_arrays_dates_as_values_and_frames_give_the_same_numbers():
    schema = schema_with({"reference_date": "2026-01-01", **EVERYTHING})
    frame = raw_rows()
    from_frame = schema.derived.evaluate(frame)
    arrays = {name: frame[name].to_numpy(dtype=object) for name in frame}  # as the API holds them
    as_dates = frame.assign(
        Dt_Customer=pd.to_datetime(["2012-09-04", "2013-01-31", None]),
        Dt_Iso=[date(2024, 1, 1), None, pd.Timestamp("2025-01-01")],
    )
    for other in (schema.derived.evaluate(arrays), schema.derived.evaluate(as_dates)):
        for name, values in from_frame.items():
            np.testing.assert_array_equal(other[name], values, err_msg=name)
    added = schema.derived.add_to(frame)
    assert list(added.columns) == [*frame.columns, *EVERYTHING] and added.index.equals(frame.index)


def test_a_date_that_cannot_be_read_is_an_error_naming_row_column_and_format():
    schema = schema_with({"reference_date": "2026-01-01", "tenure": "days_since(Dt_Customer)"})
    rows = {"Dt_Customer": np.array(["04-09-2012", "2012-09-04", "31-02-2012"], dtype=object)}
    with pytest.raises(InvalidInputError) as caught:
        schema.derived.evaluate(rows)
    message = str(caught.value)
    assert "date column 'Dt_Customer'" in message and "row 2: '31-02-2012'" in message
    assert "%d-%m-%Y (e.g. 04-09-2012) or YYYY-MM-DD" in message
    tenure = schema.derived.evaluate(rows, bad_dates="missing")["tenure"]
    np.testing.assert_array_equal(tenure, [4867, 4867, np.nan])
    with pytest.raises(InvalidInputError, match="'Income' must hold numbers"):
        schema_with({"x": "log1p(Income)"}).derived.evaluate({"Income": ["a lot"]})


# ------------------------------------------------------------------------------- validation


def test_validation_checks_raw_dates_and_the_ranges_of_derived_features():
    schema = marketing_schema()
    frame = marketing_frame(200, 1)
    assert validate_frame(frame, schema).ok
    frame.loc[3, "Dt_Customer"] = "31-02-2012"
    frame.loc[5, "MntWines"] = -5000.0  # breaks MntWines >= 0 and so total_spend >= 0
    frame.loc[7, "Year_Birth"] = 2015  # within Year_Birth's range, but age 11 < 16
    findings = {(f.column, f.rule): f for f in validate_frame(frame, schema).findings}
    assert set(findings) == {
        ("Dt_Customer", "date %d-%m-%Y (e.g. 04-09-2012) or YYYY-MM-DD"),
        ("MntWines", ">= 0"),
        ("total_spend", ">= 0"),
        ("age", ">= 16"),
        ("Year_Birth", "<= 2010"),
    }
    assert findings[("age", ">= 16")].examples == [{"row": 7, "ID": frame.at[7, "ID"], "age": 11}]
    assert findings[("Dt_Customer", "date %d-%m-%Y (e.g. 04-09-2012) or YYYY-MM-DD")].count == 1


def test_validation_names_a_missing_raw_column_and_skips_what_needs_it():
    frame = marketing_frame(100, 2).drop(columns=["Dt_Customer"])
    findings = validate_frame(frame, marketing_schema()).findings
    assert [(f.column, f.rule) for f in findings] == [("Dt_Customer", "column present")]


# ------------------------------------------------------------------------------------- model


def hand_computed(frame: pd.DataFrame) -> pd.DataFrame:
    """The model inputs, written out by hand from the example schema's definitions."""
    reference = pd.Timestamp(REFERENCE_DATE)
    first = pd.to_datetime(frame["Dt_Customer"], format="%d-%m-%Y")
    return pd.DataFrame(
        {
            "Kidhome": frame["Kidhome"].astype(float),
            "age": 2026.0 - frame["Year_Birth"],
            "tenure_days": (reference - first).dt.days.astype(float),
            "total_spend": frame["MntWines"] + frame["MntFruits"] + frame["MntMeatProducts"],
            "log_income": np.log1p(frame["Income"]),
            "Education": frame["Education"].astype(object),
        }
    )


def test_the_model_takes_raw_columns_and_computes_its_inputs_itself():
    model = marketing_model()
    schema = marketing_schema()
    assert model.features == schema.model_schema.features
    assert model.inputs == schema.features
    assert model.derived.reference_date == date(2026, 1, 1)
    frame = marketing_frame(300, 7, missing_income=4)
    out = model.predict(None, frame[schema.features])
    labels = model.estimator.predict(hand_computed(frame))
    assert out["persona_id"].tolist() == model.persona_ids[labels].tolist()
    assert out.index.equals(frame.index)


@pytest.mark.parametrize("family", ["kmeans", "gaussian_mixture"])
def test_the_fast_path_computes_derived_features_and_matches_the_pyfunc(family):
    model = marketing_model(k=3, family=family)
    compiled = CompiledModel.from_persona_model(model)
    assert compiled.numeric == (
        "Kidhome",
        "Year_Birth",
        "MntWines",
        "MntFruits",
        "MntMeatProducts",
        "Income",
    )
    assert compiled.categorical == ("Dt_Customer", "Education")
    frame = marketing_frame(500, 8, missing_income=10)
    frame.loc[::7, "Dt_Customer"] = None
    frame.loc[3, "Dt_Customer"] = "2013-02-01"  # ISO is read as well as the schema's format
    fast = compiled.score(
        frame[list(compiled.numeric)].to_numpy(dtype=np.float64),
        [frame[name].to_numpy(dtype=object) for name in compiled.categorical],
    )
    expected = model.predict(None, frame)
    assert fast.persona_id.tolist() == expected["persona_id"].tolist()
    assert fast.persona_name.tolist() == expected["persona_name"].tolist()
    np.testing.assert_allclose(fast.confidence, expected["confidence"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(fast.distance, expected["distance"], rtol=1e-9)
    bad = frame[list(compiled.categorical)].to_numpy(dtype=object).T.copy()
    bad[0][1] = "yesterday"
    with pytest.raises(InvalidInputError, match="date column 'Dt_Customer'"):
        compiled.score(frame[list(compiled.numeric)].to_numpy(dtype=np.float64), list(bad))


def test_the_request_contract_lists_raw_columns_and_refuses_a_bad_date():
    model = marketing_model()
    spec = spec_for_model(load_schema(ROOT / "00_create_data/schema.yaml"), 100)(model)
    schema = marketing_schema()
    assert spec.numeric == tuple(schema.numeric)
    assert spec.categorical == ("Dt_Customer", "Education") and spec.dates == ("Dt_Customer",)
    assert "snapshot_month" in spec.ignored
    frame = marketing_frame(4, 9)
    dates = frame["Dt_Customer"].to_numpy(dtype=object)
    dates[2] = "2012/09/04"
    batch = Batch(
        None,
        frame[list(spec.numeric)].to_numpy(dtype=np.float64),
        [dates, frame["Education"].to_numpy(dtype=object)],
        4,
    )
    (found,) = check_rows(batch, spec)
    assert (found.kind, found.field, found.rows.tolist()) == ("invalid_value", "Dt_Customer", [2])
    assert found.expected == "a date as %d-%m-%Y (e.g. 04-09-2012) or YYYY-MM-DD"
    record = spec.json_schema()["properties"]
    assert record["Dt_Customer"]["type"] == "string" and "%d-%m-%Y" in (
        record["Dt_Customer"]["description"]
    )
    assert "age" not in record and "Year_Birth" in record


def test_the_served_model_scores_the_same_with_and_without_its_fast_path():
    model = marketing_model()
    spec_for = spec_for_model(load_schema(ROOT / "00_create_data/schema.yaml"), 100)
    served = served_model("m", "production", LoadedVersion("1", model), spec_for)
    assert served.compiled is not None
    described = served.describe()
    assert described["input"]["dates"] == ["Dt_Customer"]
    assert described["input"]["categorical"] == ["Education"]
    assert described["derived"]["reference_date"] == REFERENCE_DATE
    assert described["derived"]["total_spend"] == {"expr": 'sum("Mnt*")', "min": 0, "unit": "EUR"}
    frame = marketing_frame(50, 10)
    batch = Batch(
        None,
        frame[list(served.spec.numeric)].to_numpy(dtype=np.float64),
        [frame[name].to_numpy(dtype=object) for name in served.spec.categorical],
        50,
    )
    fast = served.score(batch)
    slow = replace(served, compiled=None).score(batch)
    assert fast[0].tolist() == slow[0].tolist() and fast[1].tolist() == slow[1].tolist()
    np.testing.assert_allclose(fast[2], slow[2], rtol=1e-9, atol=1e-12)
