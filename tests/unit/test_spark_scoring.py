"""The Spark engine's pure parts, without Spark: slices of the table, the results' schema, the
line of a rejection, the options of the score_batch pipeline, errors raised in executors."""

from __future__ import annotations

from pathlib import Path

import pytest

from persona.adapters.spark_scoring import Tally, input_files, result_ddl, table_slices
from persona.errors import ConfigurationError, InvalidInputError
from persona.flows.score_stream import StreamRequest
from persona.orchestration.score_batch import score_arguments


def test_each_month_is_cut_into_slices_that_cover_it_once():
    slices = table_slices({"2026-02": 600_000, "2026-01": 10}, parallelism=4)
    by_month = {}
    for item in slices:
        by_month.setdefault(item.month, []).append(item)
    assert sorted(by_month) == ["2026-01", "2026-02"]
    assert [s.bucket for s in by_month["2026-01"]] == [0, 1]  # 4 cores over 2 months
    assert [s.bucket for s in by_month["2026-02"]] == [0, 1, 2]  # 600k rows / 250k a slice
    assert {s.buckets for s in by_month["2026-02"]} == {3}
    assert table_slices({}, 4) == []


def test_the_results_schema_follows_the_request():
    with_month = StreamRequest("ID", "snapshot_month", True, None, "flag")
    assert result_ddl(with_month) == (
        "`ID` string, `snapshot_month` string, `persona_id` bigint, `persona_name` string, "
        "`model_name` string, `model_version` string, `scored_at` string, `problems` string"
    )
    assert "snapshot_month" not in result_ddl(StreamRequest("ID", "snapshot_month"))


def test_a_rejection_is_one_line_naming_field_rule_and_ids():
    tally = Tally(
        300,
        297,
        ("7", "8", "9"),
        (
            {"field": "Income", "rule": ">= 0", "count": 1, "ids": ["7"]},
            {"field": "Kidhome", "rule": "not null", "count": 7, "ids": ["8", "9"]},
        ),
    )
    message = str(tally.rejection())
    assert "\n" not in message
    assert "3 rows break the model's data contract" in message
    assert "Income: >= 0 (1 rows; ids: 7)" in message
    assert "Kidhome: not null (7 rows; ids: 8, 9, ...)" in message
    assert "nothing is kept" in message


def test_a_folder_is_its_readable_files(tmp_path: Path):
    for name in ("b.csv", "a.parquet", ".hidden.csv", "_SUCCESS", "notes.md"):
        (tmp_path / name).write_text("x")
    assert [p.name for p in input_files(tmp_path)] == ["a.parquet", "b.csv"]
    with pytest.raises(InvalidInputError, match="file not found"):
        input_files(tmp_path / "missing.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match="no .csv"):
        input_files(tmp_path / "empty")


def test_score_batch_variables_become_the_commands_options():
    assert score_arguments({}) == ["--engine", "http"]
    assert score_arguments(
        {"engine": "spark", "month": "2026-03", "file": "", "out": "/tmp/o", "segmentation": ""}
    ) == ["--engine", "spark", "--month", "2026-03", "--out", "/tmp/o"]
    with pytest.raises(ConfigurationError, match="engine must be one of"):
        score_arguments({"engine": "dask"})


def test_out_replaces_only_an_earlier_output_or_an_empty_folder(tmp_path: Path):
    from persona.cli_spark import _check_out

    _check_out(tmp_path / "new")
    (tmp_path / "empty").mkdir()
    _check_out(tmp_path / "empty")
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "_SUCCESS").write_text("")
    _check_out(earlier)
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "report.xlsx").write_text("x")
    for taken in (theirs, theirs / "report.xlsx"):
        with pytest.raises(ConfigurationError, match="is not an earlier output"):
            _check_out(taken)
