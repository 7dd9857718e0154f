"""Drift config, verdicts and their agreement with Evidently's own per-column tests."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from persona.adapters import evidently_report
from persona.data.catalogue import load_catalogue
from persona.data.generator import generate_snapshot
from persona.errors import ConfigurationError, InvalidInputError
from persona.monitoring.drift import (
    STAT_TESTS,
    ColumnDrift,
    DriftConfig,
    DriftResult,
    MethodSpec,
    check_enough_data,
    column_tests,
    drift_config_from_dict,
    feature_columns,
    interpret_report,
    is_drifted,
    load_drift_config,
    stat_test,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def catalogue():
    return load_catalogue(ROOT / "00_create_data/personas.yaml")


@pytest.fixture(scope="module")
def schema(catalogue):
    return catalogue.schema


def _config(**overrides) -> DriftConfig:
    return drift_config_from_dict({"min_rows": 100, "reference_sample_rows": 100, **overrides})


def _evidently_statuses(report: dict) -> dict[str, bool]:
    """Evidently's own verdict per column: a failed ValueDrift test means drift."""
    out = {}
    for test in report["tests"]:
        params = test["metric_config"]["params"]
        if params["type"].endswith(":ValueDrift"):
            out[params["column"]] = getattr(test["status"], "value", test["status"]) == "FAIL"
    return out


# --------------------------------------------------------------------------- config


def test_repository_config_loads_with_automatic_methods(schema):
    config = load_drift_config(ROOT / "04_monitoring/drift.yaml")
    assert 0 < config.drift_share <= 0.1  # one drifted column of ten must be enough
    assert config.min_rows >= 500 and config.reference_sample_rows >= 10 * config.min_rows
    assert config.all_clear_alert is True
    assert set(column_tests(config, schema).values()) == {MethodSpec()}


def test_overrides_resolve_per_column(schema):
    config = drift_config_from_dict(
        {
            "defaults": {"numeric": {"method": "ks", "threshold": 0.01}},
            "columns": {
                "annual_income": {"method": "psi", "threshold": 0.2},
                "channel": {"method": "jensenshannon"},
            },
        }
    )
    tests = column_tests(config, schema)
    assert tests["annual_income"] == MethodSpec("psi", 0.2)
    assert tests["age"] == MethodSpec("ks", 0.01)
    assert tests["channel"] == MethodSpec("jensenshannon", None)
    assert tests["region"] == MethodSpec()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"drift_share": 0}, r"drift_share must be a number in \(0, 1\], got 0"),
        ({"drift_share": 1.5}, r"drift_share .* got 1\.5"),
        ({"drift_share": "lots"}, r"drift_share .* got 'lots'"),
        ({"min_rows": 0}, r"min_rows must be an integer >= 1, got 0"),
        ({"min_rows": 2.5}, r"min_rows .* got 2\.5"),
        ({"min_rows": True}, r"min_rows .* got True"),
        ({"min_rows": 600, "reference_sample_rows": 100}, r"reference_sample_rows .* >= 600"),
        ({"all_clear_alert": "yes"}, r"all_clear_alert must be true or false, got 'yes'"),
        ({"drift_shares": 0.1}, r"unknown keys \['drift_shares'\]"),
        ({"defaults": {"numerical": {}}}, r"defaults must be a mapping with keys numeric"),
        ({"defaults": {"numeric": {"method": "nope"}}}, r"defaults.numeric.method .* got 'nope'"),
        ({"defaults": {"numeric": {"method": "chisquare"}}}, r"'chisquare' works on"),
        ({"columns": {"region": {"method": "g_test"}}}, r"'g_test' cannot be used"),
        ({"columns": {"age": {"threshold": 0.1}}}, r"columns.age.threshold 0.1 needs a"),
        ({"columns": {"age": {"method": "ks", "threshold": 1.5}}}, r"p-value in \(0, 1\)"),
        ({"columns": {"age": {"method": "psi", "threshold": -1}}}, r"distance > 0 .* got -1"),
        ({"columns": {"age": {"method": "psi", "threshold": "x"}}}, r"columns.age.threshold"),
        ({"columns": {"age": {"method": "psi", "tresh": 1}}}, r"columns.age: unknown keys"),
        ({"columns": {"age": "psi"}}, r"columns.age must be a mapping"),
        ({"columns": ["age"]}, r"columns must map column names"),
    ],
)
def test_config_errors_name_key_and_value(raw, message):
    with pytest.raises(ConfigurationError, match=message) as info:
        drift_config_from_dict(raw, source="my.yaml")
    assert str(info.value).startswith("my.yaml: ")


