"""The scoring API's request/response layer: every layout, every refusal, round trips."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from persona.data.schema import load_schema
from persona.errors import ConfigurationError, InvalidInputError
from persona.serving import payload, payload_json
from persona.serving.contract import Batch, InputSpec, id_values
from persona.serving.payload import negotiate, parse_request
from persona.serving.payload_csv import parse_csv
from persona.serving.payload_json import parse_json
from persona.serving.problems import PayloadError, rejection
from persona.serving.render import Predictions, render_csv, render_json

ROOT = Path(__file__).resolve().parents[2]
SPEC = InputSpec(
    numeric=("age", "income"),
    categorical=("channel",),
    id_column="customer_id",
    ignored=("snapshot_month",),
    max_rows=50,
)
STRICT = InputSpec(("age", "income"), ("channel",), "customer_id", ("snapshot_month",), 50, False)
RECORDS = [
    {"customer_id": "C1", "age": 30, "income": 1000.5, "channel": "online"},
    {"customer_id": "C2", "age": None, "income": 20, "channel": None, "snapshot_month": "2024-01"},
    {"customer_id": "C3", "age": 41.5, "income": 0.25, "channel": "store, north"},
]
COLUMNS = ["customer_id", "age", "income", "channel"]
ROWS = [[r.get(c) for c in COLUMNS] for r in RECORDS]
CSV_BODY = (
    b"customer_id,age,income,channel,snapshot_month\nC1,30,1000.5,online,\nC2,,20,,2024-01\n"
    b'C3,41.5,0.25,"store, north",\n'
)


def dumps(doc: object) -> bytes:
    return json.dumps(doc).encode()


def assert_expected_batch(batch: Batch) -> None:
    assert batch.n_rows == 3
    assert id_values(batch.ids) == ["C1", "C2", "C3"]  # Arrow bodies keep an Arrow array
    assert batch.numeric.dtype == np.float64
    np.testing.assert_array_equal(
        batch.numeric, np.array([[30, 1000.5], [np.nan, 20], [41.5, 0.25]])
    )
    assert len(batch.categorical) == 1
    assert batch.categorical[0].dtype == object
    assert batch.categorical[0].tolist() == ["online", None, "store, north"]


def columnar(records: list[dict]) -> dict:
    return {c: [r.get(c) for r in records] for c in COLUMNS}


LAYOUTS = {
    "records": dumps(RECORDS),
    "customers": dumps({"customers": RECORDS}),
    "dataframe_records": dumps({"dataframe_records": RECORDS}),
    "split": dumps({"columns": COLUMNS, "data": ROWS}),
    "split_with_index": dumps({"columns": COLUMNS, "data": ROWS, "index": [0, 1, 2]}),
    "dataframe_split": dumps({"dataframe_split": {"columns": COLUMNS, "data": ROWS}}),
    "columnar": dumps(columnar(RECORDS)),
    "records_any_key_order": dumps(
        [
            {"channel": "online", "income": 1000.5, "age": 30, "customer_id": "C1"},
            {"customer_id": "C2", "income": 20, "channel": None, "age": None},
            {"customer_id": "C3", "age": 41.5, "income": 0.25, "channel": "store, north"},
        ]
    ),
    "bom": b"\xef\xbb\xbf" + dumps(RECORDS),
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_json_layout_gives_the_same_batch(layout):
    assert_expected_batch(parse_request(LAYOUTS[layout], "application/json", SPEC))


@pytest.mark.parametrize(
    "body",
    [CSV_BODY, CSV_BODY.replace(b"\n", b"\r\n"), b"\xef\xbb\xbf" + CSV_BODY],
    ids=["lf", "crlf", "bom"],
)
def test_csv_gives_the_same_batch(body):
    assert_expected_batch(parse_request(body, "text/csv; charset=utf-8", SPEC))


def test_csv_nan_text_is_missing_and_blank_lines_are_skipped():
    body = b"age,income,channel\nnan,1,a\n\n2,NaN,b\n"
    batch = parse_csv(body, SPEC)
    np.testing.assert_array_equal(batch.numeric, [[np.nan, 1], [2, np.nan]])
    assert batch.ids is None
    assert batch.categorical[0].tolist() == ["a", "b"]


def test_csv_categories_and_ids_stay_text():
    body = b"customer_id,age,income,channel\n1,1,2,True\n02,1,2,3\n3,1,2,\n"
    batch = parse_csv(body, SPEC)
    assert batch.categorical[0].tolist() == ["True", "3", None]
    assert batch.ids == ["1", "02", "3"]


def test_batch_columns_follow_spec_order_not_request_order():
    body = dumps([{"channel": "x", "income": 2.0, "age": 1}])
    batch = parse_json(body, SPEC)
    np.testing.assert_array_equal(batch.numeric, [[1.0, 2.0]])


def test_ids_are_echoed_as_given():
    records = [{**r, "customer_id": i} for r, i in zip(RECORDS, ["007", 7, 2**40], strict=True)]
    batch = parse_json(dumps(records), SPEC)
    assert batch.ids == ["007", 7, 2**40]
    assert [type(i) for i in batch.ids] == [str, int, int]
    assert parse_csv(b"customer_id,age,income,channel\n007,1,2,x\n", SPEC).ids == ["007"]


def test_ids_are_optional():
    records = [{k: v for k, v in r.items() if k != "customer_id"} for r in RECORDS]
    assert parse_json(dumps(records), SPEC).ids is None


def test_spec_without_id_column_rejects_one():
    spec = InputSpec(("age", "income"), ("channel",), id_column=None)
    error = raises(parse_json, dumps(RECORDS), spec)
    assert error.kind == "unknown_columns"
    assert error.details[0]["field"] == "customer_id"


def test_from_schema_uses_the_schema_roles():
    spec = InputSpec.from_schema(load_schema(ROOT / "00_create_data" / "schema.yaml"), 1000)
    assert spec.numeric[:2] == ("age", "annual_income") and len(spec.numeric) == 8
    assert spec.categorical == ("channel", "region")
    assert spec.id_column == "customer_id"
    assert spec.ignored == ("snapshot_month", "true_persona")
    assert spec.max_rows == 1000 and spec.nullable
    record = {name: 1 for name in spec.numeric} | {"channel": "online", "region": "north"}
    record |= {"customer_id": "C9", "snapshot_month": "2024-01-01", "true_persona": "x"}
    batch = parse_json(dumps([record]), spec)
    assert batch.numeric.shape == (1, 8) and batch.ids == ["C9"]


def test_json_schema_describes_one_record():
    schema = SPEC.json_schema()
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    assert list(schema["properties"]) == [
        "customer_id",
        "age",
        "income",
        "channel",
        "snapshot_month",
    ]
    assert schema["properties"]["age"] == {"type": "number", "nullable": True}
    assert schema["properties"]["channel"] == {
        "type": "string",
        "maxLength": 256,
        "nullable": True,
    }
    # each record carries each feature (null when missing): [{}] is invalid, as the API says
    assert schema["required"] == ["age", "income", "channel"]
    strict = STRICT.json_schema()
    assert strict["required"] == ["age", "income", "channel"]
    assert strict["properties"]["age"] == {"type": "number"}


def test_spec_rejects_a_column_in_two_roles():
    with pytest.raises(ConfigurationError, match="two roles"):
        InputSpec(("age",), ("age",))


# ----------------------------------------------------------------------------------- refusals


def raises(parse, body: bytes, spec: InputSpec = SPEC) -> PayloadError:
    """The PayloadError of a parse, after checking the error body every refusal shares."""
    with pytest.raises(PayloadError) as info:
        batch = parse(body, spec)
        if batch.problems:  # what the API does with them under on_invalid=reject
            raise rejection(batch.problems)
    error = info.value
    assert isinstance(error, InvalidInputError)
    body = error.to_dict()
    assert set(body) == {"error"}
    assert body["error"]["kind"] == error.kind and body["error"]["message"] == str(error)
    for detail in body["error"]["details"]:
        assert {"field", "rows", "count", "expected", "got"} <= set(detail)
        assert len(detail["rows"]) <= 5
    json.dumps(body)  # the error body must be serialisable as it is
    return error


def with_(index: int, **changes) -> bytes:
    records = [dict(r) for r in RECORDS]
    records[index].update(changes)
    return dumps(records)


STATUS = {"too_many_rows": 413}
CSV_HEAD = b"age,income,channel\n"


def J(name, body, kind, field, rows, expected, got, *, spec=SPEC, count=None):
    """A refused JSON body: kind, then the first detail's field, rows, expected and got."""
    count = len(rows) if count is None else count
    args = (parse_json, body, spec, kind, field, rows, count, expected, got)
    return pytest.param(*args, id=name)


