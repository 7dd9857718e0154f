"""The application layer on in-memory ports: training, promotion, monitoring, the Mage boundary.

No MLflow, database or Telegram: the flows see only the ports (``persona.ports``), so these
stand-ins are all they need. The real adapters are tested on real services under integration.
"""

from __future__ import annotations

import json
import math
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT
from marketing import SCHEMA_PATH, marketing_frame
from scipy.stats import wasserstein_distance

from persona.adapters import drift_store
from persona.data.catalogue import load_catalogue
from persona.data.generator import generate_snapshot
from persona.data.schema import load_schema
from persona.errors import UpstreamUnavailableError
from persona.flows import monitor, persona_mix, reconcile, train
from persona.model.params import load_params
from persona.model.pyfunc import PersonaModel, load_estimator
from persona.monitoring.drift import ColumnDrift, DriftResult, load_drift_config
from persona.monitoring.owners import Owner
from persona.monitoring.retrain_policy import RetrainPolicy
from persona.monitoring.rows import training_rows
from persona.monitoring.sketch import FrameSketch
from persona.monitoring.slow_drift import PastRun
from persona.ports import ModelVersion, OpenRun, Registration
from persona.values import from_plain, to_plain

pytestmark = pytest.mark.unit


class Loaded:
    """What ``Registry.load`` gives the flows: pyfunc-like predict and the Python model."""

    def __init__(self, python_model: PersonaModel) -> None:
        self.python_model = python_model

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        return self.python_model.predict(None, frame)

    def unwrap_python_model(self) -> PersonaModel:
        return self.python_model


@dataclass
class MemoryModels:
    """Registry and Tracker in dictionaries."""

    model_name: str = "personas"
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    models: dict[str, Loaded] = field(default_factory=dict)
    versions: dict[str, tuple[str, str]] = field(default_factory=dict)  # version -> (uri, run)
    aliases: dict[str, str] = field(default_factory=dict)
    renames: dict[int, str] = field(default_factory=dict)
    down: bool = False  # the tracking server does not answer: the preflight says so
    checks: int = 0

    def check(self) -> None:
        self.checks += 1
        if self.down:
            raise UpstreamUnavailableError("MLflow at memory:// did not answer (down)")

    def persona_names(self) -> dict[int, str]:
        return dict(self.renames)

    def _new_run(self, name: str) -> str:
        run_id = f"run{len(self.runs) + 1}"
        self.runs[run_id] = {"name": name, "params": {}, "metrics": {}, "tags": {}, "files": {}}
        return run_id

    def version_holding(self, alias: str) -> ModelVersion | None:
        version = self.aliases.get(alias)
        return None if version is None else ModelVersion(version, self.versions[version][1])

    def alias_uri(self, alias: str) -> str:
        return f"models:/{self.model_name}@{alias}"

    def load(self, model_uri: str) -> Loaded:
        if model_uri.startswith("models:/"):
            model_uri = self.versions[self.aliases[model_uri.rsplit("@", 1)[1]]][0]
        return self.models[model_uri]

    def register(self, model_uri, promote, reason, tags, *, alias) -> Registration:
        version = str(len(self.versions) + 1)
        self.versions[version] = (model_uri, model_uri.split("/")[1])
        moved = alias if promote else "challenger"
        previous = self.aliases.get(moved)
        self.aliases[moved] = version
        return Registration(self.model_name, version, moved, reason, previous if promote else None)

    def download_artifact(self, run_id: str, artifact_path: str, destination: Path) -> Path:
        return self.runs[run_id]["files"][artifact_path]

    @contextmanager
    def training_run(self, run_name, tags, params):
        run_id = self._new_run(run_name)
        self.runs[run_id]["tags"].update(tags)
        self.runs[run_id]["params"].update(params)
        yield run_id

    def log_candidate(self, name, params, metrics) -> str:
        run_id = self._new_run(name)
        self.runs[run_id]["metrics"].update(metrics)
        return run_id

    def log_to_run(self, run_id, *, params=None, metrics=None, tags=None, files=None, model=None):
        run = self.runs[run_id]
        run["params"].update(params or {})
        run["metrics"].update(metrics or {})
        run["tags"].update(tags or {})
        for folder, paths in (files or {}).items():
            for path in paths:
                run["files"][f"{folder}/{path.name}" if folder else path.name] = path
        if model is None:
            return None
        table = json.loads(Path(model.artifacts["personas"]).read_text())
        estimator = load_estimator(Path(model.artifacts["estimator"]))
        uri = f"runs:/{run_id}/model"
        self.models[uri] = Loaded(PersonaModel.from_parts(estimator, table))
        return uri

    def log_report_run(self, run_name, params, metrics, tags, files, artifact_path):
        run_id = self._new_run(run_name)
        return run_id, f"memory://{run_id}/{artifact_path}"

    def run_url(self, run_id: str) -> None:
        return None


