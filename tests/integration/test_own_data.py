"""A team's own export beside the synthetic personas, on real PostgreSQL, MLflow and Gunicorn.

The path of the README's "Bringing your own data": a semicolon CSV with a BOM and no month
column -> infer-schema -> segmentation add -> ingest -> train -> served by the running API
under /segmentations/NAME/ (no restart, no .env edit) while the default segmentation keeps
being served; then a rename, a batch score, and a removal.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime
from functools import partial

import pandas as pd
import pytest
import requests
import sqlalchemy as sa
import yaml
from conftest import ROOT, VENVS
from conftest import wait_until as shared_wait_until

from persona.adapters import drift_store
from persona.cli import main
from persona.services.processes import free_port, start_service, wait_http

pytestmark = pytest.mark.integration

FIXTURES = ROOT / "tests/fixtures"
# Shaped like a public marketing export (semicolon, BOM, int ids, dd-mm-yyyy dates, a few
# missing incomes, a constant and a free-text column, no month column); the README uses it.
EXAMPLE = ROOT / "00_create_data/examples/marketing_campaign.csv"
POLL_SECONDS = 1.0


def run(capsys, *argv: str):
    code = main(list(argv))
    out = capsys.readouterr()
    assert code == 0, out.err[-2000:]
    return json.loads(out.out) if out.out.strip() else None


wait_until = partial(shared_wait_until, poll_s=0.2)


@pytest.fixture
def stack(mlflow_server, make_database, tmp_path, monkeypatch):
    """A project on its own PostgreSQL database and model names, a trained default model,
    and the API (Gunicorn) serving it."""
    name = f"persona-own-{uuid.uuid4().hex[:6]}"
    env = {
        "PERSONA_HOME": str(tmp_path / "home"),
        "PERSONA_DATABASE_URL": make_database("persona_own"),
        "PERSONA_ENV_FILE": str(tmp_path / "none.env"),
        "MLFLOW_TRACKING_URI": mlflow_server.url,
        "PERSONA_MODEL_NAME": name,
        "MLFLOW_EXPERIMENT_NAME": name,
        "PERSONA_EVIDENTLY_PROJECT": name,
        "PERSONA_PARAMS": str(FIXTURES / "params_fast.yaml"),
        "PERSONA_SCHEMA": str(ROOT / "00_create_data/schema.yaml"),
        "PERSONA_CATALOGUE": str(ROOT / "00_create_data/personas.yaml"),
        "PERSONA_DRIFT_CONFIG": str(ROOT / "04_monitoring/drift.yaml"),
        "PERSONA_MODEL_POLL_SECONDS": str(POLL_SECONDS),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(["train", "--source", "synthetic", "--rows", "2000"]) == 0
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    api = start_service(
        [str(VENVS / "scoring/bin/gunicorn"), "-c", str(ROOT / "03_deployment/gunicorn.conf.py")],
        {**os.environ, **env, "PERSONA_SCORING_PORT": str(port), "PERSONA_SCORING_WORKERS": "2"},
        tmp_path / "gunicorn.log",
        url,
        f"{url}/health",
        60,
    )
    wait_http(f"{url}/ready", 60, api.process, api.log)
    monkeypatch.setenv("PERSONA_SCORING_URL", url)
    yield {"url": url, "env": env, "tmp": tmp_path}
    api.stop()


def test_own_export_is_served_beside_the_default_without_a_restart(stack, capsys, caplog):
    url, tmp = stack["url"], stack["tmp"]
    default_before = requests.get(f"{url}/model", timeout=10).json()
    path = EXAMPLE
    export = pd.read_csv(path, sep=";", encoding="utf-8-sig")

    inferred = run(capsys, "data", "infer-schema", str(path), "--out", str(tmp / "marketing.yaml"))
    assert inferred["id_column"] == "ID"
    # as the schema's comments ask: widen the observed ranges to what is plausible
    schema = yaml.safe_load((tmp / "marketing.yaml").read_text())
    schema["numeric_features"]["Income"].update(min=0, max=1_000_000)
    (tmp / "marketing.yaml").write_text(yaml.safe_dump(schema, sort_keys=False))
    # its own drift thresholds: a few hundred customers are enough for this team
    drift = yaml.safe_load((ROOT / "04_monitoring/drift.yaml").read_text())
    (tmp / "drift.yaml").write_text(yaml.safe_dump({**drift, "min_rows": 100}))
    added = run(
        capsys,
        "segmentation",
        "add",
        "marketing",
        "--schema",
        str(tmp / "marketing.yaml"),
        "--drift",
        str(tmp / "drift.yaml"),
    )
    assert added["customers_table"] == "customers_marketing"
    ingested = run(capsys, "data", "ingest", "--segmentation", "marketing", "--file", str(path))
    assert ingested["rows"] == len(export)
    assert ingested["month"] == datetime.now(UTC).strftime("%Y-%m")
    trained = run(capsys, "train", "--segmentation", "marketing")
    assert (trained["version"], trained["alias"]) == ("1", "production")

    # served by every worker of the running API within the poll interval: no restart, no .env
    seen: dict[int, str | None] = {}

    def every_worker_serves() -> bool:
        answer = requests.get(f"{url}/segmentations", timeout=10).json()
        served = {s["name"]: s["version"] for s in answer["segmentations"]}
        seen[answer["worker"]] = served.get("marketing")
        return len(seen) == 2 and set(seen.values()) == {"1"}

    wait_until(every_worker_serves, 30, "both workers to serve the new segmentation")
    served = requests.get(f"{url}/segmentations/marketing/model", timeout=10).json()
    assert served["version"] == "1" and served["input"]["id_column"] == "ID"
    listed = requests.get(f"{url}/segmentations", timeout=10).json()["segmentations"]
    assert [s["name"] for s in listed] == ["default", "marketing"]

    rows = json.loads(export.head(50).to_json(orient="records"))
    scored = requests.post(f"{url}/segmentations/marketing/predict", json=rows, timeout=30)
    assert scored.status_code == 200, scored.text
    predictions = scored.json()["predictions"]
    assert [p["ID"] for p in predictions] == [str(r["ID"]) for r in rows] or [
        p["ID"] for p in predictions
    ] == [r["ID"] for r in rows]
    names = {p["persona_id"]: p["persona_name"] for p in predictions}
    assert len(names) >= 2

    # the default segmentation is untouched and still served
    default_after = requests.get(f"{url}/model", timeout=10).json()
    assert (default_after["name"], default_after["version"]) == (
        default_before["name"],
        default_before["version"],
    )
    mixed = requests.post(f"{url}/predict", json=rows, timeout=30)
    assert mixed.status_code == 400  # the synthetic model's columns are not these

    # a name a person gives is served from the API's next check
    persona_id = predictions[0]["persona_id"]
    run(
        capsys,
        "personas",
        "rename",
        "--segmentation",
        "marketing",
        str(persona_id),
        "Affluent wine lovers",
    )
    wait_until(
        lambda: requests.post(
            f"{url}/segmentations/marketing/predict", json=rows[:1], timeout=30
        ).json()["predictions"][0]["persona_name"]
        == "Affluent wine lovers",
        30,
        "the rename to be served",
    )

    # batch scoring of the segmentation's table goes through its own route and table
    summary = run(capsys, "score", "--segmentation", "marketing")
    assert summary["table"] == "customer_personas_marketing"
    engine = sa.create_engine(stack["env"]["PERSONA_DATABASE_URL"])
    with engine.connect() as connection:
        count = connection.execute(sa.text("SELECT count(*) FROM customer_personas_marketing"))
        assert count.scalar() == len(export)
        assert not sa.inspect(connection).has_table("customer_personas")

    # the next export is another snapshot of the same segmentation; monitoring compares them
    drifted = export.assign(Income=(export["Income"] * 1.4).round().astype("Int64"))
    later = tmp / "marketing_next.csv"
    later.write_bytes(b"\xef\xbb\xbf" + drifted.to_csv(sep=";", index=False).encode())
    run(
        capsys,
        "data",
        "ingest",
        "--segmentation",
        "marketing",
        "--file",
        str(later),
        "--month",
        "2031-01",
    )
    checked = run(
        capsys, "monitor", "--segmentation", "marketing", "--month", "2031-01", "--retrain", "false"
    )
    runs = drift_store.read_runs(engine)
    mine = runs[runs["run_id"] == checked["run_id"]].iloc[0]
    assert mine["model_name"].endswith("-marketing") and mine["data_window"].endswith("2031-01")
    assert mine["n_current"] == len(export)
    columns = drift_store.read_columns(engine, checked["run_id"]).set_index("column_name")
    assert columns.loc["Income", "drifted"] and not columns.loc["Kidhome", "drifted"]

    # removal refuses while it serves, then stops the API serving it
    assert main(["segmentation", "remove", "marketing"]) == 2
    assert "--force" in caplog.text
    run(capsys, "segmentation", "remove", "marketing", "--force")
    wait_until(
        lambda: requests.get(f"{url}/segmentations/marketing/model", timeout=10).status_code == 404,
        30,
        "the API to drop the removed segmentation",
    )
    assert requests.get(f"{url}/model", timeout=10).json()["version"] == default_before["version"]