def C(name, body, kind, field, rows, expected, got, *, spec=SPEC, count=None):
    """A refused CSV body, like J."""
    count = len(rows) if count is None else count
    args = (parse_csv, body, spec, kind, field, rows, count, expected, got)
    return pytest.param(*args, id=name)


# fmt: off
REFUSALS = [
    J("json_syntax", b'[{"age": 1,', "malformed_json", None, [], "valid JSON", "end"),
    J("json_nan", b'[{"age": NaN}]', "malformed_json", None, [], "valid JSON", ""),
    J("json_huge", b'[{"age": 1e400}]', "malformed_json", None, [], "valid JSON", "infinity"),
    C("csv_quote", CSV_HEAD + b'1,"2,x\n', "malformed_csv", None, [], "CSV", "line"),
    C("csv_utf8", CSV_HEAD + b"1,2,\xff\n", "invalid_encoding", None, [], "UTF-8", "0xff"),
    J("json_utf8_in_value", b'[{"customer_id": "C\xff1", "age": 1, "income": 2, "channel": "x"}]',
      "invalid_encoding", None, [], "UTF-8", "0xff"),
    J("json_utf8_in_key", b'[{"cust\xffomer_id": "C1", "age": 1, "income": 2, "channel": "x"}]',
      "invalid_encoding", None, [], "UTF-8", "0xff"),
    C("csv_header", b"age,,channel\n1,2,x\n", "malformed_csv", None, [], "CSV", "empty"),
    J("empty_list", b"[]", "empty_batch", None, [], "at least one", "0 rows"),
    J("empty_body", b"  ", "empty_batch", None, [], "at least one", "empty"),
    J("empty_customers", b'{"customers": []}', "empty_batch", None, [], "at least one", "0"),
    J("empty_columnar", dumps({c: [] for c in COLUMNS}), "empty_batch", None, [], "at", "0"),
    J("empty_object", b"{}", "empty_batch", None, [], "at least one", "empty"),
    C("empty_csv", CSV_HEAD, "empty_batch", None, [], "at least one", "header only"),
    C("empty_csv_body", b"", "empty_batch", None, [], "at least one", "empty"),
    J("too_many", dumps(RECORDS * 17), "too_many_rows", None, [], "at most 50", "51", count=51),
    C("too_many_csv", CSV_HEAD + b"1,2,x\n" * 60, "too_many_rows", None, [], "at most 50",
      "more than 50", count=51),
    J("missing", dumps([{"age": 1}] * 6), "missing_columns", "income", [0, 1, 2, 3, 4],
      "numeric", "absent", count=6),
    C("missing_csv", b"age,channel\n1,x\n", "missing_columns", "income", [0], "numeric", "absent"),
    J("unknown", with_(1, agee=3), "unknown_columns", "agee", [1], "age", "unknown"),
    C("unknown_csv", b"age,income,channel,x\n1,2,a,b\n", "unknown_columns", "x", [0],
      "customer_id", "unknown"),
    J("num_string", with_(2, age="41"), "invalid_type", "age", [2], "number or null", "string"),
    J("num_bool", with_(0, income=True), "invalid_type", "income", [0], "number", "boolean"),
    J("num_object", with_(0, income={"v": 1}), "invalid_type", "income", [0], "number", "object"),
    J("num_array", with_(0, age=[1]), "invalid_type", "age", [0], "number", "array"),
    J("cat_number", with_(1, channel=5), "invalid_type", "channel", [1], "string", "integer"),
    J("cat_bool", with_(1, channel=False), "invalid_type", "channel", [1], "string", "boolean"),
    J("cat_array", with_(1, channel=["a"]), "invalid_type", "channel", [1], "string", "array"),
    J("id_float", with_(2, customer_id=3.0), "invalid_type", "customer_id", [2], "integer",
      "number"),
    J("id_bool", with_(2, customer_id=True), "invalid_type", "customer_id", [2], "integer",
      "boolean"),
    C("csv_text", CSV_HEAD + b"1,2,x\nten,3,y\n", "invalid_type", "age", [1], "number", "not a"),
    C("csv_underscore", CSV_HEAD + b"1,1_0,x\n", "invalid_type", "income", [0], "number", "not"),
    C("csv_bool", CSV_HEAD + b"True,2,x\nfalse,3,y\n", "invalid_type", "age", [0, 1], "number",
      "not a number"),
    C("csv_inf", CSV_HEAD + b"1,inf,x\n", "invalid_type", "income", [0], "finite", "infinity"),
    C("csv_inf_slow_path", CSV_HEAD + b"1,-Infinity,x\nnan,2,y\n", "invalid_type", "income", [0],
      "finite", "infinity"),
    C("csv_category_stays_text", b"age,income,channel\n1,2,True\n1,2,3\n1,2,\n", "null_not_allowed",
      "channel", [2], "string", "empty", spec=STRICT),
    C("csv_overflow", CSV_HEAD + b"1,1e400,x\n", "invalid_type", "income", [0], "finite", "inf"),
    J("null_id", with_(1, customer_id=None), "null_not_allowed", "customer_id", [1], "string",
      "null"),
    J("absent_id", dumps([RECORDS[0], {"age": 1, "income": 2, "channel": "x"}]),
      "null_not_allowed", "customer_id", [1], "string or integer", "null"),
    C("null_csv_id", b"customer_id,age,income,channel\nA,1,2,x\n,1,2,x\n", "null_not_allowed",
      "customer_id", [1], "string", "empty"),
    J("strict_null", dumps(RECORDS), "null_not_allowed", "age", [1], "number", "null",
      spec=STRICT),
    J("absent_feature_key", dumps([RECORDS[0], {"customer_id": "C2", "income": 2, "channel": None}]),
      "missing_columns", "age", [1], "the key in every record", "absent"),
    J("strict_absent", dumps([RECORDS[0], {"customer_id": "C2", "income": 2}]), "missing_columns",
      "age", [1], "the key in every record", "absent", spec=STRICT),
    J("strict_nan", dumps([{"age": 1, "income": 1, "channel": None}]), "null_not_allowed",
      "channel", [0], "string", "null", spec=STRICT),
    C("strict_csv", CSV_BODY, "null_not_allowed", "age", [1], "number", "null", spec=STRICT),
    J("not_object", dumps([RECORDS[0], 5, "x"]), "invalid_record", None, [1, 2], "object",
      "integer, string"),
    J("split_not_array", dumps({"columns": COLUMNS, "data": [ROWS[0], {}]}), "invalid_record",
      None, [1], "array", "object"),
    J("split_ragged", dumps({"columns": COLUMNS, "data": [ROWS[0], ROWS[1][:3], ROWS[2] + [1]]}),
      "ragged_rows", None, [1, 2], "4 values", "3, 5"),
    J("columnar_ragged", dumps({**columnar(RECORDS), "age": [1, 2]}), "ragged_rows", "age", [],
      "3 values", "2 values"),
    C("csv_short_row", CSV_HEAD + b"1,2,x\n3,4\n5,6,y\n", "ragged_rows", None, [1], "3 fields",
      "2 fields"),
    C("csv_long_row", CSV_HEAD + b"1,2,x\n3,4,y,z\n", "ragged_rows", None, [1], "3 fields",
      "4 fields"),
    C("csv_short_quoted", CSV_HEAD + b'1,2,"x"\n3,4\n', "ragged_rows", None, [1], "3 fields",
      "2 fields"),
    J("split_duplicates", dumps({"columns": ["age", "age"], "data": [[1, 2]]}),
      "duplicate_columns", "age", [], "once", "2 columns"),
    C("csv_duplicates", b"age,income,channel,age\n1,2,x,1\n", "duplicate_columns", "age", [],
      "once", "2 columns"),
    J("scalar", b"42", "invalid_layout", None, [], "array of records", "integer"),
    J("single_record", dumps(RECORDS[0]), "invalid_layout", "customer_id", [], "array of values",
      "string"),
    J("customers_not_list", dumps({"customers": {"a": 1}}), "invalid_layout", "customers", [],
      "array of records", "object"),
    J("split_columns", dumps({"columns": [1, 2], "data": [[1, 2]]}), "invalid_layout", "columns",
      [], "column names", "array"),
    J("dataframe_split_keys", dumps({"dataframe_split": {"data": []}}), "invalid_layout",
      "dataframe_split", [], "columns", "object"),
]
# fmt: on


