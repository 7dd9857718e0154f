"""Monitoring, the application layer: reference -> current -> drift -> store -> retrain -> alert.

Like the training flow, each step takes a context of ports and values and returns a frozen
dataclass (or a DataFrame), so the Mage ``monitor`` pipeline can run them as separate blocks
and ``run_monitoring`` can chain them in one process (CLI, local stack, tests). The decision
the conditionals branch on is computed once, here, and stored with the run.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from persona.errors import ConfigurationError, ModelUnavailableError, PersonaError
from persona.flows import persona_mix, spark_drift, train
from persona.flows.monitor_request import (  # noqa: F401 - the flow's public values
    DATA_QUALITY_FAILED,
    DRIFT_NO_RETRAIN,
    INSUFFICIENT_DATA,
    NO_DRIFT,
    RETRAIN,
    Decision,
    MonitorRequest,
)
from persona.model.preprocess import prepare_features
from persona.monitoring import alerts
from persona.monitoring.drift import DriftConfig, DriftResult, feature_columns, interpret_report
from persona.monitoring.personas import PersonaMix
from persona.monitoring.quality import QualityResult, check_quality
from persona.monitoring.retrain_policy import PolicyVerdict, apply_policy
from persona.monitoring.rows import frame_from_scoring_log, training_rows
from persona.monitoring.sketch import FrameSketch
from persona.monitoring.sketch_drift import drift_from_sketches
from persona.monitoring.slow_drift import (
    MonthShifts,
    SlowDriftResult,
    consecutive_months,
    cusum,
    mean_shifts,
)
from persona.ports import DriftReports, DriftStore, Notifier
from persona.run_variables import SCORING_LOG

logger = logging.getLogger(__name__)

# A retrain can take long: its row's heartbeat is refreshed this often, so a run on another
# host is judged alive by it (persona.monitoring.owners: stale after an hour by default).
HEARTBEAT_SECONDS = 60.0


@dataclass(frozen=True)
class MonitorContext:
    """What the steps work with: the drift rules, the training context, and the ports."""

    config: DriftConfig
    training: train.TrainingContext
    notifier: Notifier
    drift_store: DriftStore
    reports: DriftReports
    workdir: Path  # local folder of references and HTML reports
    owner: str | None = None  # this process (persona.monitoring.owners.Owner), on its rows
    heartbeat_seconds: float = HEARTBEAT_SECONDS  # how often a long retrain says it lives
    sketcher: spark_drift.SparkSketcher | None = None  # engine=spark: runs the Spark job

    @property
    def alias(self) -> str:
        """The served alias: its model is the reference, a retrained winner may take it."""
        return self.training.alias

    @property
    def model_name(self) -> str:
        return self.training.registry.model_name

    def folder(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        return self.workdir


@dataclass(frozen=True)
class Reference:
    """The served model's reference sample, fetched to a local file."""

    path: str
    rows: int
    model_name: str
    model_version: str
    model_run_id: str | None


@dataclass(frozen=True)
class DriftCheck:
    result: DriftResult
    report_location: str | None
    report_url: str | None
    quality: QualityResult | None = None  # None: nothing to check (no current rows)
    shifts: dict[str, float] = field(default_factory=dict)  # numeric column -> mean shift (sd)
    personas: PersonaMix | None = None  # the persona mix and fit (None: not checked)
    sample_path: str | None = None  # engine=spark: the month's sample (what a retrain reads)


@dataclass(frozen=True)
class StoredDrift:
    """A drift check as stored in the history, with the decision the run branches on."""

    run_id: str
    decision: Decision
    check: DriftCheck
    data_window: str
    model_name: str
    model_version: str
    slow: SlowDriftResult = field(default_factory=SlowDriftResult)
    policy: PolicyVerdict | None = None  # what the retrain policy said on a drifted month

    @property
    def result(self) -> DriftResult:
        return self.check.result


@dataclass(frozen=True)
class Retrained:
    version: str
    alias: str
    promoted: bool
    reason: str
    n_rows: int
    failed: bool = False  # then ``reason`` says why; the run's row says ``failed`` too
    # champion/challenger on the current period's holdout, the reference guard, the rule
    challenger_score: float | None = None
    production_score: float | None = None
    reference_challenger_score: float | None = None
    reference_production_score: float | None = None
    rule: str = ""


