"""One /predict request end to end without a server: contract rules, flagging, echo, overflow."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from functools import cache
from pathlib import Path

import pytest
from sklearn.pipeline import Pipeline

from persona.data.catalogue import load_catalogue
from persona.data.generator import generate_snapshot
from persona.model.build import build_persona_model
from persona.model.naming import catalogue_personas
from persona.model.params import PreprocessingParams, SearchParams
from persona.model.preprocess import build_preprocessor, prepare_features
from persona.model.search import make_estimator
from persona.serving.contract import InputSpec
from persona.serving.fastpath import CompiledModel
from persona.serving.invocations import invocations, parse_echo, parse_on_invalid
from persona.serving.model_store import ServedModel, spec_for_model
from persona.serving.problems import PayloadError

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = load_catalogue(ROOT / "00_create_data/personas.yaml")
SCHEMA = replace(CATALOGUE.schema, passthrough=("crm_segment",))
JSON = "application/json"


@cache
def served(extra_columns: str = "reject", fast: bool = True) -> ServedModel:
    frame = generate_snapshot(CATALOGUE, 600, seed=3, progress=False)
    features = prepare_features(frame, SCHEMA)
    preprocess = build_preprocessor(SCHEMA, PreprocessingParams()).fit(features)
    estimator = Pipeline(
        [("preprocess", preprocess), ("cluster", make_estimator("kmeans", 4, {"n_init": 1}, 0))]
    ).fit(features)
    built = build_persona_model(
        estimator, frame, SCHEMA, SearchParams(), catalogue_personas(CATALOGUE)
    )
    return ServedModel(
        name="m",
        version="1",
        run_id="r",
        alias="production",
        promoted_at=None,
        model=built.model,
        compiled=CompiledModel.from_persona_model(built.model) if fast else None,
        spec=spec_for_model(CATALOGUE.schema, 100, extra_columns)(built.model),
    )


def records(n: int = 4) -> list[dict]:
    frame = generate_snapshot(CATALOGUE, n, seed=9, progress=False)
    return frame.drop(columns=["true_persona", "snapshot_month"]).to_dict(orient="records")


def post(rows, model=None, **options) -> dict:
    answer = invocations(model or served(), json.dumps(rows).encode(), JSON, None, **options)
    return json.loads(answer.body)


def refused(rows, model=None, **options) -> PayloadError:
    with pytest.raises(PayloadError) as info:
        post(rows, model, **options)
    return info.value


def test_the_model_carries_the_schema_it_was_trained_under():
    assert served().model.schema["numeric_features"]["age"]["min"] == 18
    assert served().spec.numeric_rules[0][0].name == ">= 18"


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("age", -500, ">= 18"),
        ("age", 30.5, "integer-valued"),
        ("annual_income", 1e200, "<= 1000000"),
        ("channel", "fax", "one of ['online', 'mobile', 'store', 'mixed']"),
        ("region", "mars", "one of ['north', 'south', 'east', 'west', 'central']"),
        ("customer_id", "x" * 300, "at most 256 characters"),
        ("customer_id", "", "non-empty"),
    ],
)
def test_a_value_training_would_refuse_is_refused_with_the_same_rule(field, value, rule):
    rows = records()
    rows[2][field] = value
    error = refused(rows)
    assert error.status == 400 and error.kind == "invalid_value"
    detail = error.details[0]
    assert (detail["field"], detail["rule"], detail["rows"], detail["count"]) == (
        field,
        rule,
        [2],
        1,
    )
    assert detail["expected"] and detail["got"]
    assert field in error.message


def test_flag_answers_every_row_and_names_the_rules_of_the_invalid_ones():
    rows = records(5)
    rows[1]["age"], rows[1]["channel"] = -500, "fax"
    rows[3]["annual_income"] = "lots"
    body = post(rows, on_invalid="flag")
    predictions = body["predictions"]
    assert body["n_rows"] == 5 and len(predictions) == 5
    assert [p["customer_id"] for p in predictions] == [r["customer_id"] for r in rows]
    for i in (1, 3):
        assert predictions[i]["persona_id"] is None and predictions[i]["confidence"] is None
    assert {(p["field"], p["rule"]) for p in predictions[1]["problems"]} == {
        ("age", ">= 18"),
        ("channel", "one of ['online', 'mobile', 'store', 'mixed']"),
    }
    assert predictions[3]["problems"][0]["kind"] == "invalid_type"
    valid = [p for i, p in enumerate(predictions) if i not in (1, 3)]
    assert all(p["problems"] == [] and p["persona_id"] is not None for p in valid)
    # the valid rows score exactly as they do alone
    alone = post([rows[i] for i in (0, 2, 4)])["predictions"]
    assert [p["persona_id"] for p in valid] == [p["persona_id"] for p in alone]
    assert [p["confidence"] for p in valid] == [p["confidence"] for p in alone]


def test_flag_in_csv_has_a_problems_column():
    rows = records(3)
    rows[0]["region"] = "mars"
    text = "\n".join(
        [
            ",".join(rows[0]),
            *(",".join("" if v is None else str(v) for v in r.values()) for r in rows),
        ]
    )
    answer = invocations(served(), text.encode(), "text/csv", "text/csv", on_invalid="flag")
    parsed = list(csv.DictReader(io.StringIO(answer.body.decode())))
    assert parsed[0]["persona_id"] == "" and parsed[0]["problems"].startswith("region: one of")
    assert parsed[1]["persona_id"] and parsed[1]["problems"] == ""


@pytest.mark.parametrize("fast", [True, False])
def test_a_value_beyond_float_range_of_distances_is_never_a_null_confidence(fast):
    schema_without_bounds = replace(
        CATALOGUE.schema,
        numeric={name: replace(spec, max=None) for name, spec in CATALOGUE.schema.numeric.items()},
    )
    model = served(fast=fast)
    unbounded = InputSpec.from_schema(
        schema_without_bounds, 100, (list(model.spec.numeric), list(model.spec.categorical))
    )
    model = replace(model, spec=unbounded)
    rows = records()
    rows[1]["annual_income"] = 1e200
    error = refused(rows, model)
    assert error.kind == "unscorable_value"
    assert error.details[0]["field"] == "annual_income" and error.details[0]["rows"] == [1]
    flagged = post(rows, model, on_invalid="flag")["predictions"]
    assert (
        flagged[1]["persona_id"] is None and flagged[1]["problems"][0]["rule"] == "finite distance"
    )
    confidences = [p["confidence"] for i, p in enumerate(flagged) if i != 1]
    assert all(c is not None and 0 <= c <= 1 for c in confidences)


def test_passthrough_columns_are_ignored_reported_and_echoed_on_request():
    rows = [
        {**r, "crm_segment": f"seg-{i}", "snapshot_month": "2026-01"}
        for i, r in enumerate(records())
    ]
    body = post(rows, echo=parse_echo("crm_segment,age"))
    assert body["ignored_columns"] == ["crm_segment", "snapshot_month"]
    assert [p["crm_segment"] for p in body["predictions"]] == [f"seg-{i}" for i in range(4)]
    assert [p["age"] for p in body["predictions"]] == [r["age"] for r in rows]
    undeclared = [{**r, "loyalty_tier": "gold"} for r in records()]
    assert refused(undeclared).kind == "unknown_columns"
    ignoring = served(extra_columns="ignore")
    assert post(undeclared, ignoring)["ignored_columns"] == ["loyalty_tier"]
    error = refused(records(), echo=("shoe_size",))
    assert error.kind == "invalid_parameter" and error.details[0]["field"] == "echo"


def test_request_options_are_checked():
    assert parse_on_invalid(None) == "reject" and parse_on_invalid(" FLAG ") == "flag"
    with pytest.raises(PayloadError) as info:
        parse_on_invalid("maybe")
    assert info.value.details[0]["field"] == "on_invalid"
    with pytest.raises(PayloadError):
        parse_echo("persona_id")


def test_non_utf8_anywhere_is_a_400_with_the_byte_offset():
    body = json.dumps(records(1)).encode().replace(b'"C0', b'"C\xff0', 1)
    with pytest.raises(PayloadError) as info:
        invocations(served(), body, JSON, None)
    assert info.value.kind == "invalid_encoding"
    assert info.value.details[0]["position"] == body.index(b"\xff")