@pytest.mark.parametrize(
    ("parse", "body", "spec", "kind", "field", "rows", "count", "expected", "got"), REFUSALS
)
def test_refusals_name_field_rows_expected_and_got(
    parse, body, spec, kind, field, rows, count, expected, got
):
    error = raises(parse, body, spec)
    assert (error.kind, error.status) == (kind, STATUS.get(kind, 400))
    detail = error.details[0]
    assert detail["kind"] == kind
    assert detail["field"] == field
    assert detail["rows"] == rows
    assert detail["count"] == count
    assert expected in str(detail["expected"])
    assert got in str(detail["got"])
    if field is not None:
        assert field in error.message


def test_big_integers_never_become_features(monkeypatch):
    """orjson reads integers past 64 bits as floats; the json module keeps them and we refuse."""
    monkeypatch.setattr(payload_json, "orjson", None)
    error = raises(parse_json, with_(0, income=10**400))
    assert error.kind == "invalid_type"
    assert error.details[0]["field"] == "income" and error.details[0]["rows"] == [0]
    assert "float64" in error.details[0]["expected"]


def test_missing_columns_are_all_listed_with_unknown_ones():
    error = raises(parse_json, dumps([{"agee": 1, "channel": "x"}]))
    assert error.kind == "missing_columns"
    found = {(d["kind"], d["field"]) for d in error.details}
    assert found == {
        ("missing_columns", "age"),
        ("missing_columns", "income"),
        ("unknown_columns", "agee"),
    }