@dataclass(frozen=True)
class AlertSummary:
    status: str
    decision: Decision
    attempts: int = 0


@dataclass(frozen=True)
class MonitorOutcome:
    """What one monitoring run did, as the CLI prints it."""

    run_id: str
    decision: Decision
    drift_share: float | None
    dataset_drift: bool
    report_location: str | None
    retrained: Retrained | None
    alert: AlertSummary
    detail: str | None = None  # why the run is not an all-clear (drifted columns, bad data)


def load_reference_step(context: MonitorContext) -> Reference:
    """The served model's own reference sample, fetched to a local file for the next step."""
    registry, name = context.training.registry, context.model_name
    production = registry.version_holding(context.alias)
    if production is None:
        raise ModelUnavailableError(
            f"no version of {name!r} holds @{context.alias}; run the train pipeline first"
        )
    folder = context.folder() / f"reference-v{production.version}"
    path = registry.download_artifact(production.run_id, train.REFERENCE_ARTIFACT, folder)
    rows = pq.ParquetFile(path).metadata.num_rows
    logger.info("reference: %d rows of %s v%s", rows, name, production.version)
    return Reference(str(path), rows, name, production.version, production.run_id)


def load_current_step(
    context: MonitorContext, request: MonitorRequest
) -> pd.DataFrame | spark_drift.SparkMonth:
    """The month as it came: its quality is checked, stored and alerted on by the next step.
    With engine=spark it stays where it is, for the Spark job of the next step."""
    if request.engine == "spark":
        return spark_drift.spark_month(request.data)
    if request.data.source == SCORING_LOG:
        customers = context.training.customers
        if customers is None:
            raise ConfigurationError("source=scoring_log needs the project database")
        frame = frame_from_scoring_log(customers.read_scored(request.days), context.training.schema)
        logger.info("current data: %d customers from the scoring log", len(frame))
        if frame.empty:
            return frame  # nothing scored lately: the drift check reports too little data
    else:
        frame = train.load_step(context.training, request.data, progress=False)
    return frame


def check_drift_step(
    context: MonitorContext,
    reference: Reference,
    current: pd.DataFrame | spark_drift.SparkMonth,
) -> DriftCheck:
    """Check the data's quality, then run the drift report, save it as HTML to the artifact
    store and the report UI. A month that fails its quality checks is not judged for drift.

    With engine=spark (a ``SparkMonth``) the verdicts come from the reference sketch and the
    month's sketch made by Spark; quality, report page and persona mix look at its sample."""
    config = context.config
    # Drift is on the model inputs, derived features computed from both frames' raw columns by
    # the model's own code. Both count days to one date (today's unless the schema fixes one):
    # a common shift of the date leaves every distance between the two distributions as it is.
    today = datetime.now(UTC).date()
    schema = context.training.schema.with_reference_date(today)
    inputs = schema.model_schema
    columns = feature_columns(inputs)
    sketches: tuple[FrameSketch, spark_drift.SketchedMonth] | None = None
    if isinstance(current, spark_drift.SparkMonth):
        sketches = spark_drift.sketch_month(
            context.sketcher,
            context.training.registry,
            reference,
            context.training.schema,
            current,
            context.folder(),
            today,
            config,
        )
        current = pd.read_parquet(sketches[1].sample_path)
    n_current = sketches[1].rows if sketches else len(current)
    reference_frame = pd.read_parquet(reference.path)
    n_reference = sketches[0].rows if sketches else len(reference_frame)
    enough = config.enough_data(n_current)
    sample_path = sketches[1].sample_path if sketches else None
    quality = None
    if len(current):
        quality = check_quality(current, reference_frame, context.training.schema, config.quality)
        if not quality.ok:
            logger.error("drift check skipped: %s", quality.reason)
            result = DriftResult.not_checked(n_reference, n_current, enough.ok, quality.reason)
            return DriftCheck(result, None, None, quality, sample_path=sample_path)
    if not enough.ok:
        result = DriftResult.insufficient(n_reference, n_current, enough.reason)
        logger.warning("drift check skipped: %s", enough.reason)
        return DriftCheck(result, None, None, quality, sample_path=sample_path)
    before = prepare_features(reference_frame, schema)[columns]
    after = prepare_features(current, schema)[columns]
    snapshot, report = context.reports.run(before, after, inputs, config)
    if sketches:
        current_sketch = FrameSketch.read(Path(sketches[1].sketch_path))
        result = drift_from_sketches(sketches[0], current_sketch, schema, config)
    else:
        result = interpret_report(report, config, n_reference, n_current)
    shifts = mean_shifts(before, after, [c for c in columns if c in inputs.numeric])
    mix = persona_mix.check_personas(
        context.training, reference.model_version, reference_frame, current, config.personas
    )
    # to the microsecond: two runs in the same second must not overwrite each other's pages
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    html = context.reports.save_html(snapshot, context.folder() / f"drift-{stamp}.html")
    if sketches:
        spark_drift.annotate_html(html, spark_drift.sample_note(sketches[1]))
    pages = [html]
    if mix is not None:
        pages += persona_mix.run_pages(
            mix,
            context.drift_store,
            reference.model_name,
            reference.model_version,
            context.folder(),
            stamp,
        )
    runs = context.reports.publish(snapshot, html.stem)  # the row's report_location names it
    tracker = context.training.tracker
    run_id, location = tracker.log_report_run(
        f"drift-{stamp}",
        {
            "model_version": reference.model_version,
            "n_current": n_current,
            **({"engine": "spark", "n_sample": len(current)} if sketches else {}),
        },
        {
            "drift_share": result.drift_share,
            "dataset_drift": float(result.dataset_drift),
            **({} if mix is None else {"persona_mix_score": mix.score}),
        },
        {"persona.stage": "monitoring"},
        pages,
        "drift",
    )
    logger.info(
        "drift share %.2f (threshold %.2f), dataset drift %s; %d run(s) in the Evidently UI",
        result.drift_share,
        config.drift_share,
        result.dataset_drift,
        runs,
    )
    return DriftCheck(
        result,
        f"{location}/{html.name}",
        tracker.run_url(run_id),
        quality,
        shifts=shifts,
        personas=mix,
        sample_path=sample_path,
    )