def test_overrides_must_name_features_of_the_right_type(schema):
    with pytest.raises(ConfigurationError, match=r"\['customer_id'\] are not feature columns"):
        column_tests(_config(columns={"customer_id": {"method": "psi"}}), schema)
    with pytest.raises(ConfigurationError, match=r"columns.channel.method 'ks' works on"):
        column_tests(_config(columns={"channel": {"method": "ks"}}), schema)


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigurationError, match="drift config not found"):
        load_drift_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("drift_share: [0.1\n")
    with pytest.raises(ConfigurationError, match="not valid YAML"):
        load_drift_config(bad)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_drift_config(empty) == DriftConfig()


def test_feature_columns_never_include_id_month_or_truth(schema):
    columns = feature_columns(schema)
    assert columns == [*schema.numeric, *schema.categorical]
    assert not {schema.id_column, schema.month_column, schema.truth_column} & set(columns)


def test_enough_data():
    config = _config(min_rows=500, reference_sample_rows=1000)
    assert check_enough_data(500, config) == (True, None)
    ok, reason = check_enough_data(499, config)
    assert not ok and "499" in reason and "500" in reason
    assert not config.enough_data(800, n_reference=10).ok


# --------------------------------------------------------------------------- direction


def test_direction_p_values_low_distances_high():
    ks, psi, energy = STAT_TESTS["ks"], STAT_TESTS["psi"], STAT_TESTS["ed"]
    assert is_drifted(0.01, 0.05, ks) and not is_drifted(0.5, 0.05, ks)
    assert is_drifted(0.3, 0.1, psi) and not is_drifted(0.01, 0.1, psi)
    assert is_drifted(0.05, 0.05, ks) and is_drifted(0.1, 0.1, psi)  # inclusive boundaries
    assert not is_drifted(0.1, 0.1, energy) and not is_drifted(math.nan, 0.1, psi)
    assert stat_test("Wasserstein distance (normed)") is STAT_TESTS["wasserstein"]
    assert stat_test("custom") is None


def test_stat_test_table_matches_evidently():
    """Names, display names, defaults, types and the boundary rule of every registered test."""
    from evidently.legacy.calculations.stattests.registry import _registered_stat_tests
    from evidently.legacy.core import ColumnType

    kinds = {ColumnType.Numerical: "numeric", ColumnType.Categorical: "categorical"}
    rng = np.random.default_rng(0)
    samples = {
        "numeric": (pd.Series(rng.normal(0, 1, 300)), pd.Series(rng.normal(0.15, 1, 300))),
        "categorical": (  # binary, as Fisher's exact test requires
            pd.Series(rng.choice(["a", "b"], 300, p=[0.5, 0.5])),
            pd.Series(rng.choice(["a", "b"], 300, p=[0.42, 0.58])),
        ),
    }
    for name, by_type in _registered_stat_tests.items():
        types = {kinds[t] for t in by_type if t in kinds}
        if not types:
            continue  # text-only tests
        theirs = next(iter(by_type.values()))
        ours = STAT_TESTS[name]
        assert (ours.display_name, ours.default_threshold) == (
            theirs.display_name,
            theirs.default_threshold,
        ), name
        assert ours.types == frozenset(types), name
        column_type = next(t for t in by_type if t in kinds)
        reference, current = samples[kinds[column_type]]
        score = theirs(reference, current, column_type, None).drift_score
        thresholds = [score]  # the boundary: is it <, <= (p-values) or >, >= (distances)?
        if name not in {"TVD", "empirical_mmd"}:  # slow permutation tests: boundary only
            thresholds += [score * 0.5 + 1e-9, min(score * 2, 0.999) + 1e-9]
        for threshold in thresholds:
            result = theirs(reference, current, column_type, threshold)
            assert result.drifted == is_drifted(result.drift_score, threshold, ours), (
                name,
                result.drift_score,
                threshold,
            )


# --------------------------------------------------------------------------- real reports


@pytest.fixture(scope="module")
def small_frames(catalogue):
    reference = generate_snapshot(catalogue, 800, "2026-01", 1, progress=False)
    current = generate_snapshot(catalogue, 600, "2026-02", 2, "income_inflation", progress=False)
    return reference, current


