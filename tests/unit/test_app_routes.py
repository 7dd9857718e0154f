"""The scoring API's routes through Flask's test client, with models held in memory.

Flask lives in the scoring environment only (.venv/scoring; the dev environment pins an older
Werkzeug for Mage): `make test` and `make test-fast` run this file there, and the dev run skips
it. The same routes under Gunicorn with a real MLflow: tests/integration/test_scoring_service.py.
"""

from __future__ import annotations

import csv
import io
import json

import pytest

pytest.importorskip(
    "flask",
    reason="Flask is only in the scoring environment: make test-fast runs this file with "
    ".venv/scoring/bin/python",
)

import pandas as pd
from marketing import marketing_frame, marketing_model
from memory_source import CATALOGUE, ROOT, MemorySource, tiny_model

from persona.serving.app import create_app
from persona.settings import load_settings

TOKEN, ADMIN = "predict-token-for-tests", "admin-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_ROWS, MAX_BODY = 50, 30_000


def make_app(source: MemorySource, **overrides):
    settings = load_settings(
        environ={},
        overrides={
            "schema_path": ROOT / "00_create_data/schema.yaml",
            "max_batch_rows": MAX_ROWS,
            "max_body_bytes": MAX_BODY,
            "api_token": TOKEN,
            **overrides,
        },
    )
    app = create_app(settings, poll=False, source=source)
    return app, app.extensions["persona.store"]


@pytest.fixture
def source() -> MemorySource:
    found = MemorySource()
    found.add(tiny_model(), "production", run_metrics={"winner_silhouette": 0.3})
    return found


@pytest.fixture
def client(source):
    app, store = make_app(source)
    assert store.refresh()
    return app.test_client()


def frame(n: int = 5, seed: int = 9):
    from persona.data.generator import generate_snapshot

    return generate_snapshot(CATALOGUE, n, seed=seed, progress=False).drop(
        columns=["true_persona", "snapshot_month"]
    )


def records(n: int = 5) -> list[dict]:
    return frame(n).to_dict(orient="records")