@dataclass
class MemoryDriftStore:
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def record_run(self, run, columns, quality=(), *, supersede=False) -> str:
        run_id = f"drift{len(self.runs) + 1}"
        if supersede:  # as the real one: the month's earlier current answer is replaced
            for earlier in self.runs.values():
                same = (earlier["model_name"], earlier["data_window"]) == (
                    run["model_name"],
                    run["data_window"],
                )
                if same and earlier.get("superseded_by") is None:
                    earlier["superseded_by"] = run_id
        now = datetime.now(UTC)
        self.runs[run_id] = {
            **run,
            "checked_at": now,
            "heartbeat_at": now,
            "columns": list(columns),
            "quality": list(quality),
        }
        return run_id

    def update_run(self, run_id: str, **values: Any) -> None:
        unknown = set(values) - set(drift_store.drift_runs.columns.keys())
        assert not unknown, f"not columns of drift_runs: {sorted(unknown)}"  # as the real one
        self.runs[run_id].update({"heartbeat_at": datetime.now(UTC), **values})

    def _open(self, run: dict[str, Any]) -> bool:
        return run.get("abandoned_at") is None and (
            run["action"] == "retraining" or run["alert_status"] == "pending"
        )

    def open_runs(self) -> list[OpenRun]:
        return [
            OpenRun(
                "drift_run",
                run_id,
                run.get("owner"),
                run["heartbeat_at"],
                run["data_window"],
                f"action={run['action']}, alert_status={run['alert_status']}",
            )
            for run_id, run in self.runs.items()
            if self._open(run)
        ]

    def kept_report_names(self) -> set[str]:
        return {
            PurePosixPath(run["report_location"]).stem
            for run in self.runs.values()
            if run.get("abandoned_at") is None and run.get("report_location")
        }

    def abandon_run(self, run_id: str, at: datetime, reason: str) -> bool:
        run = self.runs[run_id]
        if not self._open(run):
            return False
        run.update(abandoned_at=at, abandoned_reason=reason)
        if run["action"] == "retraining":
            run["action"] = "abandoned"
        if run["alert_status"] == "pending":
            run["alert_status"] = "abandoned"
        return True

    def current(self) -> list[dict[str, Any]]:
        return [run for run in self.runs.values() if run.get("superseded_by") is None]

    def previous_runs(self, model_name: str, model_version: str) -> list[PastRun]:
        return [
            PastRun(
                run["data_window"],
                run["enough_data"],
                run["dataset_drift"],
                run.get("slow_drift"),
                {
                    c["column_name"]: c["mean_shift"]
                    for c in run["columns"]
                    if c.get("mean_shift") is not None
                },
                run["n_current"],
                run["n_reference"],
            )
            for run in self.current()
            if (run["model_name"], run["model_version"]) == (model_name, model_version)
            and run.get("drift_share") is not None  # judged for drift, as the real one reads
        ]

    def record_personas(self, run_id: str, rows) -> None:
        self.runs[run_id]["personas"] = list(rows)

    def persona_history(self, model_name: str, limit: int) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {**row, "run_id": run_id, "checked_at": f"2026-01-01T00:00:{index:02d}Z"}
                for index, (run_id, run) in enumerate(self.runs.items())
                if run["model_name"] == model_name and run.get("superseded_by") is None
                for row in run.get("personas", [])
            ]
        )


@dataclass(frozen=True)
class Sent:
    status: str = "sent"
    attempts: int = 1


@dataclass
class MemoryNotifier:
    alerts: list[Any] = field(default_factory=list)

    def send(self, alert: Any) -> Sent:
        self.alerts.append(alert)
        return Sent()


class NoReports:
    """Reports are never reached when there is too little data to check."""

    def run(self, *args):
        raise AssertionError("the drift report ran on too little data")

    save_html = publish = run


SCHEMA = load_schema(ROOT / "00_create_data/schema.yaml")
CATALOGUE = load_catalogue(ROOT / "00_create_data/personas.yaml")


@pytest.fixture()
def context(tmp_path) -> train.TrainingContext:
    params = load_params(ROOT / "tests/fixtures/params_fast.yaml")
    small = replace(
        params,
        candidates={"kmeans": {"k": [4, 5], "n_init": 1}},
        stability_resamples=2,
        stability_sample=500,
        silhouette_sample=500,
    )
    models = MemoryModels()
    return train.TrainingContext(
        schema=SCHEMA,
        params=small,
        catalogue=CATALOGUE,
        alias="live",
        registry=models,
        tracker=models,
        customers=None,
        workdir=tmp_path / "runs",
        reference_rows=1000,
    )