def test_p_value_report_agrees_with_evidently(schema, small_frames):
    """A reference of <= 1000 rows gets p-value tests: drift means a LOW score."""
    reference, current = small_frames
    config = _config(drift_share=0.2)
    _, report = evidently_report.run_drift_report(reference, current, schema, config)
    result = interpret_report(report, config, len(reference), len(current))
    methods = {c.column: c.method for c in result.columns}
    assert methods["age"] == "ks" and methods["channel"] == "chisquare"
    assert {c.column: c.drifted for c in result.columns} == _evidently_statuses(report)
    income = next(c for c in result.columns if c.column == "annual_income")
    assert income.drifted and income.score < income.threshold
    assert {"annual_income", "avg_basket_value"} <= set(result.drifted_columns)
    assert result.drift_share == len(result.drifted_columns) / 10
    assert result.dataset_drift and "annual_income" in result.reason
    assert result.enough_data and (result.n_reference, result.n_current) == (800, 600)


def test_configured_methods_agree_with_evidently(schema, small_frames):
    reference, current = small_frames
    config = _config(
        defaults={"numeric": {"method": "psi", "threshold": 0.15}},
        columns={
            "age": {"method": "mannw", "threshold": 0.2},
            "tenure_months": {"method": "wasserstein", "threshold": 0.02},
            "channel": {"method": "hellinger", "threshold": 0.05},
            "region": {"method": "chisquare", "threshold": 0.5},
        },
    )
    _, report = evidently_report.run_drift_report(reference, current, schema, config)
    result = interpret_report(report, config, len(reference), len(current))
    by_column = {c.column: c for c in result.columns}
    assert (by_column["age"].method, by_column["age"].threshold) == ("mannw", 0.2)
    assert (by_column["web_visits"].method, by_column["web_visits"].threshold) == ("psi", 0.15)
    assert by_column["region"].method == "chisquare" and by_column["channel"].method == "hellinger"
    assert {c.column: c.drifted for c in result.columns} == _evidently_statuses(report)
    assert by_column["annual_income"].drifted and by_column["annual_income"].score > 0.15
    assert by_column["tenure_months"].drifted  # a tight distance threshold catches noise


def test_distance_report_on_a_large_reference(catalogue, schema):
    """Above 1000 reference rows Evidently picks distances: drift means a HIGH score."""
    reference = generate_snapshot(catalogue, 3000, "2026-01", 3, progress=False)
    current = generate_snapshot(catalogue, 2000, "2026-02", 4, "channel_shift", progress=False)
    config = _config(drift_share=0.1)
    _, report = evidently_report.run_drift_report(reference, current, schema, config)
    result = interpret_report(report, config, len(reference), len(current))
    assert {c.method for c in result.columns} == {"wasserstein", "jensenshannon"}
    assert {c.column: c.drifted for c in result.columns} == _evidently_statuses(report)
    assert result.drifted_columns == ("channel",) and result.dataset_drift
    channel = result.columns[-2]
    assert channel.column == "channel" and channel.score >= channel.threshold


def test_too_little_current_data_is_never_drift(schema, small_frames):
    reference, current = small_frames
    config = _config(min_rows=700, reference_sample_rows=800)
    _, report = evidently_report.run_drift_report(reference, current, schema, config)
    result = interpret_report(report, config, len(reference), len(current))
    assert result.drifted_columns and not result.dataset_drift
    assert not result.enough_data and "700" in result.reason


def test_adapter_rejects_bad_frames(schema, small_frames):
    reference, current = small_frames
    config = _config()
    with pytest.raises(
        InvalidInputError, match=r"current data lacks the feature columns \['age'\]"
    ):
        evidently_report.run_drift_report(reference, current.drop(columns="age"), schema, config)
    with pytest.raises(InvalidInputError, match="reference data is empty"):
        evidently_report.run_drift_report(reference.iloc[:0], current, schema, config)