def decide(check: DriftCheck, request: MonitorRequest) -> Decision:
    """Drift in the columns, or in the persona mix and fit, is drift; broken data is not
    judged at all."""
    result, personas = check.result, check.personas
    if check.quality is not None and not check.quality.ok:
        return Decision.DATA_QUALITY_FAILED
    if not result.enough_data:
        return Decision.INSUFFICIENT_DATA
    if not result.dataset_drift and not (personas is not None and personas.drifted):
        return Decision.NO_DRIFT
    return Decision.RETRAIN if request.retrain else Decision.DRIFT_NO_RETRAIN


def judge_history(
    context: MonitorContext,
    reference: Reference,
    check: DriftCheck,
    request: MonitorRequest,
    decision: Decision,
) -> tuple[Decision, SlowDriftResult, PolicyVerdict | None]:
    """The month in the light of the earlier months of the same model version: the slow-drift
    CUSUM may turn an all-clear into drift, and the retrain policy may hold a retrain back."""
    config = context.config
    if decision not in (Decision.NO_DRIFT, Decision.RETRAIN, Decision.DRIFT_NO_RETRAIN):
        return decision, SlowDriftResult(enabled=config.slow_drift.enabled), None
    history = context.drift_store.previous_runs(reference.model_name, reference.model_version)
    months = consecutive_months(
        history, request.window, repeatable=request.data.source == SCORING_LOG
    )
    this_month = MonthShifts(check.shifts, check.result.n_current, check.result.n_reference)
    slow = cusum([*(m.month for m in months), this_month], config.slow_drift)
    if decision == Decision.NO_DRIFT and slow.flagged:
        decision = Decision.RETRAIN if request.retrain else Decision.DRIFT_NO_RETRAIN
    if decision != Decision.RETRAIN:
        return decision, slow, None
    verdict = apply_policy(config.retrain_policy, [*(m.drifted for m in months), True])
    logger.info("retrain policy: %s", verdict.rule)
    return (Decision.RETRAIN if verdict.retrain else Decision.DRIFT_HELD), slow, verdict