def test_one_error_carries_every_bad_column_and_the_first_rows():
    records = [dict(RECORDS[0]) for _ in range(8)]
    for record in records:
        record["age"] = "old"
    records[6]["channel"] = 1
    records[7]["customer_id"] = None
    error = raises(parse_json, dumps(records))
    assert error.kind == "invalid_type"
    by_field = {d["field"]: d for d in error.details}
    assert by_field["age"]["rows"] == [0, 1, 2, 3, 4] and by_field["age"]["count"] == 8
    assert by_field["age"]["example"] == "old"
    assert by_field["channel"]["rows"] == [6]
    assert by_field["customer_id"]["kind"] == "null_not_allowed"
    assert "age" in error.message and "channel" in error.message


def test_json_syntax_error_reports_the_position():
    error = raises(parse_json, b'[\n {"age": 1,,}]')
    detail = error.details[0]
    assert detail["line"] == 2 and detail["column"] > 1 and detail["position"] > 2
    assert "line 2" in error.message


@pytest.mark.parametrize(
    ("content_type", "parser"),
    [
        ("application/json", "parse_json"),
        ("Application/JSON; charset=UTF-8", "parse_json"),
        ("text/csv", "parse_csv"),
        ('text/csv; charset="utf-8"; header=present', "parse_csv"),
    ],
)
def test_content_types_dispatch(content_type, parser, monkeypatch):
    calls = []
    monkeypatch.setattr(payload, parser, lambda body, spec: calls.append(body) or "batch")
    assert parse_request(b"x", content_type, SPEC) == "batch" and calls == [b"x"]


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "",
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/json; charset=latin-1",
    ],
)
def test_other_content_types_are_415(content_type):
    with pytest.raises(PayloadError) as info:
        parse_request(LAYOUTS["records"], content_type, SPEC)
    assert (info.value.kind, info.value.status) == ("unsupported_media_type", 415)
    assert info.value.details[0]["field"] == "Content-Type"


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        (None, "application/json"),
        ("", "application/json"),
        ("*/*", "application/json"),
        ("application/json", "application/json"),
        ("text/csv", "text/csv"),
        ("text/*", "text/csv"),
        ("application/*", "application/json"),
        ("text/csv, */*", "text/csv"),
        ("application/json, text/csv", "application/json"),
        ("text/csv;q=0.9, application/json;q=0.5", "text/csv"),
        ("application/json;q=0, */*", "text/csv"),
        ("text/html, application/xhtml+xml, */*;q=0.8", "application/json"),
        ("TEXT/CSV; charset=utf-8", "text/csv"),
    ],
)
def test_negotiate(accept, chosen):
    assert negotiate(accept) == chosen