def _customers(rows: int, seed: int, month: str = "2026-01", scenario: str = "none"):
    return generate_snapshot(CATALOGUE, rows, month, seed, scenario, progress=False)


def test_training_promotes_to_the_configured_alias_then_keeps_a_worse_challenger(context):
    first = train.train_on(context, _customers(1500, 1))
    models = context.registry
    assert (first.version, first.alias, first.reason) == ("1", "live", "no model in production")
    run = models.runs[first.run_id]
    assert run["tags"]["persona.naming_reference"] == "catalogue"
    # the demo catalogue has no heavy tails nor signal-free columns: the plan changes nothing
    assert (run["params"]["plan.log1p"], run["params"]["plan.left_out"]) == ("-", "-")
    assert {"profile/persona_profile.png", "reference/reference.parquet"} <= set(run["files"])
    # the Spark drift engine's reference: the whole training split, not the sample
    sketch = FrameSketch.read(run["files"]["reference/reference_sketch.json"])
    sample = pd.read_parquet(run["files"]["reference/reference.parquet"])
    assert sketch.rows >= len(sample) and sketch.rows > 1000
    assert set(sketch.numeric) == set(context.schema.numeric)
    assert set(first.personas) <= set(CATALOGUE.names)  # catalogue matches keep their names
    page = run["files"]["profile/persona_profile.html"].read_text("utf-8")
    assert "What sets each persona apart" in page and first.personas[0] in page
    assert run["metrics"]["holdout_challenger_score"] == first.challenger_score

    always_lose = replace(context.params, promotion_margin=10.0)
    second = train.train_on(replace(context, params=always_lose), _customers(1500, 2))
    assert (second.version, second.alias) == ("2", "challenger")
    assert second.production_score is not None and models.aliases["live"] == "1"
    assert models.runs[second.run_id]["tags"]["persona.naming_reference"] == "@live v1"


def test_a_down_tracking_server_stops_training_before_the_search(context, monkeypatch):
    """The preflight: nothing is searched, logged or registered when MLflow does not answer,
    neither on the one-process path nor in the Mage search block (search_step alone)."""
    models = context.registry
    models.down = True
    searched = []
    monkeypatch.setattr(train, "run_search", lambda *a, **k: searched.append(1))
    with pytest.raises(UpstreamUnavailableError, match="did not answer"):
        train.train_on(context, _customers(600, 1))
    split = train.split_step(context, _customers(600, 1))
    with pytest.raises(UpstreamUnavailableError, match="did not answer"):
        train.search_step(context, split)
    assert (searched, models.runs, models.versions) == ([], {}, {})
    assert models.checks == 2


def test_a_name_a_person_gave_is_kept_by_the_next_retrain(context):
    """`persona personas rename` tags the registered model; the retrain names the persona it
    matches after that name, so the new version serves it without the tag too."""
    first = train.train_on(context, _customers(1500, 1))
    models = context.registry
    personas = models.load(models.alias_uri("live")).unwrap_python_model().personas
    renamed = min(p.persona_id for p in personas.values())
    models.renames[renamed] = "Affluent wine lovers"

    always_win = replace(context.params, promotion_margin=-10.0)
    second = train.train_on(replace(context, params=always_win), _customers(1500, 2))
    assert (first.version, second.version, models.aliases["live"]) == ("1", "2", "2")
    retrained = models.load(models.alias_uri("live")).unwrap_python_model().personas
    names = {p.persona_id: p.name for p in retrained.values()}
    assert names[renamed] == "Affluent wine lovers"
    assert sorted(names.values()).count("Affluent wine lovers") == 1


def test_table_source_without_a_database_names_the_setting(context):
    with pytest.raises(Exception, match="PERSONA_DATABASE_URL"):
        train.load_step(context, train.DataRequest(source="table"))


def test_step_values_cross_the_mage_boundary_as_json_and_back(context):
    frame = _customers(1500, 3)
    split = train.split_step(context, frame)
    search = train.search_step(context, split, progress=False)
    stored = json.loads(json.dumps(to_plain(search)))
    assert from_plain(train.SearchOutcome, stored) == search
    selection = train.select_step(context, search, split, None)
    assert from_plain(train.Selection, json.loads(json.dumps(to_plain(selection)))) == selection


