"""Run variables of the monitor pipeline -> what it checks and what it may do."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from persona.data.months import previous_month
from persona.errors import ConfigurationError
from persona.flows import monitor
from persona.monitoring.drift import DriftResult
from persona.monitoring.quality import QualityCheck, QualityResult
from persona.monitoring.rows import frame_from_scoring_log


def test_previous_month_is_the_month_that_just_ended():
    assert previous_month(datetime(2026, 1, 2)) == "2025-12"
    assert previous_month(datetime(2026, 7, 31)) == "2026-06"
    request = monitor.MonitorRequest.from_variables({"month": "previous"}, datetime(2026, 7, 2))
    assert request.data.months == ("2026-06",) and request.window == "2026-06"


def test_flags_arrive_as_text_or_booleans():
    assert monitor.MonitorRequest.from_variables({"month": "2026-02"}).retrain is True
    off = monitor.MonitorRequest.from_variables({"month": "2026-02", "retrain": "false"})
    assert off.retrain is False and off.all_clear_alert is None
    on = monitor.MonitorRequest.from_variables({"month": "2026-02", "all_clear_alert": True})
    assert on.all_clear_alert is True


def test_a_table_run_without_a_month_is_refused_by_name():
    with pytest.raises(ConfigurationError, match="month"):
        monitor.MonitorRequest.from_variables({})


@pytest.mark.parametrize(
    ("result", "retrain", "decision"),
    [
        ((False, False), True, monitor.INSUFFICIENT_DATA),
        ((True, False), True, monitor.NO_DRIFT),
        ((True, True), True, monitor.RETRAIN),
        ((True, True), False, monitor.DRIFT_NO_RETRAIN),
    ],
)
def test_decision(result, retrain, decision):
    enough, drift = result
    checked = DriftResult(100, 100, (), 0.5 if enough else None, drift, enough)
    request = monitor.MonitorRequest.from_variables({"month": "2026-02", "retrain": retrain})
    assert monitor.decide(monitor.DriftCheck(checked, None, None), request) == decision


def test_a_month_that_failed_its_quality_checks_is_never_retrained_on():
    failed = QualityResult(100, (QualityCheck("channel", "in allowed levels", 5, 0.05, 0, True),))
    checked = monitor.DriftCheck(DriftResult.not_checked(100, 100, True, "bad"), None, None, failed)
    request = monitor.MonitorRequest.from_variables({"month": "2026-02", "retrain": True})
    assert monitor.decide(checked, request) == monitor.DATA_QUALITY_FAILED


def test_synthetic_and_file_windows_say_where_the_rows_came_from():
    synthetic = monitor.MonitorRequest.from_variables(
        {"source": "synthetic", "month": "2026-03", "scenario": "mix_shift"}
    )
    assert synthetic.window == "2026-03 (synthetic, mix_shift)"
    assert synthetic.data.rows == 10_000
    file = monitor.MonitorRequest.from_variables({"source": "file", "path": "/data/march.csv"})
    assert file.window == "march.csv"


def test_scoring_log_rows_become_one_row_per_customer():
    import pandas as pd

    from persona.data.schema import load_schema

    schema = load_schema(Path(__file__).resolve().parents[2] / "00_create_data/schema.yaml")
    row = {name: 1.0 for name in schema.numeric} | {name: "x" for name in schema.categorical}
    logged = pd.DataFrame(
        [
            {**row, "customer_id": "C1", "scored_at": "2026-03-30T23:00:00+00:00", "age": 30.0},
            {**row, "customer_id": "C1", "scored_at": "2026-04-01T08:00:00+00:00", "age": 31.0},
            {**row, "customer_id": None, "scored_at": "2026-04-01T09:00:00+00:00"},
            {**row, "customer_id": None, "scored_at": "2026-04-01T10:00:00+00:00"},
        ]
    )
    frame = frame_from_scoring_log(logged, schema)
    assert list(frame.columns) == [schema.id_column, schema.month_column, *schema.features]
    assert len(frame) == 3 and frame[schema.id_column].is_unique
    latest = frame.set_index(schema.id_column).loc["C1"]
    assert latest["age"] == 31.0 and latest[schema.month_column] == "2026-04"
    assert frame_from_scoring_log(pd.DataFrame(), schema).empty


def test_scoring_log_source_takes_a_window_in_days():
    request = monitor.MonitorRequest.from_variables({"source": "scoring_log", "days": "7"})
    assert request.data.source == monitor.SCORING_LOG and request.days == 7
    with pytest.raises(ConfigurationError, match="days"):
        monitor.MonitorRequest.from_variables({"source": "scoring_log", "days": "-1"})


def test_logged_batches_expand_to_the_rows_that_were_scored():
    import numpy as np
    import pandas as pd

    from persona.adapters.scoring_log import COLUMNS, LoggedBatch, expand_batches

    numeric = np.array([[1.0, np.nan], [3.5, 4.0]])
    batch = LoggedBatch(
        datetime(2026, 4, 1, 8),
        "persona",
        "3",
        ["C1", 7],
        ("age", "income"),
        numeric,
        ("channel",),
        [np.array(["web", None], dtype=object)],
        np.array([2, 0]),
        np.array(["A", "B"], dtype=object),
    )
    frame = expand_batches(pd.DataFrame([batch.row()], columns=list(COLUMNS)))
    assert frame["customer_id"].tolist() == ["C1", "7"]
    np.testing.assert_array_equal(frame[["age", "income"]].to_numpy(), numeric)
    assert frame["channel"].tolist() == ["web", None] and frame["persona_id"].tolist() == [2, 0]
    assert set(frame["model_version"]) == {"3"} and expand_batches(pd.DataFrame()).empty
