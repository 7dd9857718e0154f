"""The scoring API as users run it: a real Gunicorn process and a real MLflow server.

One module-scoped MLflow server (own PostgreSQL database) holds two versions of a model:
v1 in production and v2 as challenger. Gunicorn runs `03_deployment/gunicorn.conf.py`, the
command `make serve` and the image run, with a 1-second alias poll.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import os
import subprocess
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests
from conftest import ROOT, VENVS, start_mlflow_server
from load import Load
from marketing import SCHEMA_PATH, marketing_frame
from mlflow.tracking import MlflowClient

from persona.composition import training_context
from persona.data.catalogue import load_catalogue
from persona.data.generator import generate_snapshot
from persona.flows.train import DataRequest, run_training
from persona.services.processes import ServiceProcess, free_port, start_service, wait_http
from persona.settings import load_settings

FIXTURES = ROOT / "tests/fixtures"
API_TOKEN, ADMIN_TOKEN = "predict-token-for-tests", "admin-token-for-tests"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
POLL_SECONDS = 1.0
MAX_BODY_BYTES = 1_000_000  # 500 rows of JSON are about 130 kB


@pytest.fixture(scope="module")
def registry(tmp_path_factory, make_database):
    """An MLflow server with model v1 (production) and v2 (challenger); restartable."""
    home = tmp_path_factory.mktemp("scoring-mlflow")
    backend = make_database("persona_scoring")
    port = free_port()
    server = start_mlflow_server(home, backend, port=port)
    name = f"persona-serve-{uuid.uuid4().hex[:8]}"
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "PERSONA_HOME")}
    os.environ.update({"MLFLOW_TRACKING_URI": server.url, "PERSONA_HOME": str(home / "train")})
    try:
        for params, seed in (("params_fast.yaml", 1), ("params_worse.yaml", 2)):
            settings = load_settings(
                overrides={
                    "params_path": FIXTURES / params,
                    "model_name": name,
                    "mlflow_experiment": name,
                    "catalogue_path": ROOT / "00_create_data/personas.yaml",
                    "schema_path": ROOT / "00_create_data/schema.yaml",
                }
            )
            run_training(
                training_context(settings),
                DataRequest(source="synthetic", rows=3000, seed=seed),
                progress=False,
            )
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    client = MlflowClient(server.url)
    assert client.get_model_version_by_alias(name, "production").version == "1"
    state = {"server": server, "name": name, "home": home, "backend": backend, "port": port}

    def restart() -> None:
        state["server"] = start_mlflow_server(home, backend, port=port)

    state["restart"] = restart
    yield state
    state["server"].stop()


def start_api(registry, tmp_path: Path, **env) -> ServiceProcess:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    environment = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{registry['port']}",
        "PERSONA_MODEL_NAME": registry["name"],
        "PERSONA_SCORING_PORT": str(port),
        "PERSONA_SCORING_WORKERS": "2",
        "PERSONA_MODEL_POLL_SECONDS": str(POLL_SECONDS),
        "PERSONA_API_TOKEN": API_TOKEN,
        "PERSONA_ADMIN_TOKEN": ADMIN_TOKEN,
        "PERSONA_MAX_BATCH_ROWS": "500",
        "PERSONA_MAX_BODY_BYTES": str(MAX_BODY_BYTES),
        "PERSONA_SCHEMA": str(ROOT / "00_create_data/schema.yaml"),
        "PERSONA_HOME": str(tmp_path),
        **env,
    }
    environment.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return start_service(
        [str(VENVS / "scoring/bin/gunicorn"), "-c", str(ROOT / "03_deployment/gunicorn.conf.py")],
        environment,
        tmp_path / f"gunicorn-{port}.log",
        url,
        f"{url}/health",
        60,
    )


@pytest.fixture(scope="module")
def api(registry, tmp_path_factory):
    service = start_api(registry, tmp_path_factory.mktemp("api"))
    wait_http(f"{service.url}/ready", 60, service.process, service.log)
    yield service
    service.stop()


@pytest.fixture(scope="module")
def customers():
    catalogue = load_catalogue(ROOT / "00_create_data/personas.yaml")
    return generate_snapshot(catalogue, 200, "2026-02", seed=11, missing_rate=0.02, progress=False)


def records(frame):
    cleaned = frame.drop(columns=["true_persona", "snapshot_month"])
    return [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
        for row in cleaned.to_dict(orient="records")
    ]


def post(api, body=None, *, data=None, headers=None, auth=True):
    merged = {**(AUTH if auth else {}), **(headers or {})}
    return requests.post(f"{api.url}/predict", json=body, data=data, headers=merged, timeout=30)


def test_json_records_score_like_the_registered_pyfunc(api, registry, customers):
    response = post(api, records(customers))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == {"name": registry["name"], "version": "1"}
    assert body["n_rows"] == len(customers)
    predictions = body["predictions"]
    assert [p["customer_id"] for p in predictions] == list(customers.customer_id)

    pyfunc = mlflow.pyfunc.load_model(f"models:/{registry['name']}@production")
    expected = pyfunc.predict(customers)
    assert [p["persona_id"] for p in predictions] == list(expected.persona_id)
    assert [p["persona_name"] for p in predictions] == list(expected.persona_name)
    np.testing.assert_allclose([p["confidence"] for p in predictions], expected.confidence)
    np.testing.assert_allclose([p["distance"] for p in predictions], expected.distance)


def test_every_json_layout_and_csv_give_the_same_answer(api, customers):
    rows = records(customers.head(20))
    columns = list(rows[0])
    layouts = [
        {"customers": rows},
        {"columns": columns, "data": [[r[c] for c in columns] for r in rows]},
        {c: [r[c] for r in rows] for c in columns},
    ]
    reference = post(api, rows).json()["predictions"]
    for layout in layouts:
        assert post(api, layout).json()["predictions"] == reference

    text = customers.head(20).drop(columns=["true_persona"]).to_csv(index=False)
    as_csv = post(api, data=text, headers={"Content-Type": "text/csv", "Accept": "text/csv"})
    assert as_csv.status_code == 200 and as_csv.headers["Content-Type"].startswith("text/csv")
    parsed = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [r["persona_name"] for r in parsed] == [p["persona_name"] for p in reference]
    assert {r["model_version"] for r in parsed} == {"1"}
    csv_in_json_out = post(api, data=text, headers={"Content-Type": "text/csv"})
    assert [p["persona_id"] for p in csv_in_json_out.json()["predictions"]] == [
        p["persona_id"] for p in reference
    ]


ARROW, PARQUET = "application/vnd.apache.arrow.stream", "application/vnd.apache.parquet"


def arrow_stream(frame: pd.DataFrame) -> bytes:
    import pyarrow as pa

    table = pa.Table.from_pandas(frame, preserve_index=False)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=64)  # several record batches
    return sink.getvalue().to_pybytes()


def parquet_file(frame: pd.DataFrame) -> bytes:
    out = io.BytesIO()
    frame.to_parquet(out, index=False)
    return out.getvalue()


def read_table(response: requests.Response):
    import pyarrow as pa
    import pyarrow.parquet as pq

    if response.headers["Content-Type"] == ARROW:
        return pa.ipc.open_stream(response.content).read_all()
    return pq.read_table(pa.BufferReader(response.content))


def test_arrow_parquet_and_json_give_identical_labels(api, customers):
    """The same 200 rows (2% missing values) as JSON, an Arrow stream and Parquet, each
    answered in JSON and in its own format: the same persona for every customer."""
    sent = customers.drop(columns=["true_persona"])
    reference = post(api, records(customers)).json()["predictions"]
    labels = [p["persona_id"] for p in reference]
    assert len(labels) == len(customers) and sent.isna().any().any()
    for body, content_type in ((arrow_stream(sent), ARROW), (parquet_file(sent), PARQUET)):
        as_json = post(api, data=body, headers={"Content-Type": content_type})
        assert as_json.status_code == 200, as_json.text
        assert as_json.json()["predictions"] == reference
        assert as_json.headers["X-Ignored-Columns"] == "snapshot_month"
        own = post(api, data=body, headers={"Content-Type": content_type, "Accept": content_type})
        assert own.status_code == 200 and own.headers["Content-Type"] == content_type
        answer = read_table(own)
        assert answer.column("customer_id").to_pylist() == list(customers.customer_id)
        assert answer.column("persona_id").to_pylist() == labels
        np.testing.assert_allclose(
            answer.column("distance").to_numpy(), [p["distance"] for p in reference]
        )
        assert set(answer.column("model_version").to_pylist()) == {"1"}
    wrong = sent.astype({"age": str})
    refused = post(api, data=parquet_file(wrong), headers={"Content-Type": PARQUET})
    assert refused.status_code == 400, refused.text
    found = refused.json()["error"]["details"][0]
    assert (found["kind"], found["field"], found["count"]) == ("invalid_type", "age", 200)
    cut = arrow_stream(sent)[:-100]
    truncated = post(api, data=cut, headers={"Content-Type": ARROW})
    assert truncated.status_code == 400 and truncated.json()["error"]["kind"] == "malformed_arrow"


@pytest.mark.parametrize(
    ("mutate", "status", "kind", "field"),
    [
        (
            lambda rows: [{k: v for k, v in r.items() if k != "age"} for r in rows],
            400,
            "missing_columns",
            "age",
        ),
        (lambda rows: [{**r, "shoe_size": 42} for r in rows], 400, "unknown_columns", "shoe_size"),
        (
            lambda rows: rows[:3] + [{**rows[3], "annual_income": "lots"}] + rows[4:],
            400,
            "invalid_type",
            "annual_income",
        ),
        (
            lambda rows: rows[:2] + [{**rows[2], "channel": 7}] + rows[3:],
            400,
            "invalid_type",
            "channel",
        ),
        (
            lambda rows: rows[:1] + [{**rows[1], "customer_id": None}] + rows[2:],
            400,
            "null_not_allowed",
            "customer_id",
        ),
        (lambda rows: [], 400, "empty_batch", None),
        (lambda rows: rows * 60, 413, "too_many_rows", None),
    ],
)
def test_bad_input_is_a_4xx_naming_the_problem(api, customers, mutate, status, kind, field):
    response = post(api, mutate(records(customers.head(10))))
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["kind"] == kind and error["message"]
    if field:
        detail = next(d for d in error["details"] if d["field"] == field)
        if kind in ("invalid_type", "null_not_allowed"):
            assert detail["rows"] and detail["expected"]


def test_malformed_bodies_and_media_types(api):
    broken = post(api, data=b'[{"age": 3', headers={"Content-Type": "application/json"})
    assert broken.status_code == 400 and broken.json()["error"]["kind"] == "malformed_json"
    broken_csv = post(api, data=b'age,"channel\n1', headers={"Content-Type": "text/csv"})
    assert broken_csv.status_code == 400
    xml = post(api, data=b"<customers/>", headers={"Content-Type": "application/xml"})
    assert xml.status_code == 415 and xml.json()["error"]["kind"] == "unsupported_media_type"
    html = post(api, [{}], headers={"Accept": "text/html"})
    assert html.status_code == 406


def test_auth_on_predict_and_admin(api, customers):
    rows = records(customers.head(2))
    assert post(api, rows, auth=False).status_code == 401
    assert post(api, rows, headers={"Authorization": "Bearer wrong"}).status_code == 401
    reload = f"{api.url}/admin/reload"
    assert requests.post(reload, timeout=10).status_code == 401
    assert requests.post(reload, headers=AUTH, timeout=10).status_code == 401  # predict token
    answer = requests.post(reload, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)
    assert answer.status_code == 200 and answer.json()["registry_reachable"] is True


def test_info_endpoints(api, registry, customers):
    assert requests.get(f"{api.url}/health", timeout=5).json() == {"status": "ok"}
    ready = requests.get(f"{api.url}/ready", timeout=5).json()
    assert ready["ready"] is True and ready["version"] == "1" and ready["registry_reachable"]
    model = requests.get(f"{api.url}/model", timeout=5).json()
    assert model["name"] == registry["name"] and model["version"] == "1" and model["run_id"]
    assert model["promoted_at"] and model["training_metrics"]["silhouette"] > 0
    assert all(p["name"] and p["description"] for p in model["personas"])
    assert model["fast_path"] is True

    post(api, records(customers.head(5)))
    post(api, [])
    metrics = requests.get(f"{api.url}/metrics", timeout=5).text
    assert 'persona_requests_total{endpoint="/predict",status="200"}' in metrics
    assert "persona_request_seconds_bucket" in metrics
    assert 'persona_errors_total{kind="empty_batch"}' in metrics
    rows_line = next(
        line for line in metrics.splitlines() if line.startswith("persona_rows_scored_total")
    )
    assert float(rows_line.split()[-1]) >= 5
    assert "persona_model_version" in metrics

    document = requests.get(f"{api.url}/openapi.json", timeout=5).json()
    customer = document["components"]["schemas"]["Customer"]
    assert set(model["input"]["numeric"]) <= set(customer["properties"])
    assert {"/predict", "/health", "/ready", "/model", "/metrics"} <= set(document["paths"])


def _fuzz(api, tmp_path: Path, token: str, max_examples: int, *paths: str) -> tuple[int, str]:
    """`st run --checks all`, valid and invalid requests, on the given paths; (requests, output)."""
    cassette = tmp_path / f"cassette-{paths[0].strip('/').replace('/', '-')}.yaml"
    command = [
        str(VENVS / "dev/bin/st"),
        "run",
        f"{api.url}/openapi.json",
        "--checks",
        "all",
        "--data-generation-method",
        "all",
        "--hypothesis-max-examples",
        str(max_examples),
        "--hypothesis-derandomize",
        "--request-timeout",
        "20000",
        "--header",
        f"Authorization: Bearer {token}",
        "--cassette-path",
        str(cassette),
        "--no-color",
        *(arg for path in paths for arg in ("--include-path", path)),
    ]
    # the hooks send Arrow and Parquet bodies (schemathesis imports them from its working dir)
    hooks = {"NO_COLOR": "1", "SCHEMATHESIS_HOOKS": "schemathesis_hooks"}
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, **hooks},
        cwd=Path(__file__).parent,
    )
    requests_made = cassette.read_text().count("\n- id:") if cassette.exists() else 0
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    return requests_made, output


def test_fuzzer_with_every_check_finds_no_mismatch_and_no_5xx(api, tmp_path):
    """schemathesis, as a user runs it: every operation, positive and negative data, all
    checks (status codes, content types, response schemas, negative data rejected, auth)."""
    paths = ("/predict", "/health", "/ready", "/model", "/metrics", "/segmentations")
    named = ("/segmentations/{name}/model", "/segmentations/{name}/predict")
    scoring, report = _fuzz(api, tmp_path, API_TOKEN, 1000, *paths, *named)
    admin, admin_report = _fuzz(api, tmp_path, ADMIN_TOKEN, 50, "/admin/reload")
    print(report[-1500:], admin_report[-800:])
    assert scoring + admin >= 1000, (scoring, admin)
    for path in (*paths, *named):
        assert f"{path} " in report
    assert "/admin/reload" in admin_report


def test_unsupported_methods_say_what_is_allowed(api):
    for method in ("TRACE", "DELETE", "PUT"):
        response = requests.request(method, f"{api.url}/predict", headers=AUTH, timeout=10)
        assert response.status_code == 405, method
        assert response.headers["Allow"] and "POST" in response.headers["Allow"]
        assert response.json()["error"]["kind"] == "method_not_allowed"


def test_body_cap_from_content_length_and_while_reading_a_chunked_body(api):
    big = b"[" + b" " * (MAX_BODY_BYTES + 10) + b"]"
    declared = post(api, data=big, headers={"Content-Type": "application/json"})
    assert declared.status_code == 413
    error = declared.json()["error"]
    assert error["kind"] == "body_too_large" and "PERSONA_MAX_BODY_BYTES" in error["message"]

    def chunks():  # no Content-Length: requests sends Transfer-Encoding: chunked
        for _ in range(20):
            yield b" " * 100_000

    chunked = post(api, data=chunks(), headers={"Content-Type": "application/json"})
    assert chunked.status_code == 413 and chunked.json()["error"]["kind"] == "body_too_large"
    assert post(api, [{}], headers={"Content-Type": "application/json"}).status_code == 400


def test_hostile_values_get_a_400_naming_field_and_row(api, customers):
    rows = records(customers.head(4))
    body = json.dumps(rows).encode().replace(b'"C0', b'"C\xff0', 1)
    encoding = post(api, data=body, headers={"Content-Type": "application/json"})
    assert encoding.status_code == 400, encoding.text
    assert encoding.json()["error"]["kind"] == "invalid_encoding"
    assert encoding.json()["error"]["details"][0]["position"] == body.index(b"\xff")
    for field, value, rule in (
        ("customer_id", "C" * 5000, "at most 256 characters"),
        ("age", -500, ">= 18"),
        ("channel", "fax", "one of ['online', 'mobile', 'store', 'mixed']"),
        ("region", "mars", "one of ['north', 'south', 'east', 'west', 'central']"),
        ("annual_income", 1e200, "<= 1000000"),
    ):
        bad = [dict(r) for r in rows]
        bad[2][field] = value
        response = post(api, bad)
        assert response.status_code == 400, (field, response.text)
        detail = response.json()["error"]["details"][0]
        assert (detail["field"], detail["rule"], detail["rows"]) == (field, rule, [2])


def test_on_invalid_flag_answers_every_row(api, customers):
    rows = records(customers.head(6))
    rows[1]["age"], rows[4]["channel"] = -500, "fax"
    response = requests.post(
        f"{api.url}/predict?on_invalid=flag", json=rows, headers=AUTH, timeout=30
    )
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert [p["persona_id"] is None for p in predictions] == [
        False,
        True,
        False,
        False,
        True,
        False,
    ]
    assert predictions[1]["problems"] == [
        {"field": "age", "rule": ">= 18", "kind": "invalid_value"}
    ]
    by_header = post(api, rows, headers={"X-On-Invalid": "flag"})
    assert by_header.json()["predictions"] == predictions
    metrics = requests.get(f"{api.url}/metrics", timeout=5).text
    assert "persona_rows_flagged_total" in metrics


@pytest.fixture(scope="module")
def raw_model(registry, tmp_path_factory):
    """A model with derived features (00_create_data/schema_marketing.yaml), trained from a
    marketing export file by the real training flow into the same MLflow server."""
    home = tmp_path_factory.mktemp("raw-model")
    name = f"persona-raw-{uuid.uuid4().hex[:8]}"
    export = home / "marketing.csv"
    marketing_frame(2000, 3, missing_income=20).to_csv(export, index=False)
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "PERSONA_HOME")}
    os.environ.update({"MLFLOW_TRACKING_URI": registry["server"].url, "PERSONA_HOME": str(home)})
    try:
        settings = load_settings(
            overrides={
                "params_path": FIXTURES / "params_fast.yaml",
                "model_name": name,
                "mlflow_experiment": name,
                "catalogue_path": ROOT / "00_create_data/personas.yaml",
                "schema_path": SCHEMA_PATH,
            }
        )
        run_training(
            training_context(settings),
            DataRequest(source="file", path=str(export)),
            progress=False,
        )
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return name


def test_a_model_with_derived_features_serves_raw_columns_under_gunicorn(
    registry, raw_model, make_database, tmp_path
):
    """The served model takes the raw export columns (a dd-mm-yyyy or ISO date as text),
    computes age, tenure, spend and log income itself, on its fast path, as the registered
    pyfunc does; a bad date is a 400 naming row, column and format; the scoring log keeps the
    raw columns, from which monitoring computes the same model inputs."""
    from persona.adapters.scoring_log import read_scoring_log
    from persona.data.schema import load_schema
    from persona.model.preprocess import prepare_features, raw_inputs
    from persona.monitoring.rows import frame_from_scoring_log

    url = make_database("persona_rawlog")
    service = start_api(
        registry,
        tmp_path,
        PERSONA_MODEL_NAME=raw_model,
        PERSONA_SCHEMA=str(SCHEMA_PATH),
        PERSONA_SCORING_LOG="true",
        PERSONA_DATABASE_URL=url,
    )
    schema = load_schema(SCHEMA_PATH)
    frame = marketing_frame(40, 30, month="2026-03")
    frame.loc[5, "Dt_Customer"] = "2013-05-17"  # ISO, as pandas writes dates, is read too
    frame.loc[6, "Income"] = np.nan
    rows = [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
        for row in frame.drop(columns=["snapshot_month"]).to_dict(orient="records")
    ]
    try:
        wait_http(f"{service.url}/ready", 60, service.process, service.log)
        response = post(service, rows)
        assert response.status_code == 200, response.text
        predictions = response.json()["predictions"]

        mlflow.set_tracking_uri(registry["server"].url)
        pyfunc = mlflow.pyfunc.load_model(f"models:/{raw_model}@production")
        expected = pyfunc.predict(raw_inputs(frame, schema))
        assert [p["persona_id"] for p in predictions] == list(expected.persona_id)
        np.testing.assert_allclose([p["confidence"] for p in predictions], expected.confidence)
        np.testing.assert_allclose([p["distance"] for p in predictions], expected.distance)

        text = frame.to_csv(index=False)
        as_csv = post(service, data=text, headers={"Content-Type": "text/csv"})
        assert as_csv.json()["predictions"] == predictions

        bad = [dict(r) for r in rows]
        bad[3]["Dt_Customer"] = "31-02-2012"
        refused = post(service, bad)
        assert refused.status_code == 400, refused.text
        (found,) = refused.json()["error"]["details"]
        assert (found["field"], found["rows"], found["kind"]) == (
            "Dt_Customer",
            [3],
            "invalid_value",
        )
        assert found["expected"] == "a date as %d-%m-%Y (e.g. 04-09-2012) or YYYY-MM-DD"

        model = requests.get(f"{service.url}/model", timeout=5).json()
        assert model["fast_path"] is True and model["input"]["dates"] == ["Dt_Customer"]
        assert set(model["derived"]) == {
            "reference_date",
            "age",
            "tenure_days",
            "total_spend",
            "log_income",
        }
        frozen = pyfunc.unwrap_python_model().derived.reference_date
        assert model["derived"]["reference_date"] == frozen.isoformat()  # the training date
        customer = requests.get(f"{service.url}/openapi.json", timeout=5).json()["components"][
            "schemas"
        ]["Customer"]
        assert set(schema.features) <= set(customer["required"])
        assert "age" not in customer["properties"]
    finally:
        service.stop()  # a stopping worker writes what it has queued

    logged = read_scoring_log(url, "scoring_log", days=1)
    current = frame_from_scoring_log(logged, schema)
    assert len(current) == len(frame)
    by_id = current.set_index("ID").loc[frame["ID"]]
    assert by_id["Dt_Customer"].tolist() == frame["Dt_Customer"].tolist()  # as sent, as text
    inputs = prepare_features(by_id, schema.with_reference_date(frozen))
    np.testing.assert_allclose(inputs["age"], 2026 - frame["Year_Birth"])
    labels = pyfunc.unwrap_python_model().estimator.predict(inputs)
    assert list(pyfunc.unwrap_python_model().persona_ids[labels]) == list(expected.persona_id)


def test_admin_reload_switches_every_worker_before_it_answers(registry, customers, tmp_path):
    """With a poll too slow to help, /admin/reload alone moves both workers, under load."""
    client = MlflowClient(registry["server"].url)
    service = start_api(registry, tmp_path, PERSONA_MODEL_POLL_SECONDS="3600")
    try:
        wait_http(f"{service.url}/ready", 60, service.process, service.log)
        with Load(f"{service.url}/predict", records(customers.head(50)), AUTH) as load:
            load.wait_for_answers_after(time.monotonic(), 40)
            client.set_registered_model_alias(registry["name"], "production", "2")
            moved = time.monotonic()
            answer = requests.post(
                f"{service.url}/admin/reload",
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                timeout=120,
            )
            returned = time.monotonic()
            assert answer.status_code == 200, answer.text
            assert answer.json()["version"] == "2"
            assert set(answer.json()["workers"].values()) == {"2"}
            assert len(answer.json()["workers"]) == 2
            load.wait_for_answers_after(returned, 100)
    finally:
        client.set_registered_model_alias(registry["name"], "production", "1")
        service.stop()
    assert load.failures == []
    after = [v for sent, _, v in load.seen if sent > returned]
    assert len(after) >= 100 and set(after) == {"2"}, Counter(after)
    before = [v for sent, _, v in load.seen if sent < moved]
    assert set(before) == {"1"}
    print(
        f"reload took {returned - moved:.2f}s; answers after it: {len(after)}, all v2; "
        f"mixed window {load.mixed_window(moved, '1', '2'):.2f}s"
    )


def test_a_promotion_outside_the_api_reaches_every_worker_within_the_poll(api, registry, customers):
    """A move in the MLflow UI (or make rollback, or the monitor): no reload call at all."""
    client = MlflowClient(registry["server"].url)
    with Load(f"{api.url}/predict", records(customers.head(50)), AUTH) as load:
        try:
            load.wait_for_answers_after(time.monotonic(), 40)
            client.set_registered_model_alias(registry["name"], "production", "2")
            moved = time.monotonic()
            settle = moved + POLL_SECONDS + 5  # a poll, then download and compile
            load.wait_for_answers_after(settle, 100, timeout_s=60)
        finally:
            client.set_registered_model_alias(registry["name"], "production", "1")
    assert load.failures == []
    settled = [v for sent, _, v in load.seen if sent > settle]
    assert len(settled) >= 100 and set(settled) == {"2"}, Counter(settled)
    first_new = min(r for s, r, v in load.seen if v == "2") - moved
    window = load.mixed_window(moved, "1", "2")
    print(f"first v2 answer {first_new:.2f}s after the move; mixed window {window:.2f}s")
    assert first_new <= POLL_SECONDS + 5
    # back on v1 for the other tests, forced right away by the admin endpoint
    requests.post(
        f"{api.url}/admin/reload", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60
    )


def test_registry_outage_keeps_serving_and_start_without_registry_waits(
    api, registry, customers, tmp_path
):
    rows = records(customers.head(5))
    registry["server"].stop()
    try:
        time.sleep(POLL_SECONDS * 3)
        assert post(api, rows).status_code == 200  # the loaded model keeps serving
        ready = requests.get(f"{api.url}/ready", timeout=5).json()
        assert ready["ready"] is True and ready["registry_reachable"] is False
        assert ready["registry_staleness_seconds"] >= POLL_SECONDS
        assert (
            "persona_registry_staleness_seconds"
            in requests.get(f"{api.url}/metrics", timeout=5).text
        )

        cold = start_api(registry, tmp_path)  # starts although the registry is down
        try:
            not_ready = requests.get(f"{cold.url}/ready", timeout=5)
            assert not_ready.status_code == 503 and not_ready.json()["reason"]
            assert post(cold, rows).status_code == 503
            registry["restart"]()
            wait_http(f"{cold.url}/ready", 30, cold.process, cold.log)
            # /ready answered from one worker; the other loads on its own next poll
            deadline = time.monotonic() + 30
            answers = [post(cold, rows) for _ in range(4)]
            while any(a.status_code != 200 for a in answers) and time.monotonic() < deadline:
                time.sleep(0.2)  # polling interval of the wait, not a wait for time to pass
                answers = [post(cold, rows) for _ in range(4)]
            assert [a.status_code for a in answers] == [200] * 4, answers[-1].text
            assert {a.json()["model"]["version"] for a in answers} == {"1"}
        finally:
            cold.stop()
    finally:
        if registry["server"].process.poll() is not None:
            registry["restart"]()


def test_batch_job_scores_a_month_into_postgres_idempotently(
    api, customers, make_database, monkeypatch, capsys
):
    from persona.adapters import database
    from persona.cli import main
    from persona.data.schema import load_schema

    url = make_database("persona_scorejob")
    schema = load_schema(ROOT / "00_create_data/schema.yaml")
    engine = database.make_engine(url)
    month = customers.assign(snapshot_month="2026-03")
    database.upsert_frame(engine, "customers", month, schema)
    database.upsert_frame(engine, "customers", month.assign(snapshot_month="2026-04"), schema)
    for key, value in {
        "PERSONA_DATABASE_URL": url,
        "PERSONA_SCORING_URL": api.url,
        "PERSONA_API_TOKEN": API_TOKEN,
        "PERSONA_SCHEMA": str(ROOT / "00_create_data/schema.yaml"),
    }.items():
        monkeypatch.setenv(key, value)

    for _ in range(2):  # a re-run updates the same rows
        assert main(["score", "--month", "2026-03", "--chunk-rows", "64"]) == 0
        summary = json.loads(capsys.readouterr().out)
        assert summary["scored_rows"] == len(customers) and summary["failed_rows"] == 0
        assert summary["table_rows"] == len(customers) and summary["model_versions"] == ["1"]
    stored = database.read_months(engine, "customer_personas", schema, ["2026-03"])
    assert sorted(stored.customer_id) == sorted(customers.customer_id)
    assert stored.persona_name.notna().all() and set(stored.model_version) == {"1"}


def test_batch_job_reports_a_failing_chunk_by_customer_and_keeps_the_rest(
    api, customers, tmp_path, monkeypatch, capsys
):
    from persona.cli import main

    frame = customers.astype({"age": object})
    frame.loc[70, "age"] = "not a number"  # in the second 64-row chunk
    source, out = tmp_path / "customers.csv", tmp_path / "personas.csv"
    frame.to_csv(source, index=False)
    monkeypatch.setenv("PERSONA_SCORING_URL", api.url)
    monkeypatch.setenv("PERSONA_API_TOKEN", API_TOKEN)
    monkeypatch.setenv("PERSONA_SCHEMA", str(ROOT / "00_create_data/schema.yaml"))

    code = main(["score", "--file", str(source), "--out", str(out), "--chunk-rows", "64"])

    summary = json.loads(capsys.readouterr().out)
    assert code == 1
    assert summary["failed_rows"] == 64 and "C00000070" in summary["failed_ids"]
    assert "annual_income" not in summary["failures"][0] and "age" in summary["failures"][0]
    written = pd.read_csv(out, dtype={"customer_id": str})
    assert len(written) == len(customers) - 64
    assert "C00000070" not in set(written.customer_id)


def test_scoring_log_keeps_every_scored_row_for_monitoring(
    registry, customers, make_database, tmp_path
):
    from persona.flows import monitor

    url = make_database("persona_scoringlog")
    service = start_api(registry, tmp_path, PERSONA_SCORING_LOG="true", PERSONA_DATABASE_URL=url)
    try:
        wait_http(f"{service.url}/ready", 60, service.process, service.log)
        with_ids = records(customers)
        complete = records(customers.dropna().head(50))  # keeps the nulls share as sent
        anonymous = [{k: v for k, v in r.items() if k != "customer_id"} for r in complete]
        assert post(service, with_ids).status_code == 200
        assert post(service, anonymous).status_code == 200
        as_arrow = arrow_stream(customers.head(30).drop(columns=["true_persona"]))
        assert post(service, data=as_arrow, headers={"Content-Type": ARROW}).status_code == 200
        version = requests.get(f"{service.url}/ready", timeout=5).json()["version"]
    finally:
        service.stop()  # a stopping worker writes what it has queued

    from persona.adapters.scoring_log import read_scoring_log

    logged = read_scoring_log(url, "scoring_log", days=1)
    assert len(logged) == len(customers) + 50 + 30  # the Arrow request's rows too
    assert set(logged.model_version) == {version} and logged.persona_name.notna().all()
    assert logged.customer_id.isna().sum() == 50
    assert Counter(logged.customer_id.dropna())[customers.customer_id.iloc[0]] == 2
    np.testing.assert_allclose(
        logged.dropna(subset=["customer_id"])
        .drop_duplicates("customer_id")  # the Arrow request sent 30 of them again
        .set_index("customer_id")
        .loc[customers.customer_id, "annual_income"],
        customers.annual_income,
    )

    settings = load_settings(
        environ={
            "PERSONA_DATABASE_URL": url,
            "PERSONA_SCHEMA": str(ROOT / "00_create_data/schema.yaml"),
            "PERSONA_CATALOGUE": str(ROOT / "00_create_data/personas.yaml"),
            "PERSONA_PARAMS": str(FIXTURES / "params_fast.yaml"),
            "PERSONA_DRIFT_CONFIG": str(ROOT / "04_monitoring/drift.yaml"),
        }
    )
    from persona.adapters.telegram import TelegramNotifier
    from persona.composition import monitor_context

    context = monitor_context(settings, notifier=TelegramNotifier(None, None))
    request = monitor.MonitorRequest.from_variables({"source": "scoring_log", "days": 1})
    current = monitor.load_current_step(context, request)
    # the customers the Arrow request scored again count once (their latest score)
    assert len(current) == len(customers) + 50 and request.window == "scoring log, last 1 days"


def test_scoring_log_database_down_never_slows_or_fails_scoring(registry, customers, tmp_path):
    closed = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    service = start_api(registry, tmp_path, PERSONA_SCORING_LOG="true", PERSONA_DATABASE_URL=closed)
    try:
        wait_http(f"{service.url}/ready", 60, service.process, service.log)
        for _ in range(5):
            assert post(service, records(customers)).status_code == 200
        # The writers retry for 10 s (a restart loses nothing), then drop and count the rows.
        dropped = "persona_scoring_log_dropped_rows_total 1000.0"
        deadline = time.monotonic() + 60
        metrics = requests.get(f"{service.url}/metrics", timeout=5).text
        while dropped not in metrics and time.monotonic() < deadline:
            time.sleep(0.2)  # polling interval of the wait, not a wait for time to pass
            metrics = requests.get(f"{service.url}/metrics", timeout=5).text
    finally:
        service.stop()
    assert "rows not written yet" in service.log.read_text()
    assert "persona_rows_scored_total 1000.0" in metrics
    assert dropped in metrics  # counted, not hidden


class FlakyProxy:
    """Stands between the batch job and the real API: 503 for the first request and for any
    chunk holding ``poisoned``; everything else is forwarded unchanged."""

    def __init__(self, target: str, poisoned: bytes) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        proxy = self
        self.seen = 0

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                proxy.seen += 1
                if proxy.seen == 1 or poisoned in body:
                    self.send_response(503)
                    self.end_headers()
                    self.wfile.write(b"upstream restarting")
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                answer = requests.post(f"{target}{self.path}", data=body, headers=headers)
                self.send_response(answer.status_code)
                self.send_header("Content-Type", answer.headers["Content-Type"])
                self.end_headers()
                self.wfile.write(answer.content)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_batch_job_retries_a_5xx_and_reports_what_still_fails(api, customers):
    from persona.data.schema import load_schema
    from persona.flows.score import score_frame
    from persona.serving.client import ScoringClient

    proxy = FlakyProxy(api.url, poisoned=b"C00000070")
    client = ScoringClient(proxy.url, API_TOKEN)
    client.score = functools.partial(client.score, backoff_s=0.01)
    try:
        outcome = score_frame(
            customers, load_schema(ROOT / "00_create_data/schema.yaml"), client, chunk_rows=64
        )
    finally:
        proxy.server.shutdown()
    # chunk 1: a 503, then scored on its retry; chunk 2 (C00000070): 503 on all 3 attempts
    assert proxy.seen == 2 + 3 + 2
    assert outcome.failed_ids == [f"C{i:08d}" for i in range(64, 128)]
    assert "HTTP 503" in outcome.failures[0]
    assert len(outcome.scored) == len(customers) - 64
    assert outcome.scored.persona_name.notna().all()


def test_batch_job_scores_a_file_without_a_month_column(api, customers):
    """A CRM export of one month need not repeat the month on every row."""
    from persona.data.schema import load_schema
    from persona.flows.score import score_frame
    from persona.serving.client import ScoringClient

    schema = load_schema(ROOT / "00_create_data/schema.yaml")
    frame = customers.drop(columns=[schema.month_column]).head(50)
    outcome = score_frame(frame, schema, ScoringClient(api.url, API_TOKEN))
    assert list(outcome.scored[schema.id_column]) == list(frame[schema.id_column])
    assert schema.month_column not in outcome.scored
    assert outcome.scored.persona_name.notna().all()


def test_operator_promote_and_rollback_show_in_the_api(api, registry, monkeypatch, capsys):
    """make promote / make rollback / a move in the MLflow UI, as /model reports them."""
    from persona.cli import main

    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry["server"].url)
    monkeypatch.setenv("PERSONA_MODEL_NAME", registry["name"])
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    def served() -> dict:
        reload = requests.post(f"{api.url}/admin/reload", headers=admin, timeout=120)
        assert reload.status_code == 200, reload.text
        return requests.get(f"{api.url}/model", timeout=5).json()

    try:
        assert main(["model", "promote", "2"]) == 0
        promoted = served()
        assert promoted["version"] == "2" and promoted["promoted_by"] == "persona"
        assert promoted["promoted_at"]
        assert main(["model", "rollback"]) == 0
        rolled_back = served()
        assert rolled_back["version"] == "1" and rolled_back["promoted_by"] == "persona"
        assert rolled_back["promoted_at"] >= promoted["promoted_at"]  # when it came back

        MlflowClient(registry["server"].url).set_registered_model_alias(
            registry["name"], "production", "2"
        )  # what the MLflow UI does
        outside = served()
        assert outside["version"] == "2" and outside["promoted_by"].startswith("outside")
        assert main(["model", "rollback"]) == 0  # works after a promotion made elsewhere
        assert served()["version"] == "1"
        capsys.readouterr()
    finally:
        MlflowClient(registry["server"].url).set_registered_model_alias(
            registry["name"], "production", "1"
        )


def test_before_the_first_model_the_api_says_so_once(registry, tmp_path):
    service = start_api(registry, tmp_path, PERSONA_MODEL_NAME="never-trained")
    try:
        ready = requests.get(f"{service.url}/ready", timeout=5)
        polls_done = time.monotonic() + 5 * POLL_SECONDS  # each worker polls every second
        while time.monotonic() < polls_done:
            ready = requests.get(f"{service.url}/ready", timeout=5)
            time.sleep(0.2)
    finally:
        service.stop()
    assert ready.status_code == 503
    assert "no version of never-trained holds @production yet" in ready.json()["reason"]
    said = service.log.read_text().count("no version of never-trained")
    assert 1 <= said <= 2, service.log.read_text()[-2000:]  # once per worker, not per poll


def messy_marketing_export(path: Path, rows: int, bad_row: int | None = None) -> pd.DataFrame:
    """A marketing export as teams send it: semicolon CSV, UTF-8 with a BOM, integer ids,
    missing incomes, a free-text column, no month column."""
    frame = marketing_frame(rows, 41, missing_income=9).drop(columns=["snapshot_month"])
    frame["ID"] = np.arange(5000, 5000 + rows)
    frame["Note"] = "rappelé en août"
    if bad_row is not None:
        frame.loc[bad_row, "Income"] = -5.0
    path.write_bytes(b"\xef\xbb\xbf" + frame.to_csv(sep=";", index=False).encode("utf-8"))
    return frame


def test_local_engine_streams_an_export_to_the_apis_labels_and_rejects_or_flags_bad_rows(
    registry, raw_model, make_database, tmp_path, monkeypatch, capsys, caplog
):
    """`persona score --engine local` loads the production model from the real registry and
    streams a messy export (another schema's columns) through it in small batches: the same
    labels as the API under Gunicorn gives for the same rows; a row that breaks the contract
    stops the job naming field, rule, row and id with no file left (reject), or is written
    unscored with its problem while the rest is scored (flag); a month of the customers table
    goes into the scores table, idempotently, with the API's labels."""
    from persona.adapters import database
    from persona.cli import main
    from persona.data.schema import load_schema

    service = start_api(
        registry, tmp_path, PERSONA_MODEL_NAME=raw_model, PERSONA_SCHEMA=str(SCHEMA_PATH)
    )
    project = make_database("persona_local_score")
    for key, value in {
        "MLFLOW_TRACKING_URI": registry["server"].url,
        "PERSONA_MODEL_NAME": raw_model,
        "PERSONA_SCHEMA": str(SCHEMA_PATH),
        "PERSONA_SCORING_URL": service.url,
        "PERSONA_API_TOKEN": API_TOKEN,
        "PERSONA_DATABASE_URL": project,
        "PERSONA_HOME": str(tmp_path / "home"),
        "PERSONA_ENV_FILE": str(tmp_path / "none.env"),
    }.items():
        monkeypatch.setenv(key, value)

    def score(*argv: str) -> tuple[int, dict | None, str]:
        caplog.clear()
        code = main(["score", *argv])
        out = capsys.readouterr()
        return code, json.loads(out.out) if out.out.strip() else None, out.err + caplog.text

    try:
        wait_http(f"{service.url}/ready", 60, service.process, service.log)
        export = tmp_path / "export.csv"
        frame = messy_marketing_export(export, 300)
        code, local, err = score(
            "--engine", "local", "--file", str(export), "--out", str(tmp_path / "local.parquet"),
            "--chunk-rows", "64",
        )  # fmt: skip
        assert code == 0, err[-2000:]
        assert (local["scored_rows"], local["failed_rows"], local["fast_path"]) == (300, 0, True)
        assert local["read"]["delimiter"] == ";" and local["model_versions"] == ["1"]
        code, http, err = score("--file", str(export), "--out", str(tmp_path / "http.csv"))
        assert code == 0, err[-2000:]
        streamed = pd.read_parquet(tmp_path / "local.parquet")
        answered = pd.read_csv(tmp_path / "http.csv", dtype={"ID": str, "model_version": str})
        assert streamed["ID"].tolist() == [str(i) for i in frame["ID"]]
        assert streamed["persona_id"].tolist() == answered["persona_id"].tolist()
        assert streamed["persona_name"].tolist() == answered["persona_name"].tolist()
        cut = ["model_name", "model_version", "persona_id", "persona_name"]
        assert set(cut) <= set(streamed.columns) and set(cut) <= set(answered.columns)

        bad = tmp_path / "bad.csv"
        messy_marketing_export(bad, 300, bad_row=133)
        out = tmp_path / "bad.parquet"
        code, _, err = score(
            "--engine", "local", "--file", str(bad), "--out", str(out), "--chunk-rows", "64"
        )
        assert code == 3
        assert "'Income'" in err and ">= 0" in err and "133" in err and "5133" in err
        assert not out.exists() and not list(tmp_path.glob(".bad.parquet*"))
        code, flagged, err = score(
            "--engine", "local", "--file", str(bad), "--out", str(out), "--chunk-rows", "64",
            "--on-invalid", "flag",
        )  # fmt: skip
        assert code == 1, err[-2000:]
        assert (flagged["scored_rows"], flagged["failed_rows"]) == (299, 1)
        assert flagged["failed_ids"] == ["5133"]
        written = pd.read_parquet(out)
        assert len(written) == 300 and written.loc[133, "problems"] == "Income: >= 0"
        assert pd.isna(written.loc[133, "persona_id"])
        assert written.drop(index=133)["persona_id"].tolist() == (
            answered.drop(index=133)["persona_id"].tolist()
        )

        schema = load_schema(SCHEMA_PATH)
        engine = database.make_engine(project)
        month = frame.drop(columns=["Note"]).assign(ID=frame["ID"].astype(str))
        database.upsert_frame(engine, "customers", month.assign(snapshot_month="2026-03"), schema)
        code, first, err = score("--month", "2026-03")
        assert code == 0, err[-2000:]
        by_api = database.read_months(engine, "customer_personas", schema, ["2026-03"])
        for _ in range(2):  # a rerun updates the same rows
            code, summary, err = score("--engine", "local", "--month", "2026-03")
            assert code == 0, err[-2000:]
            assert (summary["scored_rows"], summary["table_rows"]) == (300, 300)
        stored = database.read_months(engine, "customer_personas", schema, ["2026-03"])
        merged = stored.merge(by_api, on="ID", suffixes=("", "_api"))
        assert len(merged) == 300
        assert (merged["persona_id"] == merged["persona_id_api"]).all()
        assert set(stored.columns) == set(by_api.columns)
    finally:
        service.stop()