def test_monitoring_on_too_little_data_stores_why_and_alerts_without_retraining(context, tmp_path):
    trained = train.train_on(context, _customers(1500, 4))
    store, notifier = MemoryDriftStore(), MemoryNotifier()
    config = replace(load_drift_config(ROOT / "04_monitoring/drift.yaml"), min_rows=1000)
    watching = monitor.MonitorContext(
        config=config,
        training=context,
        notifier=notifier,
        drift_store=store,
        reports=NoReports(),
        workdir=tmp_path / "monitoring",
    )
    request = monitor.MonitorRequest.from_variables({"source": "synthetic", "rows": 200})
    outcome = monitor.run_monitoring(watching, request)
    assert outcome.decision == monitor.Decision.INSUFFICIENT_DATA and outcome.retrained is None
    (run,) = store.runs.values()
    assert run["model_version"] == trained.version and run["action"] == "insufficient_data"
    assert run["alert_status"] == "sent" and len(notifier.alerts) == 1
    assert "200" in notifier.alerts[0].text


def test_a_stored_drift_check_round_trips_with_nan_scores():
    result = DriftResult(
        1000,
        900,
        (ColumnDrift("age", "wasserstein", math.nan, 0.1, False),),
        0.0,
        False,
    )
    stored = monitor.StoredDrift(
        "drift1", monitor.Decision.NO_DRIFT, monitor.DriftCheck(result, None, None), "w", "m", "1"
    )
    back = from_plain(monitor.StoredDrift, json.loads(json.dumps(to_plain(stored))))
    assert back.decision is monitor.Decision.NO_DRIFT
    assert math.isnan(back.result.columns[0].score) and back.result.columns[0].column == "age"


# ------------------------------------------------------- raw columns in, derived features as inputs


class DistanceReports:
    """A stand-in for Evidently: each column's normed Wasserstein distance (numeric columns),
    in the snapshot-dict shape ``interpret_report`` reads. Records what it was given."""

    def __init__(self) -> None:
        self.given: list[tuple[list[str], Any]] = []

    def run(self, reference, current, schema, config):
        self.given.append((list(reference.columns), schema))
        metrics = []
        for column in reference.columns:
            if column in schema.numeric:
                before, after = reference[column].dropna(), current[column].dropna()
                score = wasserstein_distance(before, after) / (before.std() or 1.0)
                method = "wasserstein"
            else:
                score, method = 0.0, "hellinger"
            config_ = {"type": "evidently:metric_v2:ValueDrift", "column": column}
            metrics.append({"config": {**config_, "method": method}, "value": score})
        return None, {"metrics": metrics, "tests": []}

    def save_html(self, snapshot, path: Path) -> Path:
        path.write_text("<html></html>")
        return path

    def publish(self, snapshot, name: str) -> int:
        return 1


def test_training_and_monitoring_on_raw_marketing_columns(context, tmp_path):
    """A marketing export (Dt_Customer as dd-mm-yyyy text) trains a model whose inputs are the
    derived age, tenure_days, total_spend and log_income; the model takes the raw columns, and
    drift is checked on its inputs."""
    schema = load_schema(SCHEMA_PATH)  # no reference date: the training date is frozen
    marketing = replace(context, schema=schema, catalogue=None)
    frame = train.validate_step(marketing_frame(1500, 1, missing_income=30), schema)
    split = train.split_step(marketing, frame)
    before = datetime.now(UTC).date().isoformat()
    search = train.search_step(marketing, split, progress=False)
    assert search.reference_date in {before, datetime.now(UTC).date().isoformat()}
    assert from_plain(train.SearchOutcome, json.loads(json.dumps(to_plain(search)))) == search
    selection = train.select_step(marketing, search, split, None)
    registered = train.register_step(marketing, selection, split, None)
    assert registered.registration.alias == "live"

    models = marketing.registry
    model = models.load(selection.model_uri).unwrap_python_model()
    inputs = ["Kidhome", "age", "tenure_days", "total_spend", "log_income", "Education"]
    assert model.features == inputs and model.inputs == schema.features
    assert model.derived.reference_date.isoformat() == search.reference_date
    run = models.runs[search.run_id]
    assert run["tags"]["persona.reference_date"] == search.reference_date
    profile = pd.read_csv(run["files"]["profile/persona_profile.csv"])
    assert {"age", "tenure_days", "total_spend"} <= set(profile.columns)
    assert "Year_Birth" not in profile.columns
    stored = pd.read_parquet(run["files"]["reference/reference.parquet"])
    assert {"Year_Birth", "Dt_Customer"} <= set(stored.columns) and "age" not in stored.columns
    sketch = FrameSketch.read(run["files"]["reference/reference_sketch.json"])
    assert "age" in sketch.numeric and sketch.reference_date == search.reference_date
    assert stored["Dt_Customer"].str.fullmatch(r"\d\d-\d\d-\d{4}").all()
    scored = model.predict(None, split.holdout[schema.features])
    assert scored["persona_name"].notna().all() and len(scored) == len(split.holdout)

    reports = DistanceReports()
    watching = monitor.MonitorContext(
        config=replace(load_drift_config(ROOT / "04_monitoring/drift.yaml"), min_rows=500),
        training=marketing,
        notifier=MemoryNotifier(),
        drift_store=MemoryDriftStore(),
        reports=reports,
        workdir=tmp_path / "monitoring",
    )
    reference = monitor.load_reference_step(watching)
    older = marketing_frame(1500, 1, month="2026-02", born_shift=-15)  # the same people, older
    check = monitor.check_drift_step(watching, reference, older)
    assert [c.column for c in check.result.columns] == inputs
    assert reports.given[0][0] == inputs and "age" in reports.given[0][1].numeric
    drifted = {c.column for c in check.result.columns if c.drifted}
    assert drifted == {"age"}