def test_unknown_method_falls_back_to_evidentlys_status():
    report = {
        "metrics": [
            {
                "config": {
                    "type": "evidently:metric_v2:ValueDrift",
                    "column": "x",
                    "method": "custom function 'mine'",
                    "threshold": 0.3,
                },
                "value": 0.9,
            }
        ],
        "tests": [
            {
                "metric_config": {
                    "params": {"type": "evidently:metric_v2:ValueDrift", "column": "x"}
                },
                "status": "FAIL",
            }
        ],
    }
    result = interpret_report(report, _config(), 1000, 1000)
    assert result.columns == (ColumnDrift("x", "custom function 'mine'", 0.9, 0.3, True),)
    del report["tests"]
    with pytest.raises(InvalidInputError, match="unknown drift method"):
        interpret_report(report, _config(), 1000, 1000)


@pytest.mark.parametrize("report", [{}, {"metrics": []}, {"metrics": [{"config": {}}]}])
def test_not_a_drift_report(report):
    with pytest.raises(InvalidInputError):
        interpret_report(report, _config(), 1000, 1000)


# --------------------------------------------------------------------------- serialisation


def test_result_round_trips_through_the_mage_boundary():
    """Blocks hand a DriftResult on as JSON (orchestration.blocks); NaN scores become null."""
    from persona.values import from_plain, to_plain

    result = DriftResult(
        n_reference=20_000,
        n_current=10_000,
        columns=(
            ColumnDrift("annual_income", "wasserstein", 0.46, 0.1, True),
            ColumnDrift("age", "ks", math.nan, 0.05, False),
        ),
        drift_share=0.5,
        dataset_drift=True,
        reason="1 of 2 columns drifted",
    )
    raw = json.loads(json.dumps(to_plain(result)))
    assert raw["columns"][1]["score"] is None
    back = from_plain(DriftResult, raw)
    assert back.columns[0] == result.columns[0] and math.isnan(back.columns[1].score)
    assert back.drifted_columns == ("annual_income",)
    skipped = DriftResult.insufficient(20_000, 12, "only 12 current rows")
    assert from_plain(DriftResult, json.loads(json.dumps(to_plain(skipped)))) == skipped
    assert skipped.drift_share is None and not skipped.dataset_drift and not skipped.enough_data


def test_a_column_row_names_the_history_table_columns_and_nan_is_null():
    raw = ColumnDrift("age", "ks", math.nan, 0.05, False).to_dict()
    assert raw == {
        "column_name": "age",
        "method": "ks",
        "score": None,
        "threshold": 0.05,
        "drifted": False,
    }


# --------------------------------------------------------------------------- adapter surface


def test_importing_the_adapter_does_not_import_evidently():
    code = (
        "import sys, persona.adapters.evidently_report, persona.monitoring.drift;"
        "sys.exit('evidently' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_ui_command_uses_the_cli_flags(tmp_path):
    command = evidently_report.ui_command(tmp_path / "ws", "127.0.0.1", 8123)
    workspace = str(tmp_path / "ws")
    assert command[-7:] == ["ui", "--workspace", workspace, "--host", "127.0.0.1", "--port", "8123"]


def test_reports_of_killed_runs_leave_the_ui_once_their_owner_is_gone(
    schema, small_frames, tmp_path
):
    """A report kept by a drift row stays; one whose row never came (or was abandoned) is an
    open run for reconciliation, closed by taking it out; one without owner is never touched."""
    reference, current = small_frames
    config = _config(drift_share=0.2)
    workspace = tmp_path / "workspace"
    by_killed = evidently_report.EvidentlyReports(workspace, "drift", owner="host:boot:41:7")
    by_hand = evidently_report.EvidentlyReports(workspace, "drift")
    for reports, name in ((by_killed, "drift-kept"), (by_killed, "drift-lost"), (by_hand, "x")):
        snapshot, _ = reports.run(reference.head(200), current.head(200), schema, config)
        reports.publish(snapshot, name)
    unlinked = evidently_report.UnlinkedReports(workspace, "drift", lambda: {"drift-kept"})

    [lost] = unlinked.open_runs()

    assert (lost.label, lost.owner, lost.kind) == (
        "drift-lost",
        "host:boot:41:7",
        "evidently_report",
    )
    assert lost.heartbeat is not None and lost.heartbeat.tzinfo is not None
    assert unlinked.close_run(lost.run_id, "owner process 41 is gone") is True
    assert unlinked.close_run(lost.run_id, "again") is False
    assert unlinked.open_runs() == []
    left = evidently_report._project(workspace, "drift", create=False)
    assert len(left[0].list_runs(left[1].id)) == 2  # the kept one and the one made by hand
    assert evidently_report.UnlinkedReports(tmp_path / "none", "drift", set).open_runs() == []
