"""The Spark drift engine agrees with the in-process Evidently path on a month of 1M rows.

The month is the synthetic generator's (channel shifted) with annual income raised by a
quarter: two columns drift, the others are stable. The reference is a model's reference sample
(20,000 rows). ``persona drift-sketch`` (the Spark job the monitor runs) sketches the month on
local[*] and on the standalone cluster; the Evidently report runs on the same rows in the
pipeline environment (``.venv/dev``: Evidently is not in the Spark environment).

Tolerance of the scores: 0.01. Columns with <= 1000 distinct values (the integer ones and the
categoricals) are counted exactly, so their scores agree to rounding; continuous columns read
bin shares off the interpolated CDF of a 1001-point quantile grid found with a relative error of
0.0005 (a share is off by about a grid step, 0.001, per bin edge), which moves a score by a few
thousandths at most (measured below); every default threshold is 0.1, so a verdict could only
differ for a score within 0.01 of its threshold, which this month's columns are not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, VENVS

from persona.data.catalogue import load_catalogue
from persona.data.generator import generate_snapshot
from persona.monitoring.drift import drift_config_from_dict
from persona.monitoring.sketch import ANSWER_NAME, FrameSketch
from persona.monitoring.sketch_drift import SKETCH_METHODS, drift_from_sketches, score, sketch_of

pytestmark = pytest.mark.spark

ROWS = int(os.environ.get("PERSONA_TEST_DRIFT_ROWS", 1_000_000))
TOLERANCE = 0.01
DAY = "2026-03-31"

EVIDENTLY = """
import json, sys
import pandas as pd
from pathlib import Path
from persona.adapters import evidently_report
from persona.data.catalogue import load_catalogue
from persona.monitoring.drift import drift_config_from_dict, interpret_report, feature_columns
from evidently.legacy.calculations.stattests.registry import get_registered_stattest
from evidently.legacy.core import ColumnType