def test_retrain_rows_hold_each_customer_month_once_and_the_current_row_wins():
    schema = SCHEMA
    reference = _customers(30, 1, "2026-02")
    current = _customers(20, 2, "2026-03")
    overlap = reference.head(10).assign(annual_income=123_456.0)  # a month trained on already
    rows = training_rows(reference, pd.concat([overlap, current]), schema)
    assert len(rows) == 30 + 20 and not rows.duplicated(schema.key).any()
    again = rows.set_index(schema.key).loc[list(overlap.set_index(schema.key).index)]
    assert (again["annual_income"] == 123_456.0).all()


def test_a_failed_retrain_ends_the_run_failed_and_the_alert_says_so(context, tmp_path):
    trained = train.train_on(context, _customers(1500, 4))
    models = context.registry
    store, notifier = MemoryDriftStore(), MemoryNotifier()

    def registry_down(*args, **kwargs):
        raise UpstreamUnavailableError("MLflow at http://registry did not answer")

    models.register = registry_down
    watching = monitor.MonitorContext(
        config=load_drift_config(ROOT / "04_monitoring/drift.yaml"),
        training=context,
        notifier=notifier,
        drift_store=store,
        reports=NoReports(),
        workdir=tmp_path / "monitoring",
    )
    reference = monitor.load_reference_step(watching)
    result = DriftResult(
        1500, 1000, (ColumnDrift("age", "wasserstein", 0.4, 0.1, True),), 1.0, True
    )
    check = monitor.DriftCheck(result, None, None)
    request = monitor.MonitorRequest.from_variables({"source": "synthetic", "month": "2026-03"})
    drift = monitor.store_step(watching, reference, check, request)
    retrained = monitor.retrain_step(watching, drift, reference, _customers(1000, 5, "2026-03"))
    assert retrained.failed and "did not answer" in retrained.reason
    (run,) = store.runs.values()
    assert run["action"] == "failed" and "retraining failed" in run["detail"]
    summary = monitor.alert_step(watching, drift, retrained, request)
    assert summary.status == "sent" and run["alert_status"] == "sent"
    assert "retraining failed" in notifier.alerts[0].text and "rerun" in notifier.alerts[0].text
    assert models.aliases["live"] == trained.version  # nothing moved


def test_a_retrain_records_the_current_and_reference_holdout_scores_and_the_rule(context, tmp_path):
    """The decision of a retrain is taken on the drifted month's held-out customers; its two
    pairs of scores and the rule reach the run's row, the result and the alert."""
    trained = train.train_on(context, _customers(1500, 6, "2026-01"))
    store, notifier = MemoryDriftStore(), MemoryNotifier()
    watching = monitor.MonitorContext(
        config=load_drift_config(ROOT / "04_monitoring/drift.yaml"),
        training=context,
        notifier=notifier,
        drift_store=store,
        reports=NoReports(),
        workdir=tmp_path / "monitoring",
    )
    reference = monitor.load_reference_step(watching)
    result = DriftResult(
        1200, 1500, (ColumnDrift("age", "wasserstein", 0.4, 0.1, True),), 1.0, True
    )
    request = monitor.MonitorRequest.from_variables({"source": "synthetic", "month": "2026-03"})
    drift = monitor.store_step(watching, reference, monitor.DriftCheck(result, None, None), request)
    current = _customers(1500, 6, "2026-03", "new_persona")
    retrained = monitor.retrain_step(watching, drift, reference, current)
    assert not retrained.failed and retrained.version == "2"
    assert retrained.reason.startswith("current holdout: challenger silhouette ")
    assert "reference holdout: challenger" in retrained.reason
    assert retrained.rule.endswith("on the reference holdout")
    (run,) = store.runs.values()
    for name in ("challenger_score", "production_score", "reference_challenger_score"):
        assert run[name] == getattr(retrained, name) and not math.isnan(run[name])
    assert run["promotion_rule"] == retrained.rule and run["promoted"] == retrained.promoted
    assert run["new_model_version"] == "2" and run["action"] == "retrained"
    tags = context.registry.runs[context.registry.versions["2"][1]]
    assert tags["metrics"]["holdout_reference_production_score"] == pytest.approx(
        retrained.reference_production_score
    )
    monitor.alert_step(watching, drift, retrained, request)
    text = notifier.alerts[0].text
    assert f"{retrained.challenger_score:.4f}" in text and "rule: silhouette" in text
    assert context.registry.aliases["live"] == ("2" if retrained.promoted else trained.version)