def csv_body(rows: list[dict]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def error_of(response, status: int, kind: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    error = response.get_json()["error"]
    assert error["kind"] == kind
    return error


def test_json_records_score_like_the_model_in_process(client):
    response = client.post("/predict", json=records(), headers=AUTH)
    assert response.status_code == 200 and response.headers["X-Model-Version"] == "1"
    body = response.get_json()
    assert body["model"] == {"name": "persona-test", "version": "1"} and body["n_rows"] == 5
    expected = tiny_model().predict(None, frame())
    predictions = body["predictions"]
    assert [p["customer_id"] for p in predictions] == frame()["customer_id"].tolist()
    assert [p["persona_id"] for p in predictions] == expected["persona_id"].tolist()
    assert [p["persona_name"] for p in predictions] == expected["persona_name"].tolist()
    assert [p["confidence"] for p in predictions] == pytest.approx(expected["confidence"].tolist())


def test_csv_in_and_out(client):
    rows = records()
    response = client.post(
        "/predict",
        data=csv_body(rows),
        headers={**AUTH, "Content-Type": "text/csv", "Accept": "text/csv"},
    )
    assert response.status_code == 200 and response.mimetype == "text/csv"
    answered = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    as_json = client.post("/predict", json=rows, headers=AUTH).get_json()["predictions"]
    assert [r["customer_id"] for r in answered] == [r["customer_id"] for r in rows]
    assert [int(r["persona_id"]) for r in answered] == [p["persona_id"] for p in as_json]
    assert {r["model_version"] for r in answered} == {"1"}


def refused(client, status: int, kind: str, path: str = "/predict", headers=None, **request):
    """POST with the token; the JSON error, of this status and kind."""
    return error_of(client.post(path, headers={**AUTH, **(headers or {})}, **request), status, kind)


@pytest.mark.parametrize(
    ("field", "value", "kind", "rule"),
    [
        ("age", -500, "invalid_value", ">= 18"),
        ("channel", "fax", "invalid_value", "one of ['online', 'mobile', 'store', 'mixed']"),
        ("annual_income", "lots", "invalid_type", None),
    ],
)
def test_a_bad_value_is_a_400_naming_field_rule_and_row(client, field, value, kind, rule):
    rows = records()
    rows[3][field] = value
    error = refused(client, 400, kind, json=rows)
    found = error["details"][0]
    assert (found["field"], found["rows"]) == (field, [3])
    if rule is not None:
        assert found["rule"] == rule
    assert field in error["message"]


def test_missing_columns_and_bad_options_are_400s_naming_them(client):
    rows = [{k: v for k, v in row.items() if k != "age"} for row in records()]
    assert refused(client, 400, "missing_columns", json=rows)["details"][0]["field"] == "age"
    error = refused(client, 400, "invalid_parameter", "/predict?on_invalid=maybe", json=records())
    assert error["details"][0]["field"] == "on_invalid"
    refused(client, 400, "malformed_json", data=b"[{", content_type="application/json")


def test_flagged_rows_are_answered_with_their_problems(client):
    rows = records()
    rows[1]["age"] = -500
    response = client.post("/predict?on_invalid=flag", json=rows, headers=AUTH)
    predictions = response.get_json()["predictions"]
    assert response.status_code == 200 and len(predictions) == 5
    assert predictions[1]["persona_id"] is None
    assert predictions[1]["problems"][0]["field"] == "age"
    assert all(p["problems"] == [] for i, p in enumerate(predictions) if i != 1)


def test_too_large_is_413_by_body_and_by_rows(client):
    big = json.dumps(records(MAX_ROWS) * 3).encode()
    assert len(big) > MAX_BODY
    error = refused(client, 413, "body_too_large", data=big, content_type="application/json")
    assert "PERSONA_MAX_BODY_BYTES" in error["message"]
    error = refused(client, 413, "too_many_rows", json=records(1) * (MAX_ROWS + 1))
    assert str(MAX_ROWS) in error["message"]


def test_a_body_shorter_than_its_declared_length_is_a_400(client):
    body = json.dumps(records()).encode()
    error = refused(
        client,
        400,
        "incomplete_body",
        data=body,
        content_type="application/json",
        environ_overrides={"CONTENT_LENGTH": str(len(body) + 10)},
    )
    assert f"{len(body)} of {len(body) + 10} bytes" in error["message"]


def test_media_types_406_and_415(client):
    xml = {"Accept": "application/xml"}
    error = refused(client, 406, "not_acceptable", headers=xml, json=records())
    assert error["details"][0]["field"] == "Accept"
    refused(client, 415, "unsupported_media_type", data=b"a=1", content_type="text/plain")


def test_predict_needs_the_token_when_one_is_set(client):
    error_of(client.post("/predict", json=records()), 401, "unauthorized")
    response = client.post("/predict", json=records(), headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer"
    assert client.post("/predict", json=records(), headers=AUTH).status_code == 200


def test_without_a_token_predict_is_open(source):
    app, store = make_app(source, api_token="")
    store.refresh()
    assert app.test_client().post("/predict", json=records()).status_code == 200


def test_ready_health_and_predict_before_and_after_a_model():
    source = MemorySource()
    app, store = make_app(source)
    client = app.test_client()
    assert client.get("/health").get_json() == {"status": "ok"}
    not_ready = client.get("/ready")
    assert not_ready.status_code == 503 and not_ready.get_json()["ready"] is False
    assert not store.refresh()  # nothing holds the alias
    reason = client.get("/ready").get_json()["reason"]
    assert reason.startswith("no version of persona-test holds @production yet")
    error = error_of(
        client.post("/predict", json=records(), headers=AUTH), 503, "model_unavailable"
    )
    assert error["message"] == reason
    error_of(client.get("/model"), 503, "model_unavailable")
    assert client.get("/openapi.json").status_code == 200  # the schema's contract meanwhile

    source.add(tiny_model(), "production")
    assert store.refresh()
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.headers["X-Model-Version"] == "1"
    assert ready.get_json()["ready"] is True and ready.get_json()["registry_reachable"] is True
    assert client.post("/predict", json=records(), headers=AUTH).status_code == 200

    source.up = False  # the registry goes away: the model keeps serving
    assert not store.refresh()
    ready = client.get("/ready").get_json()
    assert ready["ready"] is True and ready["registry_reachable"] is False
    assert "did not answer" in ready["registry_error"]
    assert client.post("/predict", json=records(), headers=AUTH).status_code == 200


def test_info_endpoints(client):
    described = client.get("/model").get_json()
    assert described["version"] == "1" and described["fast_path"] is True
    assert described["training_metrics"] == {"silhouette": 0.3}
    document = client.get("/openapi.json").get_json()
    assert "/predict" in document["paths"]
    client.post("/predict", json=records(), headers=AUTH)
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and "persona_rows_scored_total 5.0" in metrics.get_data(
        as_text=True
    )


def test_unknown_routes_and_methods_are_json_errors(client):
    error_of(client.get("/nowhere"), 404, "not_found")
    response = client.get("/predict")
    error_of(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


def test_admin_reload_follows_a_promotion_at_once(source):
    app, store = make_app(source, admin_token=ADMIN)
    client = app.test_client()
    assert store.refresh()
    source.aliases["production"] = source.add(tiny_model(k=4))
    error_of(client.post("/admin/reload"), 401, "unauthorized")
    reloaded = client.post("/admin/reload", headers={"Authorization": f"Bearer {ADMIN}"})
    assert reloaded.status_code == 200
    assert reloaded.get_json() == {
        "registry_reachable": True,
        "error": None,
        "version": "2",
        "segmentations": {"default": "2"},
    }
    response = client.post("/predict", json=records(), headers=AUTH)
    assert response.get_json()["model"]["version"] == "2"


def test_admin_is_off_without_its_token(client):
    error_of(client.post("/admin/reload"), 403, "admin_disabled")


def test_every_segmentation_is_served_side_by_side(source):
    """A second segmentation (other columns, other id) is found, listed and served beside the
    default one; one it does not know is a 404; one without a promoted version is a 503 until
    its first promotion, then served; one that disappears from the registry is dropped."""
    from memory_source import MemorySegmentations, marketing_frame, marketing_model

    segmentations = MemorySegmentations()
    marketing = MemorySource("persona-test-marketing")
    segmentations.sources["marketing"] = marketing
    settings = load_settings(
        environ={},
        overrides={"schema_path": ROOT / "00_create_data/schema.yaml", "api_token": TOKEN},
    )
    app = create_app(settings, poll=False, source=source, segmentation_source=segmentations)
    stores = app.extensions["persona.segmentations"]
    client = app.test_client()
    assert stores.default.refresh() and stores.discover()

    waiting = client.post("/segmentations/marketing/predict", json=[{}], headers=AUTH)
    assert "persona-test-marketing" in error_of(waiting, 503, "model_unavailable")["message"]
    marketing.add(marketing_model(), "production")
    assert stores.refresh_all()  # what the poller does within the poll interval

    listed = {s["name"]: s for s in client.get("/segmentations").get_json()["segmentations"]}
    assert list(listed) == ["default", "marketing"]
    assert listed["marketing"]["version"] == "1"
    assert listed["marketing"]["input"]["id_column"] == "ID"
    assert set(listed["marketing"]["input"]["numeric"]) == {"Income", "Kidhome", "MntWines"}
    assert listed["default"]["input"]["id_column"] == CATALOGUE.schema.id_column

    rows = marketing_frame(6, seed=3).drop(columns="snapshot_month").to_dict("records")
    scored = client.post("/segmentations/marketing/predict", json=rows, headers=AUTH)
    assert scored.status_code == 200, scored.get_json()
    body = scored.get_json()
    assert [p["ID"] for p in body["predictions"]] == [r["ID"] for r in rows]
    expected = marketing_model().predict(None, marketing_frame(6, seed=3))
    assert [p["persona_name"] for p in body["predictions"]] == list(expected["persona_name"])
    assert body["model"]["name"] == "persona-test-marketing"

    default = client.post("/predict", json=records(3), headers=AUTH)
    assert default.status_code == 200 and default.get_json()["model"]["name"] == "persona-test"
    same = client.post("/segmentations/default/predict", json=records(3), headers=AUTH)
    assert same.get_json()["predictions"] == default.get_json()["predictions"]
    assert client.get("/segmentations/marketing/model").get_json()["segmentation"] == "marketing"

    # the marketing model's columns do not fit the default one, and the other way round
    error_of(
        client.post("/segmentations/marketing/predict", json=records(2), headers=AUTH),
        400,
        "missing_columns",
    )
    unknown = client.post("/segmentations/nope/predict", json=rows, headers=AUTH)
    assert "marketing" in error_of(unknown, 404, "unknown_segmentation")["message"]
    error_of(client.get("/segmentations/nope/model"), 404, "unknown_segmentation")
    error_of(client.post("/segmentations/nope/predict", json=rows), 401, "unauthorized")

    del segmentations.sources["marketing"]
    assert stores.discover()
    error_of(client.get("/segmentations/marketing/model"), 404, "unknown_segmentation")
    paths = client.get("/openapi.json").get_json()["paths"]
    assert {"/segmentations", "/segmentations/{name}/predict"} <= set(paths)


def test_a_renamed_persona_is_served_from_the_next_check_without_a_reload(source):
    app, store = make_app(source)
    client = app.test_client()
    assert store.refresh()
    before = client.post("/predict", json=records(20), headers=AUTH).get_json()["predictions"]
    renamed = before[0]["persona_id"]
    source.renames[renamed] = "Affluent wine lovers"
    loads = list(source.loaded)
    assert store.refresh()
    assert source.loaded == loads  # the same version: names change, nothing is reloaded
    after = client.post("/predict", json=records(20), headers=AUTH).get_json()["predictions"]
    for old, new in zip(before, after, strict=True):
        assert new["persona_id"] == old["persona_id"]
        expected = "Affluent wine lovers" if old["persona_id"] == renamed else old["persona_name"]
        assert new["persona_name"] == expected
    described = {p["persona_id"]: p for p in client.get("/model").get_json()["personas"]}
    assert described[renamed]["name"] == "Affluent wine lovers"
    assert described[renamed]["model_name"] == before[0]["persona_name"]


# ------------------------------------------------- a model with derived features takes raw columns


@pytest.fixture
def marketing_client():
    source = MemorySource()
    source.add(marketing_model(), "production")
    app, store = make_app(source)
    assert store.refresh()
    return app.test_client()


def marketing_records(n: int = 6) -> list[dict]:
    rows = marketing_frame(n, 21).drop(columns=["snapshot_month"]).to_dict(orient="records")
    rows[1]["Dt_Customer"] = "2013-05-17"  # ISO, as pandas writes dates, works as well
    return rows


def test_a_model_with_derived_features_scores_raw_columns_in_json_and_csv(marketing_client):
    rows = marketing_records()
    response = marketing_client.post("/predict", json=rows, headers=AUTH)
    assert response.status_code == 200, response.get_data(as_text=True)
    predictions = response.get_json()["predictions"]
    expected = marketing_model().predict(None, pd.DataFrame(rows))
    assert [p["persona_id"] for p in predictions] == expected["persona_id"].tolist()
    assert [p["confidence"] for p in predictions] == pytest.approx(expected["confidence"].tolist())
    as_csv = marketing_client.post(
        "/predict", data=csv_body(rows), headers={**AUTH, "Content-Type": "text/csv"}
    )
    assert as_csv.get_json()["predictions"] == predictions

    described = marketing_client.get("/model").get_json()
    assert described["fast_path"] is True
    assert described["input"]["dates"] == ["Dt_Customer"]
    assert described["input"]["numeric"][:2] == ["Year_Birth", "Income"]
    assert described["derived"]["age"] == {
        "expr": "2026 - Year_Birth",
        "min": 16,
        "max": 110,
        "unit": "years",
    }
    customer = marketing_client.get("/openapi.json").get_json()["components"]["schemas"]["Customer"]
    assert {"Year_Birth", "MntWines", "Dt_Customer"} <= set(customer["required"])
    assert "age" not in customer["properties"]
    assert customer["properties"]["Dt_Customer"]["type"] == "string"
    assert "%d-%m-%Y" in customer["properties"]["Dt_Customer"]["description"]


def test_a_bad_date_is_a_400_naming_row_column_and_format(marketing_client):
    rows = marketing_records()
    rows[2]["Dt_Customer"] = "31-02-2012"
    error = refused(marketing_client, 400, "invalid_value", json=rows)
    (found,) = error["details"]
    assert (found["field"], found["rows"], found["example"]) == ("Dt_Customer", [2], "31-02-2012")
    assert found["expected"] == "a date as %d-%m-%Y (e.g. 04-09-2012) or YYYY-MM-DD"
    assert "Dt_Customer" in error["message"]
    in_csv = refused(
        marketing_client,
        400,
        "invalid_value",
        data=csv_body(rows),
        headers={"Content-Type": "text/csv"},
    )
    assert in_csv["details"] == error["details"]

    flagged = marketing_client.post("/predict?on_invalid=flag", json=rows, headers=AUTH)
    predictions = flagged.get_json()["predictions"]
    assert flagged.status_code == 200 and predictions[2]["persona_id"] is None
    assert predictions[2]["problems"][0]["field"] == "Dt_Customer"
    assert all(p["persona_id"] is not None for i, p in enumerate(predictions) if i != 2)

    rows[2]["Dt_Customer"] = 20120904  # a date travels as text
    found = refused(marketing_client, 400, "invalid_type", json=rows)["details"][0]
    assert (found["field"], found["rows"]) == ("Dt_Customer", [2])
    missing = [{k: v for k, v in row.items() if k != "Dt_Customer"} for row in marketing_records()]
    found = refused(marketing_client, 400, "missing_columns", json=missing)["details"][0]
    assert (found["field"], found["expected"]) == ("Dt_Customer", "date column")


# ------------------------------------------------------------------- Arrow and Parquet bodies

ARROW, PARQUET = "application/vnd.apache.arrow.stream", "application/vnd.apache.parquet"


def arrow_body(data) -> bytes:
    import pyarrow as pa

    table = pa.Table.from_pandas(data, preserve_index=False)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def parquet_body(data) -> bytes:
    out = io.BytesIO()
    data.to_parquet(out, index=False)
    return out.getvalue()


def read_answer(response):
    import pyarrow as pa
    import pyarrow.parquet as pq

    if response.mimetype == ARROW:
        return pa.ipc.open_stream(response.get_data()).read_all()
    return pq.read_table(pa.BufferReader(response.get_data()))


@pytest.mark.parametrize(
    ("content_type", "accept"),
    [(ARROW, ARROW), (PARQUET, PARQUET), ("application/x-parquet", ARROW), (ARROW, None)],
)
def test_arrow_and_parquet_in_and_out_answer_as_json_does(client, content_type, accept):
    data = frame(20)
    data.loc[3, "age"] = None  # a missing value, imputed by the model
    expected = client.post(
        "/predict", json=json.loads(data.to_json(orient="records")), headers=AUTH
    ).get_json()["predictions"]
    body = arrow_body(data) if content_type == ARROW else parquet_body(data)
    headers = {**AUTH, "Content-Type": content_type, **({"Accept": accept} if accept else {})}
    response = client.post("/predict", data=body, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    if accept is None:  # JSON unless asked otherwise
        assert response.get_json()["predictions"] == expected
        return
    assert response.mimetype == accept and response.headers["X-Model-Version"] == "1"
    answer = read_answer(response)
    assert answer.column("customer_id").to_pylist() == [p["customer_id"] for p in expected]
    assert answer.column("persona_id").to_pylist() == [p["persona_id"] for p in expected]
    assert answer.column("persona_name").to_pylist() == [p["persona_name"] for p in expected]
    assert answer.column("confidence").to_pylist() == pytest.approx(
        [p["confidence"] for p in expected]
    )
    assert set(answer.column("model_version").to_pylist()) == {"1"}


def test_json_in_arrow_out_with_flagged_rows(client):
    rows = records()
    rows[2]["age"] = -500
    response = client.post(
        "/predict?on_invalid=flag&echo=age", json=rows, headers={**AUTH, "Accept": PARQUET}
    )
    assert response.status_code == 200 and response.mimetype == PARQUET
    answer = read_answer(response)
    assert answer.column("persona_id").to_pylist()[2] is None
    assert answer.column("problems").to_pylist()[2][0]["field"] == "age"
    assert answer.column("age").to_pylist()[2] == -500


def broken_rows():
    """Rows that break the contract's text and id rules, and a missing level (imputed)."""
    data = frame(8)
    data["customer_id"] = data["customer_id"].astype(str)
    data.loc[1, "channel"] = "fax"  # not a level
    data.loc[2, "region"] = None  # missing: the model imputes it
    data.loc[4, "customer_id"] = ""  # an empty id
    data.loc[6, "customer_id"] = "x" * 300  # an id past the length limit
    return data


@pytest.mark.parametrize("content_type", [ARROW, PARQUET])
def test_contract_rules_on_an_arrow_body_say_what_json_says(client, content_type):
    """The rules run on each distinct level and on the ids measured in Arrow: the same 400,
    and with on_invalid=flag the same answer, as for the JSON of the same rows."""
    data = broken_rows()
    rows = json.loads(data.to_json(orient="records"))
    body = arrow_body(data) if content_type == ARROW else parquet_body(data)
    as_json = refused(client, 400, "invalid_value", json=rows)
    as_arrow = refused(
        client, 400, "invalid_value", data=body, headers={"Content-Type": content_type}
    )
    assert as_arrow == as_json
    assert {(d["field"], tuple(d["rows"])) for d in as_json["details"]} == {
        ("channel", (1,)),
        ("customer_id", (4,)),
        ("customer_id", (6,)),
    }
    flagged = client.post("/predict?on_invalid=flag", json=rows, headers=AUTH).get_json()
    headers = {**AUTH, "Content-Type": content_type, "Accept": content_type}
    response = client.post("/predict?on_invalid=flag", data=body, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    answer = read_answer(response).to_pylist()
    expected = flagged["predictions"]
    assert [a["customer_id"] for a in answer] == [p["customer_id"] for p in expected]
    assert [a["persona_id"] for a in answer] == [p["persona_id"] for p in expected]
    assert [a["persona_name"] for a in answer] == [p["persona_name"] for p in expected]
    assert [a["confidence"] for a in answer] == pytest.approx([p["confidence"] for p in expected])
    assert [a["problems"] for a in answer] == [p["problems"] for p in expected]
    assert [a["persona_id"] is None for a in answer] == [i in (1, 4, 6) for i in range(8)]


def test_bad_arrow_and_parquet_bodies_are_400s_naming_the_problem(client):
    data = frame(6)
    good = arrow_body(data)
    for body, content_type, kind in (
        (good[: len(good) // 2], ARROW, "malformed_arrow"),
        (b"\x00" * 64, PARQUET, "malformed_parquet"),
        (arrow_body(data.drop(columns=["age"])), ARROW, "missing_columns"),
        (parquet_body(data.astype({"annual_income": str})), PARQUET, "invalid_type"),
    ):
        error = refused(client, 400, kind, data=body, headers={"Content-Type": content_type})
        if kind in ("missing_columns", "invalid_type"):
            found = error["details"][0]
            assert found["field"] in ("age", "annual_income")
            assert found["rows"] == ([0, 1, 2, 3, 4] if kind == "invalid_type" else found["rows"])
    big = parquet_body(frame(MAX_ROWS + 1))
    error = refused(client, 413, "too_many_rows", data=big, headers={"Content-Type": PARQUET})
    assert str(MAX_ROWS) in error["message"]
    huge = arrow_body(frame(MAX_ROWS)) * 10
    assert len(huge) > MAX_BODY
    refused(client, 413, "body_too_large", data=huge, headers={"Content-Type": ARROW})


def test_openapi_documents_the_arrow_and_parquet_bodies(client):
    predict = client.get("/openapi.json").get_json()["paths"]["/predict"]["post"]
    for content in (predict["requestBody"]["content"], predict["responses"]["200"]["content"]):
        for media in (ARROW, PARQUET, "application/x-parquet"):
            assert content[media]["schema"]["format"] == "binary"