@pytest.mark.parametrize("accept", ["text/html", "application/xml, text/plain", "*/*;q=0"])
def test_negotiate_refuses_with_406(accept):
    with pytest.raises(PayloadError) as info:
        negotiate(accept)
    assert (info.value.kind, info.value.status) == ("not_acceptable", 406)
    assert info.value.details[0]["got"] == accept


# ----------------------------------------------------------------------------------- responses

MODEL = {"name": "persona", "version": "3"}
PERSONA_ID = np.array([2, 0, 5])
PERSONA_NAME = np.array(["Big Spender", 'Quote "Q", Comma', "Lapsed"], dtype=object)
CONFIDENCE = np.array([0.1, 0.987654321012345, np.nan])
DISTANCE = np.array([1e-7, 2.5, 123456.789])


def test_render_json_round_trip():
    ids = ["C1", 7, "C3"]
    body = render_json(Predictions(ids, PERSONA_ID, PERSONA_NAME, CONFIDENCE, DISTANCE, MODEL))
    doc = json.loads(body)
    assert doc["model"] == MODEL and doc["n_rows"] == 3
    first, second, third = doc["predictions"]
    assert list(first) == ["customer_id", "persona_id", "persona_name", "confidence", "distance"]
    assert [p["customer_id"] for p in doc["predictions"]] == ids
    assert [p["persona_id"] for p in doc["predictions"]] == [2, 0, 5]
    assert second["persona_name"] == 'Quote "Q", Comma'
    assert second["confidence"] == 0.987654321012345 and first["distance"] == 1e-7
    assert third["confidence"] is None  # NaN is not JSON