def store_step(
    context: MonitorContext,
    reference: Reference,
    check: DriftCheck,
    request: MonitorRequest,
) -> StoredDrift:
    """One history row per run and one per column; the decision the conditionals read."""
    result, decision = check.result, decide(check, request)
    decision, slow, policy = judge_history(context, reference, check, request, decision)
    mix = check.personas
    run = {
        "data_window": request.window,
        "model_name": reference.model_name,
        "model_version": reference.model_version,
        "n_reference": result.n_reference,
        "n_current": result.n_current,
        "drift_share": result.drift_share,
        "drift_share_threshold": context.config.drift_share,
        "dataset_drift": result.dataset_drift,
        "enough_data": result.enough_data,
        "report_location": check.report_location,
        "action": "retraining" if decision == Decision.RETRAIN else str(decision),
        "alert_status": "pending",
        "detail": "; ".join(r for r in (result.reason, slow.reason, mix and mix.reason) if r)
        or None,
        "slow_drift": slow.flagged if slow.columns else None,
        "retrain_rule": None if policy is None else policy.rule,
        "persona_drift": None if mix is None else mix.drifted,
        "owner": context.owner,
    }
    columns = [{**c.to_dict(), **slow.column_values(c.column)} for c in result.columns]
    quality = () if check.quality is None else [q.to_dict() for q in check.quality.checks]
    # a rerun of a month replaces its answer; a rolling scoring-log window is no month
    supersede = request.data.source != SCORING_LOG
    run_id = context.drift_store.record_run(run, columns, quality=quality, supersede=supersede)
    if mix is not None:
        context.drift_store.record_personas(run_id, persona_mix.stored_rows(mix))
    return StoredDrift(
        run_id,
        decision,
        check,
        request.window,
        reference.model_name,
        reference.model_version,
        slow,
        policy,
    )


def retrain_step(
    context: MonitorContext,
    drift: StoredDrift,
    reference: Reference,
    current: pd.DataFrame | spark_drift.SparkMonth,
) -> Retrained:
    """The training flow on reference + current rows; champion/challenger decides promotion.

    Whatever fails here leaves the run's row in a final state (``failed``, with the reason) and
    returns a failed ``Retrained``, so the alert step still runs and says so; a rerun of the
    month starts from the same stored data.
    """
    training = context.training
    if isinstance(current, spark_drift.SparkMonth):  # engine=spark: retrain on its sample
        current = pd.read_parquet(drift.check.sample_path)
    frame = training_rows(pd.read_parquet(reference.path), current, training.schema)
    # the month passed the quality checks, whose null limit (drift.yaml) may differ from the schema's
    schema = replace(
        training.schema, max_null_share=context.config.quality.null_limit(training.schema)
    )
    _update(context, drift.run_id)  # this process owns the row now (a Mage block may be new)
    try:
        with _heartbeat(context, drift.run_id):
            trained = train.train_on(
                training,
                train.validate_step(frame, schema),
                progress=False,
                current_keys=current[training.schema.key],
            )
    except Exception as exc:  # noqa: BLE001 - every failure must end the row, then be said
        if isinstance(exc, PersonaError):
            logger.error("retraining failed: %s", exc)
        else:
            logger.exception("retraining failed unexpectedly")
        reason = f"retraining failed: {str(exc) or type(exc).__name__}"
        _update(context, drift.run_id, action="failed", detail=reason[:2000])
        return Retrained("", "", False, reason, len(frame), failed=True)
    promoted = trained.alias == context.alias
    scores = {
        "challenger_score": trained.challenger_score,
        "production_score": trained.production_score,
        "reference_challenger_score": trained.reference_challenger_score,
        "reference_production_score": trained.reference_production_score,
    }
    _update(
        context,
        drift.run_id,
        action="retrained",
        new_model_version=trained.version,
        promoted=promoted,
        promotion_rule=trained.rule,
        promotion_reason=trained.reason[:2000],
        **scores,
    )
    logger.info(
        "retrained on %d rows: v%s %s",
        len(frame),
        trained.version,
        f"promoted to @{context.alias}" if promoted else f"kept as @{trained.alias}",
    )
    return Retrained(
        trained.version,
        trained.alias,
        promoted,
        trained.reason,
        len(frame),
        rule=trained.rule,
        **scores,
    )


