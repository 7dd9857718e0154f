"""Customer files of every common dialect read right; infer-schema writes a schema they pass.

Every file here is written by the test itself, messy on purpose: BOMs, Windows code pages,
delimiters inside quoted fields, missing values, odd dates, constant and free-text columns.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT

from persona.cli import main
from persona.data import files
from persona.data.files import FileDialect, read_table, read_table_with_dialect
from persona.data.infer import infer_schema
from persona.data.schema import DateSpec, load_schema, schema_from_dict
from persona.data.snapshot import current_month, label_months
from persona.data.validation import validate_frame
from persona.errors import ConfigurationError, InvalidInputError
from persona.flows import train
from persona.model.params import load_params

pytestmark = pytest.mark.unit

NAMES = ["Müller", "José", "Zoë", "O'Brien", "Ñúñez", "Smith"]


def customers(rows: int = 60, seed: int = 0) -> pd.DataFrame:
    """Ids with leading zeros, accented names, a text field holding every delimiter, gaps."""
    rng = np.random.default_rng(seed)
    income = rng.normal(50_000, 15_000, rows).round(2)
    income[::7] = np.nan
    return pd.DataFrame(
        {
            "customer_id": [f"{i:05d}" for i in range(1, rows + 1)],
            "name": [NAMES[i % len(NAMES)] for i in range(rows)],
            "income": income,
            "visits": rng.integers(0, 30, rows),
            "note": [f'likes "wine", cheese; pays | by card\tweekly #{i}' for i in range(rows)],
        }
    )


def marketing_like(rows: int = 300, seed: int = 7) -> pd.DataFrame:
    """The shape of the public marketing export: no month, gaps, dd-mm-yyyy, constants."""
    rng = np.random.default_rng(seed)
    income = rng.normal(52_000, 21_000, rows).round(0)
    income[rng.choice(rows, rows // 40, replace=False)] = np.nan
    marital = rng.choice(["Married", "Together", "Single", "Divorced", "Widow"], rows)
    marital[:2] = ["YOLO", "Absurd"]
    birth = rng.integers(1945, 2000, rows)
    birth[2] = 1893
    days, months, years = (
        rng.integers(1, 29, rows),
        rng.integers(1, 13, rows),
        rng.integers(2012, 2015, rows),
    )
    days[3] = 25  # a day above 12: the date order is not ambiguous
    return pd.DataFrame(
        {
            "ID": rng.choice(np.arange(1, 12_000), rows, replace=False),
            "Year_Birth": birth,
            "Education": rng.choice(["Graduation", "PhD", "Master", "2n Cycle", "Basic"], rows),
            "Marital_Status": marital,
            "Income": income,
            "Kidhome": rng.integers(0, 3, rows),
            "Dt_Customer": [
                f"{d:02d}-{m:02d}-{y}" for d, m, y in zip(days, months, years, strict=True)
            ],
            "Recency": rng.integers(0, 100, rows),
            "MntWines": rng.integers(0, 1500, rows),
            "Z_CostContact": 3,
            "Comment": [
                f"called on day {i}; wants the catalogue, maybe later" for i in range(rows)
            ],
        }
    )


def write(frame: pd.DataFrame, path: Path, **csv: object) -> Path:
    if path.suffix == ".xlsx":
        frame.to_excel(path, index=False)
    elif path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, **{"index": False, **csv})
    return path


# --- reading ---------------------------------------------------------------------------------

DIALECTS = [
    ("comma.csv", {"sep": ","}, {"format": "csv", "delimiter": ",", "encoding": "utf-8"}),
    (
        "semicolon_bom.csv",
        {"sep": ";", "encoding": "utf-8-sig"},
        {"format": "csv", "delimiter": ";", "encoding": "utf-8-sig", "bom": True},
    ),
    ("tab.tsv", {"sep": "\t"}, {"format": "csv", "delimiter": "\t", "encoding": "utf-8"}),
    ("tab.txt", {"sep": "\t"}, {"format": "csv", "delimiter": "\t", "encoding": "utf-8"}),
    ("pipe.csv", {"sep": "|"}, {"format": "csv", "delimiter": "|", "quotechar": '"'}),
    ("windows.csv", {"sep": ";", "encoding": "cp1252"}, {"delimiter": ";", "encoding": "cp1252"}),
    ("book.xlsx", {}, {"format": "xlsx", "sheet": "Sheet1"}),
    ("table.parquet", {}, {"format": "parquet"}),
]


@pytest.mark.parametrize(("name", "csv", "expected"), DIALECTS, ids=[d[0] for d in DIALECTS])
def test_every_common_dialect_reads_the_same_rows(tmp_path, name, csv, expected):
    frame = customers()
    path = write(frame, tmp_path / name, **csv)
    got, dialect = read_table_with_dialect(path, "customer_id")
    assert {k: dialect.to_dict()[k] for k in expected} == expected
    assert got["customer_id"].tolist() == frame["customer_id"].tolist()  # "00001" stays text
    assert got["customer_id"].map(type).eq(str).all()
    pd.testing.assert_frame_equal(got, frame, check_dtype=False)


def test_the_text_of_every_dialect_is_sniffed_from_a_bounded_sample(tmp_path, monkeypatch):
    seen: list[int] = []
    sniff = files.sniff_delimiter
    monkeypatch.setattr(
        files, "sniff_delimiter", lambda text: seen.append(len(text)) or sniff(text)
    )
    path = write(customers(3000), tmp_path / "big.csv", sep="|")
    assert path.stat().st_size > 3 * files.SAMPLE_BYTES
    frame, dialect = read_table_with_dialect(path)
    assert len(frame) == 3000 and dialect.delimiter == "|"
    assert seen and max(seen) <= files.DIALECT_SAMPLE_CHARS


def test_a_file_that_turns_to_cp1252_after_the_sample_is_still_read(tmp_path, caplog):
    frame = customers(2000)
    frame.loc[:1899, "name"] = "Smith"  # the first 64 KiB are plain ASCII
    path = write(frame, tmp_path / "late.csv", sep=";", encoding="cp1252")
    with caplog.at_level(logging.WARNING):
        got, dialect = read_table_with_dialect(path, "customer_id")
    assert dialect.encoding == "cp1252" and "not UTF-8 after the first" in caplog.text
    assert got["name"].tolist() == frame["name"].tolist()


def test_overrides_win_over_detection(tmp_path):
    path = write(customers(), tmp_path / "x.csv", sep="\t", encoding="latin-1")
    frame, dialect = read_table_with_dialect(path, delimiter="tab", encoding="latin-1")
    assert (dialect.delimiter, dialect.delimiter_from) == ("\t", "given")
    assert (dialect.encoding, dialect.encoding_from) == ("iso8859-1", "given")
    assert frame["name"].tolist()[:2] == ["Müller", "José"]


def test_a_wrong_delimiter_names_what_was_detected_and_what_to_try(tmp_path):
    frame = marketing_like(40).drop(columns=["Comment"])
    path = write(frame, tmp_path / "export.csv", sep=";", encoding="utf-8-sig")
    with pytest.raises(InvalidInputError) as error:
        read_table(path, "ID", delimiter=",")
    text = str(error.value)
    assert "parsing gave a single column" in text
    assert "delimiter ',' (given)" in text and "encoding 'utf-8-sig' (byte order mark)" in text
    assert "first line: 'ID;Year_Birth;Education;" in text
    assert "columns found (1): ['ID;Year_Birth;" in text
    assert "the file looks ';'-delimited: try --delimiter ';'" in text


def test_a_mangled_wrong_delimiter_is_named_too(tmp_path):
    path = tmp_path / "mangled.csv"
    path.write_text('id;note;x\n1;"a, b";3\n2;"c, d, e";4\n3;f;5\n')
    with pytest.raises(InvalidInputError) as error:
        read_table(path, "id", delimiter=",")
    assert "delimiter ',' (given)" in str(error.value)
    assert "try --delimiter ';'" in str(error.value)


def test_a_file_without_the_schema_columns_says_so_once_not_per_column(tmp_path):
    path = write(marketing_like(40), tmp_path / "export.csv", sep=";")
    schema = load_schema(ROOT / "00_create_data/schema.yaml")
    with pytest.raises(InvalidInputError) as error:
        read_table(path, schema.id_column, expected_columns=[schema.id_column, *schema.features])
    text = str(error.value)
    assert "none of the expected columns ['customer_id', 'age'," in text
    assert "delimiter ';' (detected)" in text and "columns found (11): ['ID', 'Year_Birth'" in text
    assert "persona data infer-schema" in text
    assert "column present" not in text


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [("delimiter", ";;", "one character"), ("encoding", "klingon", "unknown encoding 'klingon'")],
)
def test_bad_overrides_are_named(tmp_path, option, value, message):
    path = write(customers(), tmp_path / "x.csv")
    with pytest.raises(ConfigurationError, match=message):
        read_table(path, **{option: value})


def test_unreadable_files_are_named_without_a_traceback(tmp_path):
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(InvalidInputError, match="empty.csv: the file is empty"):
        read_table(tmp_path / "empty.csv")
    (tmp_path / "old.xls").write_bytes(b"\xd0\xcf")
    with pytest.raises(InvalidInputError, match=r"unsupported file type '\.xls'"):
        read_table(tmp_path / "old.xls")
    (tmp_path / "broken.xlsx").write_bytes(b"not a zip")
    with pytest.raises(InvalidInputError, match="broken.xlsx: cannot read as xlsx"):
        read_table(tmp_path / "broken.xlsx")
    windows = write(customers(), tmp_path / "windows.csv", encoding="cp1252")
    with pytest.raises(InvalidInputError, match=r"cannot decode as 'utf-8' \(given\).*--encoding"):
        read_table(windows, encoding="utf-8")


def test_text_columns_read_as_the_same_levels_from_every_format(tmp_path):
    frame = pd.DataFrame(
        {"id": ["a", "b", "c"], "code": [1.0, np.nan, 2.0], "flag": [True, False, True]}
    )
    for name in ("codes.csv", "codes.parquet", "codes.xlsx"):
        got = read_table(write(frame, tmp_path / name), "id", text_columns=["code", "flag"])
        assert got["code"].tolist()[::2] == ["1", "2"] and pd.isna(got["code"][1]), name
        assert got["flag"].tolist() == ["True", "False", "True"], name


# --- schema sections and validation -----------------------------------------------------------

BASE = {"id_column": "id", "numeric_features": {"x": {}}}


def test_date_columns_and_excluded_parse_and_round_trip():
    schema = schema_from_dict(
        {
            **BASE,
            "date_columns": {"joined": {"format": "%d-%m-%Y"}, "seen": None},
            "excluded": {"memo": "free text", "z": None},
        }
    )
    assert schema.date_columns == {"joined": DateSpec("%d-%m-%Y"), "seen": DateSpec(None)}
    assert schema.excluded == {"memo": "free text", "z": ""}
    assert schema.features == ["x"]
    assert schema_from_dict(schema.to_dict()) == replace(schema, table=None)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"date_columns": {"x": {"format": "%Y"}}}, r"date columns \['x'\] are already features"),
        ({"excluded": {"id": "no"}}, r"excluded \['id'\]: already a feature, role or date"),
        ({"date_columns": {"d": None}, "excluded": {"d": "no"}}, "already a feature, role or date"),
        ({"passthrough": ["p"], "excluded": {"p": "no"}}, "already a feature, role or date"),
        ({"date_columns": {"d": {"format": "dd-mm-yyyy"}}}, "strptime pattern"),
        ({"date_columns": {"d": {"fmt": "%Y"}}}, r"expected \{format: '%d-%m-%Y' or null\}"),
        ({"excluded": "memo"}, "excluded must map column -> reason"),
    ],
)
def test_schema_section_errors_name_the_column(extra, message):
    with pytest.raises(ConfigurationError, match=message):
        schema_from_dict({**BASE, **extra}, source="my.yaml")


def test_the_example_schema_still_loads_unchanged():
    schema = load_schema(ROOT / "00_create_data/schema.yaml")
    assert schema.date_columns == {} and schema.excluded == {}
    assert "date_columns" not in schema.to_dict() and schema.id_column == "customer_id"


def test_a_date_column_must_be_present_and_parse():
    schema = schema_from_dict(
        {
            **BASE,
            "min_rows": 1,
            "max_null_share": 0.5,
            "date_columns": {"joined": {"format": "%d-%m-%Y"}, "left": None},
        }
    )
    frame = pd.DataFrame(
        {
            "id": ["1", "2", "3"],
            "snapshot_month": "2026-01",
            "x": [1.0, 2.0, 3.0],
            "joined": ["04-09-2012", "2012/09/04", None],  # ISO 2012-09-04 would be read too
        }
    )
    findings = {f.column: f for f in validate_frame(frame, schema).findings}
    assert set(findings) == {"joined", "left"} and findings["left"].rule == "column present"
    assert findings["joined"].rule.startswith("date") and findings["joined"].count == 1
    assert findings["joined"].examples == [{"row": 1, "id": "2", "joined": "2012/09/04"}]


# --- months -------------------------------------------------------------------------------------


def test_a_file_without_a_month_is_one_snapshot():
    frame = pd.DataFrame({"id": ["1", "2"]})
    labelled, label = label_months(frame, "period", None, date(2026, 11, 30))
    assert labelled["period"].tolist() == ["2026-11", "2026-11"] and "period" not in frame
    assert label.to_dict() == {"month": "2026-11", "month_from": "default (current month)"}
    _, given = label_months(frame, "period", "2026-03", date(2026, 11, 30))
    assert given.to_dict() == {"month": "2026-03", "month_from": "--month"}
    with pytest.raises(ConfigurationError, match="--month must look like YYYY-MM, got '03/2026'"):
        label_months(frame, "period", "03/2026", date(2026, 11, 30))
    own = frame.assign(period=["2026-02", "2026-01"])
    kept, from_file = label_months(own, "period", None, date(2026, 11, 30))
    assert kept is own
    assert from_file.to_dict() == {
        "months": ["2026-01", "2026-02"],
        "month_from": "column 'period'",
    }


# --- infer-schema -------------------------------------------------------------------------------


def test_infer_schema_guesses_each_role_and_says_what_to_check(tmp_path):
    frame = marketing_like()
    path = write(frame, tmp_path / "marketing.csv", sep=";", encoding="utf-8-sig")
    read, dialect = read_table_with_dialect(path)
    inferred = infer_schema(read)
    schema = inferred.schema
    assert schema.id_column == "ID" and schema.month_column == "snapshot_month"
    assert list(schema.numeric) == ["Year_Birth", "Income", "Kidhome", "Recency", "MntWines"]
    assert schema.numeric["Year_Birth"].min == 1893
    assert schema.numeric["Income"].max == frame["Income"].max()
    assert schema.numeric["Kidhome"].integer
    assert schema.categorical["Education"] == ("2n Cycle", "Basic", "Graduation", "Master", "PhD")
    assert schema.date_columns == {"Dt_Customer": DateSpec("%d-%m-%Y")}
    assert schema.excluded["Z_CostContact"] == "constant: every row is 3"
    assert schema.excluded["Comment"].startswith("free text: 300 distinct values")
    assert not inferred.month_in_file

    text = inferred.to_yaml("marketing.csv", dialect.describe())
    assert "numeric ranges are the observed min/max: widen them to what is plausible" in text
    assert "delimiter ';' (detected)" in text
    assert "`persona data validate|ingest --month YYYY-MM` (default: the current month)" in text
    assert "# CHECK: rare levels 'Absurd' (1 row), 'YOLO' (1 row)" in text
    assert "# CHECK: only 3 values ['0', '1', '2']: a count or a scale, or a code?" in text
    assert "format: '%d-%m-%Y'" in text
    (tmp_path / "s.yaml").write_text(text)
    assert load_schema(tmp_path / "s.yaml") == schema


def _messy_files(tmp_path: Path) -> dict[str, tuple[Path, list[str]]]:
    """(file, extra infer-schema options) of several messy shapes."""
    marketing = marketing_like(120, seed=3)
    two_months = pd.concat(
        [
            customers(60, seed=1).assign(period="2026-01"),
            customers(60, seed=2).assign(period="2026-02"),
        ]
    )
    indexed = customers(80).assign(segment=lambda f: np.where(f.visits > 15, "A", "B"))
    indexed["active"] = indexed["visits"] > 3
    return {
        "semicolon_bom": (write(marketing, tmp_path / "m.csv", sep=";", encoding="utf-8-sig"), []),
        "cp1252_pipe": (write(customers(90), tmp_path / "w.txt", sep="|", encoding="cp1252"), []),
        "xlsx": (write(marketing, tmp_path / "m.xlsx"), []),
        "parquet": (write(marketing, tmp_path / "m.parquet"), []),
        "month_column": (
            write(two_months, tmp_path / "months.tsv", sep="\t"),
            ["--month", "period"],
        ),
        "index_and_flags": (write(indexed, tmp_path / "i.csv", index=True), []),
    }


def run_cli(capsys, *argv: str) -> tuple[int, dict]:
    code = main(list(argv))
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else {}


@pytest.mark.parametrize(
    "shape", ["semicolon_bom", "cp1252_pipe", "xlsx", "parquet", "month_column", "index_and_flags"]
)
def test_infer_then_validate_passes_on_the_same_file(project_env, tmp_path, capsys, shape):
    path, options = _messy_files(tmp_path)[shape]
    schema_path = tmp_path / "schema.yaml"
    code, inferred = run_cli(
        capsys, "data", "infer-schema", str(path), "--out", str(schema_path), *options
    )
    assert code == 0 and inferred["schema"] == str(schema_path)
    assert load_schema(schema_path).id_column == inferred["id_column"]
    code, result = run_cli(
        capsys, "data", "validate", "--file", str(path), "--schema", str(schema_path)
    )
    assert code == 0 and result["ok"] and result["findings"] == []
    assert result["file"]["format"] == {".parquet": "parquet", ".xlsx": "xlsx"}.get(
        path.suffix, "csv"
    )
    if shape == "month_column":
        assert (
            result["months"] == ["2026-01", "2026-02"] and result["month_from"] == "column 'period'"
        )
    else:
        assert result["month_from"] == "default (current month)"


def test_infer_marks_index_columns_flags_and_month_like_text(tmp_path):
    frame = customers(80).assign(active=lambda f: f.visits > 3, period="2026-05")
    frame.loc[::2, "period"] = "2026-06"
    path = write(frame, tmp_path / "x.csv", index=True)
    inferred = infer_schema(read_table(path))
    assert inferred.schema.id_column == "customer_id"
    assert inferred.schema.excluded["Unnamed: 0"].startswith("no name in the header")
    assert inferred.schema.excluded["period"].endswith(
        "rerun with --month period to make it the month column"
    )
    assert inferred.schema.categorical["active"] == ("False", "True")
    assert inferred.schema.excluded["note"].startswith("free text")
    assert inferred.schema.categorical["name"] == tuple(sorted(NAMES))


def test_infer_notes_ambiguous_dates_and_numbers_with_junk(tmp_path):
    rows = 60
    frame = pd.DataFrame(
        {
            "id": [f"c{i}" for i in range(rows)],
            "spend": np.arange(rows) * 1.5,
            "joined": [f"2024-{1 + i % 12:02d}-{1 + i % 12:02d}" for i in range(rows)],
            "age": [str(20 + i) if i % 10 else "?" for i in range(rows)],
        }
    )
    inferred = infer_schema(frame)
    assert inferred.schema.date_columns == {"joined": DateSpec("%Y-%m-%d")}
    assert any("'%Y-%d-%m' fits every value too" in n for n in inferred.notes["joined"])
    assert inferred.schema.excluded["age"].startswith(
        "mostly numbers (90%) but also text such as ['?']"
    )


def test_infer_raises_the_null_limit_to_what_the_file_holds_and_lowers_min_rows():
    frame = pd.DataFrame({"id": range(20), "x": [np.nan] * 6 + list(range(14)), "y": range(20)})
    inferred = infer_schema(frame)
    assert inferred.schema.max_null_share == 0.3 and inferred.schema.min_rows == 20
    assert validate_frame(
        frame.assign(snapshot_month="2026-01", id=frame.id.astype(str)), inferred.schema
    ).ok
    assert any(
        "max_null_share raised from 0.05 to 0.3: 'x' is 30.0% empty" in g for g in inferred.general
    )


def test_id_choice_override_and_errors_name_the_candidates():
    frame = pd.DataFrame(
        {
            "row": range(60),
            "CustomerID": [f"C{i}" for i in range(60)],
            "spend": [1.5] * 30 + [2.5] * 30,
        }
    )
    inferred = infer_schema(frame)
    assert inferred.schema.id_column == "CustomerID"  # an id-like name wins over the leftmost
    assert inferred.id_candidates == ("CustomerID", "row")
    assert any(
        "other columns that could be the id: ['row']" in n for n in inferred.notes["CustomerID"]
    )
    assert infer_schema(frame, id_column="row").schema.id_column == "row"
    with pytest.raises(InvalidInputError) as error:
        infer_schema(frame, id_column="spend")
    assert "id column 'spend' cannot identify customers: 58 repeated value(s)" in str(error.value)
    assert "candidates: ['CustomerID', 'row']" in str(error.value)
    with pytest.raises(InvalidInputError, match="no column can be the id .*'spend': 58 repeated"):
        infer_schema(frame[["spend"]].assign(x=1.0))


def test_infer_month_column_must_hold_months():
    frame = pd.DataFrame({"id": ["a", "b"], "x": [1, 2], "when": ["2026-01", "January"]})
    with pytest.raises(
        InvalidInputError, match=r"month column 'when': 1 value\(s\) are not YYYY-MM"
    ):
        infer_schema(frame, month_column="when")
    with pytest.raises(InvalidInputError, match="month column 'period' is not in the file"):
        infer_schema(frame, month_column="period")


def test_infer_schema_keeps_an_existing_schema_unless_forced(project_env, tmp_path, capsys, caplog):
    path = write(marketing_like(60), tmp_path / "m.csv", sep=";")
    out = tmp_path / "schema.yaml"
    out.write_text("# my edits\n")
    code, _ = run_cli(capsys, "data", "infer-schema", str(path), "--out", str(out))
    assert code == 3 and "schema.yaml exists; pass --force to overwrite it" in caplog.text
    assert out.read_text() == "# my edits\n"
    code, _ = run_cli(capsys, "data", "infer-schema", str(path), "--out", str(out), "--force")
    assert code == 0 and load_schema(out).id_column == "ID"


def test_validate_reports_the_dialect_and_the_default_month(project_env, tmp_path, capsys):
    path = write(marketing_like(), tmp_path / "marketing.csv", sep=";", encoding="utf-8-sig")
    schema = tmp_path / "schema.yaml"
    assert run_cli(capsys, "data", "infer-schema", str(path), "--out", str(schema))[0] == 0
    before = current_month(date.today())
    code, result = run_cli(capsys, "data", "validate", "--file", str(path), "--schema", str(schema))
    after = current_month(date.today())
    assert code == 0 and result["n_rows"] == 300
    assert result["file"] == {
        "format": "csv",
        "delimiter": ";",
        "quotechar": '"',
        "encoding": "utf-8-sig",
        "bom": True,
        "delimiter_from": "detected",
        "encoding_from": "byte order mark",
    }
    assert result["month"] in {before, after}
    assert result["month_from"] == "default (current month)"
    code, result = run_cli(
        capsys,
        "data",
        "validate",
        "--file",
        str(path),
        "--schema",
        str(schema),
        "--month",
        "2026-03",
    )
    assert (result["month"], result["month_from"]) == ("2026-03", "--month")


def test_validate_with_a_wrong_delimiter_fails_with_one_message(
    project_env, tmp_path, capsys, caplog
):
    path = write(marketing_like(), tmp_path / "marketing.csv", sep=";")
    schema = tmp_path / "schema.yaml"
    run_cli(capsys, "data", "infer-schema", str(path), "--out", str(schema))
    code, out = run_cli(
        capsys, "data", "validate", "--file", str(path), "--schema", str(schema), "--delimiter", "|"
    )
    assert code == 3 and out == {}
    assert "parsing gave a single column" in caplog.text and "try --delimiter ';'" in caplog.text
    assert "broke rule" not in caplog.text and "Traceback" not in caplog.text


# --- training from a file ------------------------------------------------------------------------


def _context(tmp_path: Path, schema) -> train.TrainingContext:
    from test_flows_in_memory import MemoryModels

    params = load_params(ROOT / "tests/fixtures/params_fast.yaml")
    small = replace(
        params,
        candidates={"kmeans": {"k": [3], "n_init": 1}},
        stability_resamples=2,
        stability_sample=200,
        silhouette_sample=200,
    )
    models = MemoryModels()
    return train.TrainingContext(
        schema=schema,
        params=small,
        catalogue=None,
        alias="live",
        registry=models,
        tracker=models,
        customers=None,
        workdir=tmp_path / "runs",
        reference_rows=500,
    )


def test_a_file_without_a_month_column_trains_labelled_with_the_given_month(tmp_path):
    path = write(marketing_like(), tmp_path / "marketing.csv", sep=";", encoding="cp1252")
    schema = infer_schema(read_table(path)).schema
    context = _context(tmp_path, schema)
    request = train.DataRequest(source="file", path=str(path), months=("2026-03",))
    frame = train.load_step(context, request)
    assert set(frame["snapshot_month"]) == {"2026-03"} and frame["ID"].map(type).eq(str).all()
    outcome = train.run_training(context, request)
    assert outcome.version == "1" and outcome.alias == "live"
    assert context.registry.runs[outcome.run_id]["tags"]["persona.months"] == "2026-03"
    before = current_month(date.today())
    today = train.load_step(context, replace(request, months=()))
    assert set(today["snapshot_month"]) in ({before}, {current_month(date.today())})
    with pytest.raises(
        ConfigurationError, match="no month column 'snapshot_month', so it is one month"
    ):
        train.load_step(context, replace(request, months=("2026-03", "2026-04")))


def test_the_dialect_of_binary_formats_is_plain():
    assert FileDialect(format="parquet").describe() == "parquet"
    assert FileDialect(format="xlsx", sheet="Data").to_dict() == {
        "format": "xlsx",
        "bom": False,
        "sheet": "Data",
    }