def test_render_json_without_ids_and_with_own_id_column():
    doc = json.loads(
        render_json(Predictions(None, [1], ["A"], [0.5], [1.0], {"name": "m", "version": None}))
    )
    assert doc["predictions"] == [
        {"persona_id": 1, "persona_name": "A", "confidence": 0.5, "distance": 1.0}
    ]
    doc = json.loads(
        render_json(Predictions([9], [1], ["A"], [0.5], [1.0], MODEL, id_column="cust_no"))
    )
    assert doc["predictions"][0]["cust_no"] == 9


def test_render_json_accepts_numpy_in_the_model_block():
    body = render_json(Predictions(None, [1], ["A"], [0.5], [1.0], {"name": "m", "k": np.int64(4)}))
    assert json.loads(body)["model"]["k"] == 4


def test_render_refuses_columns_of_different_lengths():
    with pytest.raises(ValueError, match="length"):
        render_json(Predictions(["a"], PERSONA_ID, PERSONA_NAME, CONFIDENCE, DISTANCE, MODEL))


def test_render_csv_round_trip():
    ids = ["C1", 7, "C,3"]
    body = render_csv(Predictions(ids, PERSONA_ID, PERSONA_NAME, CONFIDENCE, DISTANCE, MODEL))
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert list(rows[0]) == [
        "customer_id",
        "persona_id",
        "persona_name",
        "confidence",
        "distance",
        "model_name",
        "model_version",
    ]
    assert [r["customer_id"] for r in rows] == ["C1", "7", "C,3"]
    assert [int(r["persona_id"]) for r in rows] == [2, 0, 5]
    assert [r["persona_name"] for r in rows] == PERSONA_NAME.tolist()
    assert [float(r["confidence"]) for r in rows[:2]] == CONFIDENCE[:2].tolist()
    assert rows[2]["confidence"] == ""  # NaN is an empty cell
    assert [float(r["distance"]) for r in rows] == DISTANCE.tolist()
    assert {(r["model_name"], r["model_version"]) for r in rows} == {("persona", "3")}


