"""The monitor's side of the Spark engine, without Spark: requests, the reference sketch, the
subprocess that runs the job (a stand-in script here; tests/spark runs the real one)."""

from __future__ import annotations

import json
import logging
import stat
import sys
from pathlib import Path

import pandas as pd
import pytest

from persona.adapters.spark_jobs import SparkSketcher, drift_sketch_command
from persona.data.catalogue import load_catalogue
from persona.data.generator import generate_snapshot
from persona.errors import ConfigurationError, InvalidInputError, ModelUnavailableError
from persona.flows import spark_drift, train
from persona.flows.monitor_request import MonitorRequest
from persona.monitoring.sketch import FrameSketch
from persona.monitoring.sketch_drift import sketch_of

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def frame():
    catalogue = load_catalogue(ROOT / "00_create_data/personas.yaml")
    return catalogue.schema, generate_snapshot(catalogue, 2000, "2026-01", 3, progress=False)


def test_engine_is_a_run_variable_and_spark_reads_files_or_the_table():
    assert MonitorRequest.from_variables({"month": "2026-01"}).engine == "pandas"
    request = MonitorRequest.from_variables({"month": "2026-01", "engine": "Spark"})
    assert request.engine == "spark"
    with pytest.raises(ConfigurationError, match="engine must be pandas or spark"):
        MonitorRequest.from_variables({"month": "2026-01", "engine": "dask"})
    with pytest.raises(ConfigurationError, match="not source=synthetic"):
        spark_drift.spark_month(train.DataRequest(source="synthetic"))
    with pytest.raises(ConfigurationError, match="needs the variable 'path'"):
        spark_drift.spark_month(train.DataRequest(source="file"))
    month = spark_drift.spark_month(train.DataRequest(source="table", months=("2026-01",)))
    assert month.data.months == ("2026-01",)


class _Registry:
    def __init__(self, sketch: Path | None) -> None:
        self.sketch = sketch

    def download_artifact(self, run_id, artifact_path, destination):
        assert artifact_path == spark_drift.SKETCH_ARTIFACT
        if self.sketch is None:
            raise ModelUnavailableError(f"run {run_id} has no artifact {artifact_path!r}")
        return self.sketch


def test_reference_sketch_is_the_logged_one_else_made_from_the_sample(frame, tmp_path, caplog):
    schema, rows = frame
    sample = tmp_path / "reference.parquet"
    rows.head(500).to_parquet(sample, index=False)
    logged = sketch_of(rows, schema, "2026-01-31").write(tmp_path / "logged.json")
    found = spark_drift.reference_sketch(
        _Registry(logged), "run1", str(sample), schema, tmp_path, pd.Timestamp("2026-02-01")
    )
    assert found.rows == 2000
    with caplog.at_level(logging.INFO, logger="persona.flows.spark_drift"):
        made = spark_drift.reference_sketch(
            _Registry(None), "run1", str(sample), schema, tmp_path, pd.Timestamp("2026-02-01")
        )
    assert made.rows == 500 and "has no reference sketch" in caplog.text


def _stand_in(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "spark-persona"
    script.write_text(f"#!{sys.executable}\n{body}")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_the_job_runs_as_a_subprocess_and_its_answer_is_read(frame, tmp_path, capfd):
    schema, rows = frame
    sketch = sketch_of(rows, schema, None).write(tmp_path / "s.json")
    body = f"""import json, sys
argv = sys.argv[1:]
out = argv[argv.index("--out") + 1]
assert argv[0] == "drift-sketch" and argv[argv.index("--month") + 1] == "2026-01"
json.dump({{"sketch_path": {str(sketch)!r}, "sample_path": "x", "rows": 2000,
           "sample_rows": 10}}, open(out + "/job.json", "w"))
print("the job's own answer")
"""
    sketcher = SparkSketcher(str(_stand_in(tmp_path, body)), "local[2]", Path("s.yaml"), tmp_path)
    data = train.DataRequest(source="file", path="m.parquet", months=("2026-01",))
    answer = sketcher.sketch(data, "2026-01-31", tmp_path / "job", 10)
    assert answer == spark_drift.SketchedMonth(str(sketch), "x", 2000, 10)
    assert FrameSketch.read(Path(answer.sketch_path)).rows == 2000
    printed = capfd.readouterr()  # stdout is the monitor's own JSON answer: the job stays off it
    assert "the job's own answer" not in printed.out and "the job's own answer" in printed.err


def test_a_failed_job_is_the_error_of_its_exit_code(tmp_path):
    sketcher = SparkSketcher(
        str(_stand_in(tmp_path, "import sys; sys.exit(3)")), "local[2]", Path("s"), tmp_path
    )
    with pytest.raises(InvalidInputError, match="exited with 3"):
        sketcher.sketch(train.DataRequest(source="file", path="m"), None, tmp_path / "j", 10)
    missing = SparkSketcher(str(tmp_path / "nope"), "local[2]", Path("s"), tmp_path)
    with pytest.raises(ConfigurationError, match="make install-spark"):
        missing.sketch(train.DataRequest(source="file", path="m"), None, tmp_path / "j", 10)


def test_the_command_names_the_month_and_the_reference_date():
    data = train.DataRequest(source="file", path="m.parquet", months=("2026-01", "2026-02"))
    command = drift_sketch_command("p", data, "2026-01-31", Path("o"), 5, Path("s.yaml"), "m")
    assert command[:2] == ["p", "drift-sketch"]
    assert command[-6:] == [
        "--month",
        "2026-01",
        "--month",
        "2026-02",
        "--reference-date",
        "2026-01-31",
    ]


def test_the_report_page_says_it_shows_a_sample(tmp_path):
    page = tmp_path / "r.html"
    page.write_text("<html><body class='x'><p>charts</p></body></html>")
    note = spark_drift.sample_note(spark_drift.SketchedMonth("s", "p", 1_000_000, 20_000))
    text = spark_drift.annotate_html(page, note).read_text()
    assert text.index("1,000,000 rows") < text.index("charts") and "20,000 rows" in text
    assert json.dumps(note)  # plain text


def test_the_month_crosses_mage_blocks_as_plain_json():
    """load_current hands check_drift and retrain_on_drift the SparkMonth as a dict."""
    from persona.orchestration import blocks
    from persona.values import to_plain

    month = spark_drift.SparkMonth(train.DataRequest(source="file", path="m", months=("2026-01",)))
    plain = json.loads(json.dumps(to_plain(month)))
    assert blocks._current(plain) == month
    frame = pd.DataFrame({"a": [1]})
    assert blocks._current(frame) is frame