def alert_step(
    context: MonitorContext,
    drift: StoredDrift,
    retrained: Retrained | None,
    request: MonitorRequest,
) -> AlertSummary:
    """Tell the team; an alert that cannot be sent is recorded, never a failed run."""
    decision, result = drift.decision, drift.result
    link = drift.check.report_url or drift.check.report_location
    if decision == Decision.DATA_QUALITY_FAILED:
        failures = drift.check.quality.failures if drift.check.quality else ()
        alert = alerts.data_quality_alert(
            model_name=drift.model_name,
            window=drift.data_window,
            n_current=result.n_current,
            failures=[(f.column, f.rule, f.share, f.threshold, f.examples) for f in failures],
        )
    elif decision == Decision.INSUFFICIENT_DATA:
        alert = alerts.insufficient_data_alert(
            model_name=drift.model_name,
            window=drift.data_window,
            n_current=result.n_current,
            min_rows=context.config.min_rows,
        )
    elif decision == Decision.NO_DRIFT:
        wanted = (
            context.config.all_clear_alert
            if request.all_clear_alert is None
            else request.all_clear_alert
        )
        if not wanted:
            _update(context, drift.run_id, alert_status="skipped")
            return AlertSummary("skipped", decision)
        alert = alerts.all_clear_alert(
            model_name=drift.model_name,
            window=drift.data_window,
            drift_share=result.drift_share,
            threshold=context.config.drift_share,
            report_link=link,
        )
    else:
        alert = alerts.drift_alert(
            model_name=drift.model_name,
            window=drift.data_window,
            drift_share=result.drift_share,
            threshold=context.config.drift_share,
            drifted_columns=[(c.column, c.method, c.score) for c in result.columns if c.drifted],
            new_version=None if retrained is None or retrained.failed else retrained.version,
            promoted=None if retrained is None or retrained.failed else retrained.promoted,
            promotion_note=_promotion_note(retrained),
            not_retrained_reason=_not_retrained_reason(drift, retrained),
            report_link=link,
            alias=context.alias,
            # what only the slow check saw: a column the month check flagged is listed above
            slow_drift=drift.slow.descriptions(besides=result.drifted_columns),
            personas=drift.check.personas,
        )
    outcome = context.notifier.send(alert)
    _update(context, drift.run_id, alert_status=outcome.status)
    return AlertSummary(outcome.status, decision, outcome.attempts)


def _update(context: MonitorContext, run_id: str, **values: Any) -> None:
    """A write to the run's row names the process writing it: in Mage a later block may run in
    another process than the one that stored the row."""
    owner = {} if context.owner is None else {"owner": context.owner}
    context.drift_store.update_run(run_id, **owner, **values)


@contextmanager
def _heartbeat(context: MonitorContext, run_id: str) -> Iterator[None]:
    """Refresh the row's heartbeat while a long step works (a thread; stops with the step)."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(context.heartbeat_seconds):
            try:
                _update(context, run_id)
            except PersonaError as exc:  # the step itself will meet the database's state
                logger.warning("heartbeat of drift run %s not written: %s", run_id, exc)

    thread = threading.Thread(target=beat, name=f"heartbeat-{run_id[:8]}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _not_retrained_reason(drift: StoredDrift, retrained: Retrained | None) -> str | None:
    """Why a drifted month has no new version: the policy held it, the run switched retraining
    off, or the retrain failed (then the month can be rerun). None: a version was trained."""
    if retrained is None:
        if drift.decision == Decision.DRIFT_HELD and drift.policy is not None:
            return drift.policy.rule
        return "retraining is switched off for this run"
    if retrained.failed:
        return (
            f"{retrained.reason}; the run is recorded as failed, rerun the month once this is fixed"
        )
    return None


def _promotion_note(retrained: Retrained | None) -> str | None:
    """Why the retrained version was (not) promoted: both pairs of scores, then the rule."""
    if retrained is None or retrained.failed or not retrained.rule:
        return None
    return f"{retrained.reason}; rule: {retrained.rule}"


def run_monitoring(context: MonitorContext, request: MonitorRequest) -> MonitorOutcome:
    """The whole monitor pipeline in one process, honouring the same branches as Mage's."""
    reference = load_reference_step(context)
    current = load_current_step(context, request)
    check = check_drift_step(context, reference, current)
    drift = store_step(context, reference, check, request)
    retrained = None
    if drift.decision == Decision.RETRAIN:
        retrained = retrain_step(context, drift, reference, current)
    alert = alert_step(context, drift, retrained, request)
    return MonitorOutcome(
        drift.run_id,
        drift.decision,
        drift.result.drift_share,
        drift.result.dataset_drift,
        drift.check.report_location,
        retrained,
        alert,
        drift.result.reason,
    )