def test_render_csv_without_ids():
    body = render_csv(Predictions(None, [1], ["A"], [0.5], [1.0], {"name": "m", "version": 2}))
    assert body == (
        b"persona_id,persona_name,confidence,distance,model_name,model_version\n1,A,0.5,1.0,m,2\n"
    )


def test_request_to_response_round_trip():
    batch = parse_csv(CSV_BODY, SPEC)
    body = render_csv(
        Predictions(batch.ids, [0, 1, 2], ["a", "b", "c"], [1.0] * 3, [0.0] * 3, MODEL)
    )
    assert [r["customer_id"] for r in csv.DictReader(io.StringIO(body.decode()))] == batch.ids


# ------------------------------------------------------------------------ without orjson / scale


def test_json_module_fallback_behaves_the_same(monkeypatch):
    monkeypatch.setattr(payload_json, "orjson", None)
    for body in LAYOUTS.values():
        assert_expected_batch(parse_json(body, SPEC))
    assert raises(parse_json, b'[{"age": NaN}]').kind == "malformed_json"
    assert raises(parse_json, b'[{"age": 1,').details[0]["line"] == 1
    doc = json.loads(
        render_json(
            Predictions(["C1", 7, "C3"], PERSONA_ID, PERSONA_NAME, CONFIDENCE, DISTANCE, MODEL)
        )
    )
    assert doc["predictions"][2]["confidence"] is None
    body = render_csv(Predictions(None, [1, 2], ["A", "B"], [np.nan, 0.5], [0.1, 2.0], MODEL))
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert [(r["persona_id"], r["confidence"], r["distance"]) for r in rows] == [
        ("1", "", "0.1"),
        ("2", "0.5", "2.0"),
    ]


LARGE = InputSpec(("age", "income"), ("channel",), max_rows=5000)