schema = load_catalogue(Path(sys.argv[1])).schema
reference, current = pd.read_parquet(sys.argv[2]), pd.read_parquet(sys.argv[3])
config = drift_config_from_dict({})
_, report = evidently_report.run_drift_report(reference, current, schema, config)
result = interpret_report(report, config, len(reference), len(current))
out = {"auto": {c.column: [c.method, c.score, c.drifted] for c in result.columns}, "methods": {}}
for method in sys.argv[4].split(","):
    for column in feature_columns(schema):
        numeric = column in schema.numeric
        if method == "wasserstein" and not numeric:
            continue
        kind = ColumnType.Numerical if numeric else ColumnType.Categorical
        test = get_registered_stattest(method, kind)
        value = test(reference[column].dropna(), current[column].dropna(), kind, 0.1).drift_score
        out["methods"].setdefault(method, {})[column] = float(value)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def month(tmp_path_factory):
    """The reference sample and the drifted month as Parquet files, and Evidently's answers."""
    folder = tmp_path_factory.mktemp("spark-drift")
    catalogue = load_catalogue(ROOT / "00_create_data/personas.yaml")
    reference = generate_snapshot(catalogue, 20_000, "2026-01", 3, progress=False)
    current = generate_snapshot(catalogue, ROWS, "2026-03", 5, "channel_shift", progress=False)
    current["annual_income"] = current["annual_income"] * 1.25
    reference.to_parquet(folder / "reference.parquet", index=False)
    current.to_parquet(folder / "month.parquet", index=False)
    python = VENVS / "dev/bin/python"
    answer = subprocess.run(
        [
            str(python),
            "-c",
            EVIDENTLY,
            str(ROOT / "00_create_data/personas.yaml"),
            str(folder / "reference.parquet"),
            str(folder / "month.parquet"),
            ",".join(SKETCH_METHODS),
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    evidently = json.loads(answer.stdout.strip().splitlines()[-1])
    return catalogue.schema, reference, folder, evidently


def _spark_sketch(folder: Path, master: str, path: Path) -> FrameSketch:
    out = folder / f"sketch-{abs(hash(master))}"
    command = [str(Path(sys.executable).with_name("persona")), "drift-sketch", "--path", str(path)]
    command += ["--out", str(out), "--master", master, "--reference-date", DAY]
    command += ["--sample-rows", "20000", "--schema", str(ROOT / "00_create_data/schema.yaml")]
    subprocess.run(command, check=True, cwd=ROOT, capture_output=True, text=True)
    answer = json.loads((out / ANSWER_NAME).read_text())
    assert answer["sample_rows"] == 20_000  # a bounded sample for the report page
    return FrameSketch.read(Path(answer["sketch_path"]))


def _compare(schema, reference, current: FrameSketch, evidently) -> dict[str, float]:
    reference_sketch = sketch_of(reference, schema, DAY)
    result = drift_from_sketches(reference_sketch, current, schema, drift_config_from_dict({}))
    expected = evidently["auto"]
    assert {c.column: [c.method, c.drifted] for c in result.columns} == {
        name: [method, drifted] for name, (method, _, drifted) in expected.items()
    }
    assert set(result.drifted_columns) == {"annual_income", "channel"}
    for column in result.columns:
        assert column.score == pytest.approx(expected[column.column][1], abs=TOLERANCE)
    worst = {}
    for method, scores in evidently["methods"].items():
        diffs = []
        for name, value in scores.items():
            kind = "numeric" if name in schema.numeric else "categorical"
            mine = score(method, reference_sketch.column(name), current.column(name), kind)
            diffs.append(abs(mine - value))
        worst[method] = max(diffs)
    print("max |spark - evidently| per method:", json.dumps(worst))
    assert all(diff <= TOLERANCE for diff in worst.values()), worst
    return worst


def test_spark_sketch_on_local_agrees_with_evidently(month):
    schema, reference, folder, evidently = month
    current = _spark_sketch(folder, "local[*]", folder / "month.parquet")
    assert current.rows == ROWS
    _compare(schema, reference, current, evidently)


def test_spark_sketch_on_the_cluster_agrees_with_evidently(month, spark_cluster):
    schema, reference, folder, evidently = month
    current = _spark_sketch(folder, spark_cluster.master_url, folder / "month.parquet")
    assert current.rows == ROWS
    _compare(schema, reference, current, evidently)


def test_counts_of_the_spark_sketch_are_exact(month):
    """Where the sketch keeps value counts they are the month's own (not approximations)."""
    schema, _reference, folder, _ = month
    import pandas as pd

    current = pd.read_parquet(folder / "month.parquet")
    exact = sketch_of(current, schema, DAY)
    spark = FrameSketch.read(next(folder.glob("sketch-*/current_sketch.json")))
    assert spark.categorical == exact.categorical
    for name, column in exact.numeric.items():
        other = spark.numeric[name]
        assert (other.count, other.nulls) == (column.count, column.nulls)
        if other.values is not None or name in ("age", "tenure_months", "web_visits"):
            assert (other.values, other.counts) == (column.values, column.counts)
        assert np.isclose(other.mean, column.mean) and np.isclose(other.std, column.std)


@pytest.fixture(scope="module")
def customers_table(make_database):
    """Two months in a real PostgreSQL customers table; the job must read only one."""
    from persona.adapters import database

    catalogue = load_catalogue(ROOT / "00_create_data/personas.yaml")
    url = make_database("persona_spark_table")
    wanted = generate_snapshot(catalogue, 30_000, "2026-04", 8, "channel_shift", progress=False)
    other = generate_snapshot(catalogue, 5_000, "2026-03", 9, progress=False)
    engine = database.make_engine(url)
    for month in (other, wanted):
        database.upsert_frame(engine, "customers", month, catalogue.schema, progress=False)
    engine.dispose()
    return url, catalogue.schema, wanted


@pytest.mark.parametrize("where", ["local", "cluster"])
def test_the_month_is_read_from_the_table_by_the_executors(
    customers_table, tmp_path, request, where
):
    url, schema, wanted = customers_table
    master = "local[2]"
    if where == "cluster":
        master = request.getfixturevalue("spark_cluster").master_url
    command = [str(Path(sys.executable).with_name("persona")), "drift-sketch", "--source"]
    command += ["table", "--month", "2026-04", "--out", str(tmp_path), "--master", master]
    command += ["--sample-rows", "1000", "--schema", str(ROOT / "00_create_data/schema.yaml")]
    env = {**os.environ, "PERSONA_DATABASE_URL": url, "PERSONA_CUSTOMERS_TABLE": "customers"}
    subprocess.run(command, check=True, cwd=ROOT, capture_output=True, text=True, env=env)
    sketch = FrameSketch.read(tmp_path / "current_sketch.json")
    exact = sketch_of(wanted, schema, None)
    assert sketch.rows == 30_000
    assert sketch.categorical == exact.categorical
    counted = {n: c.counts for n, c in sketch.numeric.items() if c.counts is not None}
    assert {"age", "tenure_months", "web_visits"} <= set(counted)  # integer columns: exact
    assert counted == {n: exact.numeric[n].counts for n in counted}
    import pandas as pd

    sample = pd.read_parquet(tmp_path / "current_sample.parquet")
    assert len(sample) == 1000 and set(sample["snapshot_month"]) == {"2026-04"}


def test_a_path_that_is_not_parquet_is_one_line(tmp_path):
    missing = tmp_path / "nope.parquet"
    command = [str(Path(sys.executable).with_name("persona")), "drift-sketch", "--path"]
    command += [str(missing), "--out", str(tmp_path / "o"), "--master", "local[1]"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 3
    assert f"cannot read {missing} as Parquet" in done.stderr and "Traceback" not in done.stderr
