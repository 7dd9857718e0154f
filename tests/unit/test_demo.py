"""The pure parts of `make demo`: its request, the checks between steps and the summary."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from persona import cli
from persona.adapters.mlflow_models import ProductionArtifacts, VersionInfo
from persona.errors import ConfigurationError, ModelUnavailableError
from persona.flows import demo

REFERENCE = "reference/reference.parquet"


def test_three_months_or_one_first_month():
    assert demo.parse_months("2026-01 2026-02 2026-03") == ("2026-01", "2026-02", "2026-03")
    assert demo.parse_months(" 2026-04,2026-02, 2026-09 ") == ("2026-04", "2026-02", "2026-09")
    assert demo.parse_months("2025-11") == ("2025-11", "2025-12", "2026-01")


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("2026-13 2026-02 2026-03", "'2026-13'"),
        ("2026-01 2026-02", "three months"),
        ("", "three months"),
        ("2026-01 2026-01 2026-02", "three different months"),
        ("Jan Feb Mar", "'Jan', 'Feb', 'Mar'"),
    ],
)
def test_malformed_months_are_refused_naming_the_problem(text, named):
    with pytest.raises(ConfigurationError, match="MONTHS") as raised:
        demo.parse_months(text)
    assert named in str(raised.value)


def _build(**overrides) -> demo.DemoRequest:
    arguments = {
        "months": "2026-01",
        "rows": 5000,
        "sample_rows": 500,
        "seed": 1,
        "scenario": "mix_shift",
        "min_rows": 1000,
        "serve_timeout_s": 120.0,
    }
    return demo.DemoRequest.build(**{**arguments, **overrides})


def test_request_roles_of_the_months():
    request = _build()
    assert request.train_months == ("2026-01", "2026-02")
    assert request.score_month == "2026-02" and request.drifted_month == "2026-03"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"rows": 999}, "ROWS must be at least 1000"),
        ({"sample_rows": 5001}, "1..5000"),
        ({"sample_rows": 0}, "1..5000"),
        ({"scenario": "none"}, "drift scenario"),
        ({"scenario": "mixshift"}, "mix_shift"),
        ({"serve_timeout_s": 0}, "positive"),
    ],
)
def test_request_knobs_are_checked(overrides, message):
    with pytest.raises(ConfigurationError, match=message):
        _build(**overrides)


def test_cli_rejects_bad_months_with_an_exit_code_and_no_traceback(caplog):
    assert cli.main(["demo", "--months", "2026-1"]) == ConfigurationError.exit_code
    assert "MONTHS must be three months" in caplog.text and "Traceback" not in caplog.text


def _artifacts(model=("MLmodel", "python_model.pkl"), reference=(REFERENCE,), error=None):
    return ProductionArtifacts("3", "run-1", tuple(model), tuple(reference), error)


def test_a_production_version_is_usable_only_with_its_model_and_reference():
    assert demo.production_problem(_artifacts(), REFERENCE) is None
    assert "model files" in demo.production_problem(_artifacts(model=()), REFERENCE)
    assert "drift reference" in demo.production_problem(_artifacts(reference=()), REFERENCE)
    assert "RESOURCE_DOES_NOT_EXIST" in demo.production_problem(
        _artifacts(model=(), error="RESOURCE_DOES_NOT_EXIST: run gone"), REFERENCE
    )


def test_newest_version_is_the_highest_registered_since():
    versions = [VersionInfo(v, (), {}) for v in ("1", "2", "9", "10")]
    assert demo.newest_version(versions, {"1", "2"}).version == "10"
    assert demo.newest_version(versions, {"1", "2", "9", "10"}) is None


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_waiting_for_the_served_version_needs_answers_in_a_row():
    time = FakeTime()
    answers = iter(
        [(None, "model not loaded yet"), ("1", ""), ("2", ""), ("1", ""), ("2", ""), ("2", "")]
    )
    waited = demo.wait_for_served_version(
        lambda: next(answers), "2", 60, consecutive=2, clock=time.clock, sleep=time.sleep
    )
    assert waited == 5.0  # the streak broken by a worker still on v1 starts again


def test_waiting_gives_up_naming_the_last_answer():
    time = FakeTime()
    with pytest.raises(ModelUnavailableError, match=r"v2 within 10 s \(last answer: serving v1\)"):
        demo.wait_for_served_version(lambda: ("1", ""), "2", 10, clock=time.clock, sleep=time.sleep)
    assert time.now == 11.0


def test_persona_counts_sum_to_the_rows_largest_first():
    scored = pd.DataFrame({"persona_name": ["b", "a", "b", "c", "a", "b"]})
    counts = demo.persona_counts(scored)
    assert list(counts.items()) == [("b", 3), ("a", 2), ("c", 1)]
    assert sum(counts.values()) == len(scored)


def test_draw_sample_is_seeded_and_bounded():
    frame = pd.DataFrame({"customer_id": range(100)})
    assert demo.draw_sample(frame, 10, 3).equals(demo.draw_sample(frame, 10, 3))
    assert len(demo.draw_sample(frame, 10, 3)) == 10 and len(demo.draw_sample(frame, 500, 3)) == 100


def test_pick_drift_run_takes_the_newest_run_of_this_window_and_model():
    since = datetime(2026, 5, 1, 12, tzinfo=UTC)
    runs = pd.DataFrame(
        {
            "run_id": ["old", "other-month", "other-model", "mine", "mine-earlier"],
            "checked_at": [
                since - timedelta(minutes=1),
                since + timedelta(minutes=3),
                since + timedelta(minutes=3),
                since + timedelta(minutes=2),
                since + timedelta(minutes=1),
            ],
            "data_window": ["2026-03", "2026-02", "2026-03", "2026-03", "2026-03"],
            "model_name": ["m", "m", "other", "m", "m"],
            "new_model_version": [None, None, None, "4", None],
        }
    )
    picked = demo.pick_drift_run(runs, "2026-03", "m", since)
    assert picked["run_id"] == "mine" and picked["new_model_version"] == "4"
    assert demo.pick_drift_run(runs, "2026-04", "m", since) is None
    assert demo.pick_drift_run(runs.iloc[0:0], "2026-03", "m", since) is None


def _report(alias: str = "production", **monitored) -> demo.DemoReport:
    urls = demo.StackUrls(
        mage="http://127.0.0.1:6789",
        mlflow="http://127.0.0.1:5000",
        api="http://127.0.0.1:8080",
        evidently="http://127.0.0.1:8001",
    )
    fields = {
        "month": "2026-03",
        "reference_version": "2",
        "drift_share": 0.7,
        "threshold": 0.1,
        "dataset_drift": True,
        "action": "retrained",
        "new_version": "3",
        "promoted": True,
        "reason": "challenger silhouette 0.61 > production 0.55 + margin 0.01",
        "alert_status": "disabled",
        "report": None,
        **monitored,
    }
    return demo.DemoReport(
        model_name="persona-segmentation",
        alias=alias,
        urls=urls,
        data=demo.DataResult(("2026-01", "2026-02", "2026-03"), 5000, "mix_shift", "customers"),
        trained=demo.TrainResult(
            ("2026-01", "2026-02"), "2", alias, "no production model", "2", "v1: gone"
        ),
        scored=demo.ScoreResult("2026-02", 500, {"Savers": 300, "Spenders": 200}, ("2",), 4.0),
        monitored=demo.MonitorResult(**fields),
        step_seconds={name: 10.0 for name in demo.STEPS},
    )


def test_summary_names_the_four_urls_the_numbers_and_how_to_stop():
    text = demo.format_summary(_report())
    for url in (
        "http://127.0.0.1:6789",
        "http://127.0.0.1:5000/#/models/persona-segmentation/versions/3",  # promoted at the end
        "http://127.0.0.1:8080",
        "http://127.0.0.1:8001",
    ):
        assert url in text
    assert "done in 1m00.0s" in text
    assert "v2 -> @production" in text and "taken off v1: gone" in text
    assert "Savers" in text and "300" in text and "500 customers of 2026-02" in text
    assert "drift share 70% (threshold 10%) -> drift" in text
    assert "v3 promoted to @production" in text
    assert "Telegram is not configured" in text
    assert "make local-down" in text


def test_summary_names_the_configured_alias():
    text = demo.format_summary(_report(alias="live"))
    assert "registry @live taken off v1: gone" in text
    assert "v3 promoted to @live" in text and "v2 -> @live" in text
    assert "@production" not in text


def test_summary_when_the_retrained_model_stays_challenger_or_nothing_drifted():
    kept = demo.format_summary(_report(promoted=False, reason="not better"))
    assert "v3 not promoted (not better)" in kept and "versions/2" in kept
    quiet = demo.format_summary(
        _report(dataset_drift=False, action="no_drift", new_version=None, promoted=None)
    )
    assert "-> no drift" in quiet and "action: no_drift" in quiet


def test_stack_urls_turn_bind_addresses_into_urls():
    from persona.composition import stack_urls
    from persona.settings import load_settings

    settings = load_settings(
        environ={
            "PERSONA_MAGE_HOST": "0.0.0.0",
            "PERSONA_EVIDENTLY_PORT": "9001",
            "MLFLOW_TRACKING_URI": "http://mlflow:5000/",
        }
    )
    urls = stack_urls(settings)
    assert urls.mage == "http://127.0.0.1:6789" and urls.evidently == "http://127.0.0.1:9001"
    assert urls.mlflow == "http://mlflow:5000"
    assert ("the scoring API", "http://127.0.0.1:8080/health") in urls.health()


def test_step_clock_announces_each_step_with_the_elapsed_time(caplog):
    time = FakeTime()
    steps = demo.StepClock(time.clock)
    caplog.set_level(logging.INFO, logger="persona.flows.demo")
    with steps.step("data", "generate"):
        time.sleep(12.5)
    with pytest.raises(RuntimeError), steps.step("train", "fit"):
        time.sleep(70)
        raise RuntimeError("boom")
    assert steps.seconds == {"data": 12.5}
    assert "[0.0s] step 2/6 data: generate" in caplog.text
    assert "[12.5s] step 2/6 data done in 12.5s" in caplog.text
    assert "step train failed after 1m10.0s" in caplog.text