def random_columns(n: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """ids, (age, income) with 5% missing, channel with 5% missing: a larger batch for LARGE."""
    rng = np.random.default_rng(0)
    numeric = np.round(rng.normal(50, 20, (n, 2)), 3)
    numeric[rng.random((n, 2)) < 0.05] = np.nan
    channel = rng.choice(["online", "store", "mixed"], n).astype(object)
    channel[rng.random(n) < 0.05] = None
    return [f"C{i}" for i in range(n)], numeric, channel


def test_a_larger_batch_parses_identically_in_every_layout():
    spec = LARGE
    ids, numeric, channel = random_columns(2000)
    values = [[None if np.isnan(v) else v for v in row] for row in numeric.tolist()]
    records = [
        {"customer_id": i, "age": a, "income": b, "channel": c}
        for i, (a, b), c in zip(ids, values, channel, strict=True)
    ]
    lines = ["customer_id,age,income,channel"]
    for i, row, c in zip(ids, values, channel, strict=True):
        cells = [i, *("" if v is None else repr(v) for v in row), c or ""]
        lines.append(",".join(cells))
    bodies = [
        (dumps(records), "application/json"),
        (dumps(columnar(records)), "application/json"),
        (
            dumps({"columns": COLUMNS, "data": [[r[c] for c in COLUMNS] for r in records]}),
            "application/json",
        ),
        ("\n".join(lines).encode(), "text/csv"),
    ]
    for body, content_type in bodies:
        batch = parse_request(body, content_type, spec)
        assert batch.ids == ids
        np.testing.assert_array_equal(batch.numeric, numeric)
        assert batch.categorical[0].tolist() == channel.tolist()


# ------------------------------------------------------------- typed records decoder (fast path)

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=4),
)
_RECORD = st.dictionaries(
    st.sampled_from([*COLUMNS, "snapshot_month", "unknown"]),
    st.one_of(_VALUE, st.just(1e308)),
    max_size=6,
)
_NUMBER_OR_NONE = st.one_of(
    st.none(), st.integers(), st.floats(allow_nan=False, allow_infinity=False)
)
_VALID_RECORD = st.fixed_dictionaries(
    {
        "customer_id": st.one_of(st.text(max_size=3), st.integers(-(2**63), 2**63 - 1)),
        "age": _NUMBER_OR_NONE,
        "income": _NUMBER_OR_NONE,
        "channel": st.one_of(st.none(), st.text(max_size=4)),
    },
    optional={"snapshot_month": _VALUE},
)


def _general(body: bytes, spec: InputSpec) -> Batch | PayloadError:
    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(payload_json, "_typed_records", lambda body, spec: None)
        return _outcome(body, spec)


def _outcome(body: bytes, spec: InputSpec) -> Batch | PayloadError:
    try:
        return parse_json(body, spec)
    except PayloadError as error:
        return error


def _same(fast: Batch | PayloadError, general: Batch | PayloadError) -> None:
    assert type(fast) is type(general)
    if isinstance(general, PayloadError):
        assert fast.to_dict() == general.to_dict()
        return
    assert fast.n_rows == general.n_rows and fast.ids == general.ids
    np.testing.assert_array_equal(fast.numeric, general.numeric)
    assert [c.tolist() for c in fast.categorical] == [c.tolist() for c in general.categorical]


@settings(max_examples=300, deadline=None)
@given(
    records=st.lists(st.one_of(_VALID_RECORD, _VALID_RECORD, _RECORD), max_size=6),
    wrapped=st.booleans(),
    strict=st.booleans(),
)
def test_typed_decoder_agrees_with_the_general_parser(records, wrapped, strict):
    """Whatever the fast path accepts it reads as the general path does; the rest it hands over."""
    spec = STRICT if strict else SPEC
    body = dumps({"customers": records} if wrapped else records)
    _same(_outcome(body, spec), _general(body, spec))


@pytest.mark.parametrize("customer_id", [-(2**63) - 1, 2**63, 2**70])
def test_an_id_beyond_64_bits_is_read_as_the_general_parser_reads_it(customer_id):
    """Found by the property test above: the fast path kept such an id as an exact int."""
    body = dumps([{**RECORDS[0], "customer_id": customer_id}])
    assert payload_json._typed_records(body, SPEC) is None
    _same(_outcome(body, SPEC), _general(body, SPEC))


def test_typed_decoder_takes_a_valid_batch_and_declines_an_absent_key():
    assert payload_json._typed_records(LAYOUTS["records"], SPEC) is not None
    assert payload_json._typed_records(LAYOUTS["customers"], SPEC) is not None
    absent = dumps([RECORDS[0], {"customer_id": "C2", "income": 2, "channel": None}])
    assert payload_json._typed_records(absent, SPEC) is None