def test_a_month_of_bad_data_ends_stored_and_alerted_as_data_quality_failed(context, tmp_path):
    """Unseen levels, missing values and duplicate ids: each a named result, never a crash."""
    trained = train.train_on(context, _customers(1500, 4))
    store, notifier = MemoryDriftStore(), MemoryNotifier()
    watching = monitor.MonitorContext(
        config=load_drift_config(ROOT / "04_monitoring/drift.yaml"),
        training=context,
        notifier=notifier,
        drift_store=store,
        reports=NoReports(),  # drift is never judged on broken data
        workdir=tmp_path / "monitoring",
    )
    request = monitor.MonitorRequest.from_variables({"source": "synthetic", "month": "2026-03"})
    reference = monitor.load_reference_step(watching)
    month = _customers(1200, 5, "2026-03")
    month.loc[month.index[:60], "channel"] = "tiktok"
    month.loc[month.index[100:460], "annual_income"] = np.nan
    month = pd.concat([month, month.tail(30)], ignore_index=True)

    check = monitor.check_drift_step(watching, reference, month)
    drift = monitor.store_step(watching, reference, check, request)
    assert drift.decision == monitor.DATA_QUALITY_FAILED
    summary = monitor.alert_step(watching, drift, None, request)

    (run,) = store.runs.values()
    assert run["action"] == "data_quality_failed" and run["alert_status"] == "sent"
    assert run["model_version"] == trained.version and not run["dataset_drift"]
    failed = {(q["column_name"], q["rule"]): q for q in run["quality"] if q["failed"]}
    assert {column for column, _ in failed} == {
        "channel",
        "annual_income",
        "customer_id, snapshot_month",
    }
    assert failed[("annual_income", "null share")]["share"] == pytest.approx(360 / 1230)
    assert failed[("customer_id, snapshot_month", "unique key (duplicate rows)")]["n_rows"] == 60
    text = notifier.alerts[0].text
    assert summary.status == "sent" and "Data quality failed" in text
    assert "channel" in text and "annual_income" in text and "tiktok" in text
    assert list(context.registry.versions) == [trained.version]  # nothing retrained


# ------------------------------------------------ slow drift and the retrain policy across runs


def test_slow_drift_builds_across_runs_and_the_policy_holds_a_retrain(context, tmp_path):
    store, notifier = MemoryDriftStore(), MemoryNotifier()
    config = replace(
        load_drift_config(ROOT / "04_monitoring/drift.yaml"),
        retrain_policy=RetrainPolicy(drifted_months=2, of_last_months=3),
    )
    watching = monitor.MonitorContext(
        config, context, notifier, store, NoReports(), tmp_path / "monitoring"
    )

    def month(name, shift, drifted=False, version="1", retrain=True):
        column = ColumnDrift("annual_income", "wasserstein", 0.2 if drifted else 0.02, 0.1, drifted)
        result = DriftResult(20_000, 10_000, (column,), float(drifted), drifted)
        check = monitor.DriftCheck(result, None, None, shifts={"annual_income": shift})
        reference = monitor.Reference("unused.parquet", 20_000, "personas", version, None)
        variables = {"source": "synthetic", "month": name, "retrain": retrain}
        request = monitor.MonitorRequest.from_variables(variables)
        drift = monitor.store_step(watching, reference, check, request)
        if drift.decision != monitor.Decision.RETRAIN:
            monitor.alert_step(watching, drift, None, request)
        return drift, store.runs[drift.run_id]

    for name in ("2027-01", "2027-02"):
        assert month(name, 0.0)[0].decision == monitor.Decision.NO_DRIFT
    held, run = month("2027-03", 0.0, drifted=True)
    rule = "1 of the last 3 months drifted, the policy needs 2"
    assert held.decision == monitor.Decision.DRIFT_HELD and held.policy.rule == rule
    assert run["action"] == "drift_held" and run["retrain_rule"] == rule
    assert f"not retrained: {rule}" in notifier.alerts[-1].text
    assert from_plain(monitor.StoredDrift, json.loads(json.dumps(to_plain(held)))) == held

    assert month("2027-04", 0.04)[0].decision == monitor.Decision.NO_DRIFT  # within the limit
    slow, run = month("2027-05", 0.04)  # the second 0.04 sd month passes it
    assert slow.decision == monitor.Decision.RETRAIN and slow.policy.drifted == 2
    assert run["slow_drift"] and not run["dataset_drift"]
    assert "slow drift: annual_income: cumulative shift +0.08 sd over 2 months" in run["detail"]
    (stored,) = run["columns"]
    assert stored["mean_shift"] == 0.04 and stored["cumulative_shift"] > config.slow_drift.limit

    # A new model version has a new reference: its months start from nothing.
    assert month("2027-06", 0.04, version="2")[0].decision == monitor.Decision.NO_DRIFT
    again, _ = month("2027-07", 0.04, version="2", retrain=False)
    assert again.decision == monitor.Decision.DRIFT_NO_RETRAIN
    assert "annual_income: cumulative shift +0.08 sd over 2 months" in notifier.alerts[-1].text


