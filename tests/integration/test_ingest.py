"""Ingestion into a real PostgreSQL database through the CLI: idempotent, user schemas, errors."""

import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from persona.adapters import database
from persona.cli import main
from persona.data.catalogue import load_catalogue
from persona.data.generator import generate_snapshot
from persona.data.schema import load_schema
from persona.data.snapshot import current_month

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
    result = json.loads(out)
    assert code == 0 and {k: result[k] for k in ("rows", "table", "table_rows")} == {
        "rows": 500,
        "table": "crm_customers",
        "table_rows": 500,
    }
    assert (result["month"], result["month_from"]) == ("2026-03", "--month")
    assert result["file"]["delimiter"] == ","
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


def marketing_export(rows: int, seed: int = 11) -> bytes:
    """A semicolon export like the public marketing file, written by hand: BOM, CRLF, empty
    incomes, dd-mm-yyyy dates, a constant column, quoted free text holding the delimiter."""
    rng = np.random.default_rng(seed)
    header = (
        "ID;Year_Birth;Education;Marital_Status;Income;Kidhome;Teenhome;Dt_Customer;Recency;"
        "MntWines;MntMeatProducts;Z_CostContact;Z_Revenue;Response;Comment"
    )
    lines = [header]
    ids = rng.choice(np.arange(1, 12_000), rows, replace=False)
    for i, customer in enumerate(ids):
        income = "" if i % 37 == 5 else str(int(rng.normal(52_000, 20_000)))
        day, month, year = rng.integers(1, 29), rng.integers(1, 13), rng.integers(2012, 2015)
        lines.append(
            ";".join(
                [
                    str(customer),
                    str(rng.integers(1940, 2000)),
                    str(rng.choice(["Graduation", "PhD", "Master", "2n Cycle", "Basic"])),
                    str(rng.choice(["Married", "Together", "Single", "Divorced"])),
                    income,
                    str(rng.integers(0, 3)),
                    str(rng.integers(0, 3)),
                    f"{day:02d}-{month:02d}-{year}",
                    str(rng.integers(0, 100)),
                    str(rng.integers(0, 1500)),
                    str(rng.integers(0, 1700)),
                    "3",
                    "11",
                    str(rng.integers(0, 2)),
                    f'"visit {i}; asked about ""Gold"" card, call back"',
                ]
            )
        )
    return "\ufeff".encode() + "\r\n".join(lines).encode() + b"\r\n"


def test_a_real_shaped_export_goes_from_infer_schema_to_the_table(env, tmp_path, capsys):
    export = tmp_path / "marketing_campaign.csv"
    export.write_bytes(marketing_export(400))
    schema_path = tmp_path / "marketing.yaml"
    code, out, _ = run_cli(capsys, "data", "infer-schema", str(export), "--out", str(schema_path))
    assert code == 0
    inferred = json.loads(out)
    assert inferred["id_column"] == "ID" and inferred["date_columns"] == {"Dt_Customer": "%d-%m-%Y"}
    assert set(inferred["excluded"]) == {"Z_CostContact", "Z_Revenue", "Comment"}
    schema = load_schema(schema_path)
    assert "Income" in schema.numeric and "Education" in schema.categorical

    code, out, _ = run_cli(
        capsys, "data", "validate", "--file", str(export), "--schema", str(schema_path)
    )
    assert code == 0 and json.loads(out)["ok"]

    ingest = ["data", "ingest", "--file", str(export), "--schema", str(schema_path)]
    ingest += ["--table", "marketing"]
    for _ in range(2):  # idempotent: the same month again changes no row count
        code, out, _ = run_cli(capsys, *ingest, "--month", "2026-03")
        assert code == 0
    result = json.loads(out)
    assert (result["rows"], result["table_rows"]) == (400, 400)
    assert (result["month"], result["month_from"]) == ("2026-03", "--month")
    assert result["file"] == {
        "format": "csv",
        "delimiter": ";",
        "quotechar": '"',
        "encoding": "utf-8-sig",
        "bom": True,
        "delimiter_from": "detected",
        "encoding_from": "byte order mark",
    }

    engine = database.make_engine(env["PERSONA_DATABASE_URL"])
    stored = database.read_months(engine, "marketing", schema, ["2026-03"])
    assert len(stored) == 400 and set(stored.snapshot_month) == {"2026-03"}
    assert not {"Comment", "Z_CostContact", "Z_Revenue"} & set(stored.columns)  # excluded
    assert stored["Dt_Customer"].str.fullmatch(r"\d\d-\d\d-\d{4}").all()  # raw dates kept
    assert stored["Income"].isna().sum() == 11 and stored["ID"].map(type).eq(str).all()

    before = current_month(date.today())
    code, out, _ = run_cli(capsys, *ingest)  # no --month: one snapshot of the current month
    result = json.loads(out)
    assert result["month"] in {before, current_month(date.today())}
    assert result["month_from"] == "default (current month)" and result["table_rows"] == 800


def test_a_wrong_delimiter_is_one_clear_error_and_nothing_is_written(env, tmp_path, capsys, caplog):
    export = tmp_path / "marketing_campaign.csv"
    export.write_bytes(marketing_export(100))
    schema_path = tmp_path / "marketing.yaml"
    assert run_cli(capsys, "data", "infer-schema", str(export), "--out", str(schema_path))[0] == 0
    code, out, _ = run_cli(
        capsys,
        "data",
        "ingest",
        "--file",
        str(export),
        "--schema",
        str(schema_path),
        "--delimiter",
        "tab",
    )
    assert code == 3 and out == ""
    assert "delimiter '\\t' (given)" in caplog.text and "try --delimiter ';'" in caplog.text
    assert "broke rule" not in caplog.text and "Traceback" not in caplog.text
    engine = database.make_engine(env["PERSONA_DATABASE_URL"])
    with pytest.raises(Exception, match="does not exist"):
        database.read_months(engine, "customers", load_schema(schema_path))
