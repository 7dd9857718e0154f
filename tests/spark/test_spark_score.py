"""`persona score --engine spark` on local[2] and on a real standalone master + worker: the
labels of the in-process engine on the same rows, reject/flag, and the scores table's months.

A real `mlflow server` holds a model with derived features trained by the dev environment's
`persona train` (training needs what the Spark environment leaves out); the command runs in
this process (the Spark environment), on one Spark session per master for the module.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from conftest import ROOT, VENVS
from marketing import SCHEMA_PATH, marketing_frame

from persona.adapters.spark_session import spark_session

pytestmark = pytest.mark.spark

FIXTURES = ROOT / "tests/fixtures"
ROWS = 300


def messy_export(path: Path, rows: int, bad_row: int | None = None) -> pd.DataFrame:
    """A marketing export as teams send it: `;`-separated, UTF-8 with a BOM, integer ids,
    missing incomes, a free-text column, columns in another order, no month column."""
    frame = marketing_frame(rows, 41, missing_income=9).drop(columns=["snapshot_month"])
    frame["ID"] = np.arange(5000, 5000 + rows)
    frame["Note"] = "rappelé en août"
    if bad_row is not None:
        frame.loc[bad_row, "Income"] = -5.0
    frame = frame[list(reversed(frame.columns))]
    path.write_bytes(b"\xef\xbb\xbf" + frame.to_csv(sep=";", index=False).encode("utf-8"))
    return frame


@pytest.fixture(scope="module")
def model(tmp_path_factory, mlflow_server) -> str:
    """A model trained from a marketing export by `persona train` (dev environment), holding
    @production in the session's MLflow server."""
    home = tmp_path_factory.mktemp("spark-score-train")
    name = f"persona-spark-{uuid.uuid4().hex[:8]}"
    export = home / "marketing.csv"
    marketing_frame(2000, 3, missing_income=20).to_csv(export, index=False)
    env = {
        **os.environ,
        "PERSONA_HOME": str(home),
        "PERSONA_CATALOGUE": str(ROOT / "00_create_data/personas.yaml"),
        "PERSONA_SCHEMA": str(SCHEMA_PATH),
        "PERSONA_PARAMS": str(FIXTURES / "params_fast.yaml"),
        "PERSONA_ENV_FILE": str(home / "none.env"),
        "MLFLOW_TRACKING_URI": mlflow_server.url,
        "PERSONA_MODEL_NAME": name,
        "MLFLOW_EXPERIMENT_NAME": name,
    }
    done = subprocess.run(
        [str(VENVS / "dev/bin/persona"), "train", "--source", "file", "--path", str(export)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return name


@pytest.fixture(scope="module", params=["local", "cluster"])
def master(request) -> str:
    if request.param == "local":
        return "local[2]"
    return request.getfixturevalue("spark_cluster").master_url


@pytest.fixture(scope="module")
def session(master):
    """One session per master for the module: the command reuses it (spark_session)."""
    with spark_session(master, "persona-test-score") as opened:
        yield opened


@pytest.fixture
def run(session, master, model, mlflow_server, make_database, tmp_path, monkeypatch, capsys):
    """`persona score ARGS` in this process: (exit code, JSON summary or None, stderr)."""
    from persona.cli import main

    project = make_database("persona_spark_score")
    for key, value in {
        "MLFLOW_TRACKING_URI": mlflow_server.url,
        "PERSONA_MODEL_NAME": model,
        "PERSONA_SCHEMA": str(SCHEMA_PATH),
        "PERSONA_DATABASE_URL": project,
        "PERSONA_HOME": str(tmp_path / "home"),
        "PERSONA_ENV_FILE": str(tmp_path / "none.env"),
        "SPARK_MASTER": master,
    }.items():
        monkeypatch.setenv(key, value)

    def score(*argv: str) -> tuple[int, dict | None, str]:
        code = main(["score", *argv])
        out = capsys.readouterr()
        return code, json.loads(out.out) if out.out.strip() else None, out.err

    score.project = project  # type: ignore[attr-defined]
    return score


def read_folder(folder: Path) -> pd.DataFrame:
    """A partitioned Parquet folder as one frame (the month back from the folder names)."""
    parts = []
    for part in sorted(folder.glob("*=*/*.parquet")):
        column, _, month = part.parent.name.partition("=")
        parts.append(pd.read_parquet(part).assign(**{column: month}))
    return pd.concat(parts, ignore_index=True)


def test_a_messy_export_gets_the_labels_of_the_local_engine(run, tmp_path):
    export = tmp_path / "export.csv"
    frame = messy_export(export, ROWS)
    code, local, err = run(
        "--engine", "local", "--file", str(export), "--out", str(tmp_path / "local.parquet"),
        "--month", "2026-03",
    )  # fmt: skip
    assert code == 0, err[-2000:]
    out = tmp_path / "scored"
    code, spark, err = run(
        "--engine", "spark", "--file", str(export), "--out", str(out), "--month", "2026-03",
        "--chunk-rows", "64",
    )  # fmt: skip
    assert code == 0, err[-2000:]
    assert (spark["engine"], spark["scored_rows"], spark["failed_rows"]) == ("spark", ROWS, 0)
    assert spark["fast_path"] is True and spark["read"]["delimiter"] == ";"
    assert [p.name for p in out.iterdir() if not p.name.startswith(("_", "."))] == [
        "snapshot_month=2026-03"
    ]
    assert list((out / "snapshot_month=2026-03").glob("part-*.parquet"))
    written = read_folder(out).set_index("ID").sort_index()
    expected = pd.read_parquet(tmp_path / "local.parquet").set_index("ID").sort_index()
    assert written.index.tolist() == sorted(str(i) for i in frame["ID"])
    for column in ("persona_id", "persona_name", "model_version", "snapshot_month"):
        assert written[column].tolist() == expected[column].tolist(), column


def test_a_bad_row_is_rejected_with_nothing_kept_or_flagged(run, tmp_path):
    bad = tmp_path / "bad.csv"
    messy_export(bad, ROWS, bad_row=133)
    out = tmp_path / "scored"
    code, summary, err = run("--engine", "spark", "--file", str(bad), "--out", str(out))
    assert code == 3 and summary is None
    line = [x for x in err.splitlines() if "break the model's data contract" in x]
    assert len(line) == 1, err[-3000:]
    assert "Income: >= 0" in line[0] and "5133" in line[0]
    assert "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".scored*"))

    code, flagged, err = run(
        "--engine", "spark", "--file", str(bad), "--out", str(out), "--on-invalid", "flag"
    )
    assert code == 1, err[-2000:]
    assert (flagged["scored_rows"], flagged["failed_rows"]) == (ROWS - 1, 1)
    assert flagged["failed_ids"] == ["5133"]
    assert flagged["problems"] == [{"field": "Income", "rule": ">= 0", "count": 1, "ids": ["5133"]}]
    written = pd.read_parquet(out).set_index("ID")  # no month: one folder of parts
    assert len(written) == ROWS and written.loc["5133", "problems"] == "Income: >= 0"
    assert pd.isna(written.loc["5133", "persona_id"])


def test_table_months_go_into_the_scores_table_idempotently_with_local_labels(run, tmp_path):
    from persona.adapters import database
    from persona.data.schema import load_schema

    schema = load_schema(SCHEMA_PATH)
    engine = database.make_engine(run.project)
    frame = messy_export(tmp_path / "unused.csv", ROWS).drop(columns=["Note"])
    frame["ID"] = frame["ID"].astype(str)
    for month in ("2026-03", "2026-04"):
        database.upsert_frame(engine, "customers", frame.assign(snapshot_month=month), schema)
    code, local, err = run("--engine", "local", "--out", str(tmp_path / "local.parquet"))
    assert code == 0, err[-2000:]
    for _ in range(2):  # a rerun updates the same rows
        code, summary, err = run("--engine", "spark")
        assert code == 0, err[-2000:]
        assert summary["months"] == ["2026-03", "2026-04"]
        assert (summary["scored_rows"], summary["table_rows"]) == (2 * ROWS, 2 * ROWS)
    stored = database.read_months(engine, "customer_personas", schema)
    expected = pd.read_parquet(tmp_path / "local.parquet")
    merged = stored.merge(expected, on=["ID", "snapshot_month"], suffixes=("", "_local"))
    assert len(merged) == 2 * ROWS
    assert (merged["persona_id"] == merged["persona_id_local"]).all()
    assert (merged["persona_name"] == merged["persona_name_local"]).all()
    code, one, err = run("--engine", "spark", "--month", "2026-04")
    assert code == 0 and one["months"] == ["2026-04"] and one["table_rows"] == 2 * ROWS, err


def test_a_model_without_a_fast_path_scores_through_its_pyfunc_alike(session, run, tmp_path):
    """The fallback: the pyfunc inside mapInArrow (check_and_score without a compiled model)."""
    from persona.adapters.spark_scoring import scored_frame
    from persona.cli_score import production_model
    from persona.data.schema import load_schema
    from persona.flows.score_stream import StreamRequest
    from persona.settings import load_settings

    frame = messy_export(tmp_path / "unused.csv", ROWS).drop(columns=["Note"])
    frame["ID"] = frame["ID"].astype(str)
    served = production_model(load_settings(), load_schema(SCHEMA_PATH), 100)
    request = StreamRequest("ID", "snapshot_month", False, None, "flag", 100)
    rows = pa.Table.from_pandas(frame, preserve_index=False)
    labels = {}
    for compiled in (served.compiled, None):
        model = dataclasses.replace(served, compiled=compiled)
        scored = scored_frame(session, model, request, "now", rows=rows).toPandas()
        labels[compiled is None] = scored.set_index("ID")["persona_id"].sort_index()
    assert labels[False].notna().all() and len(labels[False]) == ROWS
    assert labels[True].tolist() == labels[False].tolist()


def test_a_file_that_does_not_parse_on_an_executor_is_one_line(run, tmp_path):
    folder = tmp_path / "exports"
    folder.mkdir()
    messy_export(folder / "a.csv", ROWS)
    broken = folder / "b.csv"
    messy_export(broken, ROWS)
    lines = broken.read_bytes().splitlines(keepends=True)
    lines[-3] = lines[-3].rstrip(b"\r\n") + b';"unclosed\n'  # a quote that never closes
    broken.write_bytes(b"".join(lines))
    out = tmp_path / "scored"
    code, summary, err = run("--engine", "spark", "--file", str(folder), "--out", str(out))
    assert code == 3 and summary is None, err[-3000:]
    said = [line for line in err.splitlines() if "b.csv: cannot parse" in line]
    assert said and "Traceback" not in said[0], err[-3000:]
    assert not out.exists() and not list(tmp_path.glob(".scored*"))