# ------------------------------------------------------------------------ persona monitoring


def test_a_shifted_persona_mix_is_drift_stored_per_persona_named_and_drawn(context, tmp_path):
    """A fresh month, then mix_shift: each run stores a row per served persona, the shifted
    month's persona drift is recorded and named in the alert, the run's persona page is
    written beside the drift report, and the trend report draws both months."""
    train.train_on(context, _customers(3000, 1), progress=False)
    store, notifier = MemoryDriftStore(), MemoryNotifier()
    watching = monitor.MonitorContext(
        config=replace(load_drift_config(ROOT / "04_monitoring/drift.yaml"), min_rows=500),
        training=context,
        notifier=notifier,
        drift_store=store,
        reports=DistanceReports(),
        workdir=tmp_path / "monitoring",
    )
    months = {"2026-02": "none", "2026-03": "mix_shift"}
    outcomes = {}
    for month, scenario in months.items():
        request = monitor.MonitorRequest.from_variables(
            {
                "source": "synthetic",
                "month": month,
                "rows": 2000,
                "seed": 5,
                "scenario": scenario,
                "retrain": "false",
            }
        )
        outcomes[month] = monitor.run_monitoring(watching, request)
    assert outcomes["2026-02"].decision == monitor.NO_DRIFT
    assert outcomes["2026-03"].decision == monitor.DRIFT_NO_RETRAIN
    fresh, shifted = store.runs.values()
    assert fresh["persona_drift"] is False and shifted["persona_drift"] is True
    assert "persona mix moved" in shifted["detail"]
    served = context.registry.load(context.registry.alias_uri("live")).unwrap_python_model()
    ids = {p.persona_id for p in served.personas.values()}
    for run in (fresh, shifted):
        assert {row["persona_id"] for row in run["personas"]} == ids
        assert {row["period"] for row in run["personas"]} == {run["data_window"].split()[0]}
    moved = [row for row in shifted["personas"] if row["flagged"]]
    assert moved and all(abs(row["share_change"]) > 0.05 for row in moved)
    text = notifier.alerts[-1].text
    assert "<b>Personas (" in text
    assert all(f"<b>{row['persona_name']}</b>" in text for row in moved)
    written = sorted((tmp_path / "monitoring").iterdir(), key=lambda p: p.stat().st_mtime)
    assert any(p.name.startswith("personas-") for p in written)
    chart = [p for p in written if p.name.startswith("persona-trend-")][-1].read_text()
    assert "2026-02" in chart and "2026-03" in chart  # the history, and the run being checked

    page = persona_mix.write_trend_report(store, "personas", tmp_path / "trend.html")
    text = page.read_text()
    assert "2026-02" in text and "2026-03" in text and moved[0]["persona_name"] in text


# ------------------------------------------------- one current answer per month, reconciliation

DEAD = "worker-1:boot-a:4242:1000"  # the probe below says this process is gone
LIVE = "worker-1:boot-a:4343:2000"


def _judge() -> reconcile.Judge:
    here = Owner("worker-1", "boot-a", 99, 3000)
    return reconcile.Judge(here, lambda owner: owner.pid == 4343)


