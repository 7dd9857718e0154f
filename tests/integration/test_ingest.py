"""Ingestion into a real PostgreSQL database through the CLI: idempotent, user schemas, errors."""

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from persona.adapters import database
from persona.cli import main
from persona.data.catalogue import load_catalogue
from persona.data.generator import generate_snapshot

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(project_env, pg_url, monkeypatch):
    monkeypatch.setenv("PERSONA_DATABASE_URL", pg_url)
    return {**project_env, "PERSONA_DATABASE_URL": pg_url}


def run_cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_generate_into_postgres_is_idempotent(env, capsys):
    for _ in range(2):
        code, out, _ = run_cli(
            capsys, "data", "generate", "--rows", "3000", "--month", "2026-01", "2026-02"
        )
        assert code == 0
    result = json.loads(out)
    assert [r["table_rows"] for r in result] == [6000, 6000]
    engine = database.make_engine(env["PERSONA_DATABASE_URL"])
    assert database.count_rows(engine, "customers") == 6000
    jan = database.read_months(
        engine,
        "customers",
        load_catalogue(ROOT / "00_create_data/personas.yaml").schema,
        ["2026-01"],
    )
    assert len(jan) == 3000 and set(jan.snapshot_month) == {"2026-01"}
    # plain str labels: scikit-learn records feature names only when every label is a str
    assert {type(name) for name in jan.columns} == {str}


def test_user_file_with_own_columns_ingests_and_updates(env, tmp_path, capsys):
    catalogue = load_catalogue(ROOT / "00_create_data/personas.yaml")
    frame = generate_snapshot(catalogue, 500, seed=2, progress=False)
    renamed = frame.drop(columns=["snapshot_month", "true_persona"]).rename(
        columns={"customer_id": "cust_no", "annual_income": "income", "channel": "Channel"}
    )
    csv = tmp_path / "crm.csv"
    renamed.to_csv(csv, index=False)
    schema = {
        "id_column": "cust_no",
        "month_column": "period",
        "table": "crm_customers",
        "numeric_features": {"age": {"min": 18, "max": 95}, "income": {"min": 0}, "web_visits": {}},
        "categorical_features": {"Channel": None},
    }
    schema_path = tmp_path / "crm_schema.yaml"
    schema_path.write_text(yaml.safe_dump(schema))
    args = [
        "data",
        "ingest",
        "--file",
        str(csv),
        "--schema",
        str(schema_path),
        "--month",
        "2026-03",
    ]
    code, out, _ = run_cli(capsys, *args)
    assert code == 0 and json.loads(out) == {
        "rows": 500,
        "table": "crm_customers",
        "table_rows": 500,
    }
    renamed.loc[0, "income"] = 123.0
    renamed.to_csv(csv, index=False)
    code, out, _ = run_cli(capsys, *args)
    assert json.loads(out)["table_rows"] == 500
    engine = database.make_engine(env["PERSONA_DATABASE_URL"])
    stored = pd.read_sql(
        "SELECT income FROM crm_customers WHERE cust_no = %(id)s",
        engine,
        params={"id": renamed.cust_no[0]},
    )
    assert stored.income.tolist() == [123.0]


def test_bad_file_is_rejected_with_a_named_problem_and_nothing_written(
    env, tmp_path, capsys, caplog
):
    catalogue = load_catalogue(ROOT / "00_create_data/personas.yaml")
    frame = generate_snapshot(catalogue, 300, seed=2, progress=False)
    frame.loc[5, "age"] = 300
    path = tmp_path / "bad.parquet"
    frame.to_parquet(path)
    code, out, _ = run_cli(capsys, "data", "ingest", "--file", str(path))
    assert code == 3 and out == ""
    assert "column 'age' broke rule '<= 95' in 1 row(s)" in caplog.text
    assert "Traceback" not in caplog.text
    engine = database.make_engine(env["PERSONA_DATABASE_URL"])
    with pytest.raises(Exception, match="does not exist"):
        database.read_months(engine, "customers", catalogue.schema)


def test_unreadable_inputs_are_named(env, tmp_path, capsys, caplog):
    code, _, _ = run_cli(capsys, "data", "ingest", "--file", str(tmp_path / "missing.csv"))
    assert code == 3 and "missing.csv: file not found" in caplog.text
    (tmp_path / "x.json").write_text("{}")
    code, _, _ = run_cli(capsys, "data", "ingest", "--file", str(tmp_path / "x.json"))
    assert code == 3 and "unsupported file type '.json'" in caplog.text