@dataclass
class MemoryTrackerRuns:
    """MLflow's RUNNING runs, as the reconciliation sees them."""

    runs: dict[str, OpenRun]
    killed: dict[str, str] = field(default_factory=dict)

    def open_runs(self) -> list[OpenRun]:
        return [run for run_id, run in self.runs.items() if run_id not in self.killed]

    def close_run(self, run_id: str, reason: str) -> bool:
        self.killed[run_id] = reason
        return True


def _left_open(store: MemoryDriftStore, owner: str, window: str = "2026-02") -> str:
    """A row as a run killed in retrain_on_drift leaves it."""
    return store.record_run(
        {
            "data_window": window,
            "model_name": "personas",
            "model_version": "1",
            "action": "retraining",
            "alert_status": "pending",
            "owner": owner,
            "drift_share": 0.5,
        },
        [],
        supersede=True,
    )


def test_a_run_left_retraining_by_a_dead_owner_is_abandoned_with_when_and_why():
    store = MemoryDriftStore()
    dead, live = _left_open(store, DEAD), _left_open(store, LIVE, window="2026-03")
    tracker = MemoryTrackerRuns(
        {
            "m1": OpenRun("mlflow_run", "m1", DEAD, None, "personas/train-x", "RUNNING"),
            "m2": OpenRun("mlflow_run", "m2", LIVE, None, "personas/train-y", "RUNNING"),
        }
    )
    now = datetime(2026, 3, 1, tzinfo=UTC)
    result = reconcile.reconcile(_judge(), store, [tracker], now=now)
    assert [(c.kind, c.run_id) for c in result.closed] == [
        ("drift_run", dead),
        ("mlflow_run", "m1"),
    ]
    assert result.still_open == 2 and "4242" in result.closed[0].reason
    row = store.runs[dead]
    assert (row["action"], row["alert_status"]) == ("abandoned", "abandoned")
    assert row["abandoned_at"] == now and "gone" in row["abandoned_reason"]
    assert store.runs[live]["action"] == "retraining" and set(tracker.killed) == {"m1"}
    # the printed result is plain data; a second pass finds nothing more to close
    assert from_plain(reconcile.Reconciliation, to_plain(result)) == result
    assert reconcile.reconcile(_judge(), store, [tracker], now=now).closed == ()


def test_a_rerun_of_a_month_supersedes_the_killed_run_and_readers_see_one_answer(context, tmp_path):
    trained = train.train_on(context, _customers(1500, 4))
    store = MemoryDriftStore()
    killed = _left_open(store, DEAD, window="2026-01 (synthetic, none)")
    store.runs[killed]["model_name"] = context.registry.model_name
    config = replace(load_drift_config(ROOT / "04_monitoring/drift.yaml"), min_rows=1000)
    watching = monitor.MonitorContext(
        config=config,
        training=context,
        notifier=MemoryNotifier(),
        drift_store=store,
        reports=NoReports(),
        workdir=tmp_path / "monitoring",
        owner=LIVE,
    )
    request = monitor.MonitorRequest.from_variables({"source": "synthetic", "rows": 200})
    assert request.window == "2026-01 (synthetic, none)"
    outcome = monitor.run_monitoring(watching, request)
    assert store.runs[killed]["superseded_by"] == outcome.run_id
    (current,) = store.current()
    assert current["model_version"] == trained.version and current["owner"] == LIVE
    assert current["alert_status"] == "sent"
    # superseded, the killed run is still closed as abandoned: its history stays readable
    closed = reconcile.reconcile(_judge(), store).closed
    assert [c.run_id for c in closed] == [killed]


def test_a_long_step_keeps_its_rows_heartbeat_fresh_and_stops_with_it(context, tmp_path):
    store = MemoryDriftStore()
    run_id = _left_open(store, DEAD)
    watching = monitor.MonitorContext(
        config=load_drift_config(ROOT / "04_monitoring/drift.yaml"),
        training=context,
        notifier=MemoryNotifier(),
        drift_store=store,
        reports=NoReports(),
        workdir=tmp_path / "monitoring",
        owner=LIVE,
        heartbeat_seconds=0.01,
    )
    stored_at = store.runs[run_id]["heartbeat_at"]
    with monitor._heartbeat(watching, run_id):
        deadline = time.monotonic() + 60
        while store.runs[run_id]["heartbeat_at"] == stored_at and time.monotonic() < deadline:
            time.sleep(0.01)  # polling the condition
    beat = store.runs[run_id]["heartbeat_at"]
    assert beat > stored_at and store.runs[run_id]["owner"] == LIVE  # the writer now
    assert not any(t.name.startswith("heartbeat-") for t in threading.enumerate())
