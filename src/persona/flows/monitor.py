"""Monitoring steps: reference -> current -> drift report -> store -> retrain or not -> alert.

Like the training flow, each step takes plain inputs and returns a JSON-able dict (or a
DataFrame), so the Mage ``monitor`` pipeline can run them as separate blocks and
``run_monitoring`` can chain them in one process (CLI, local stack, tests). The decision the
conditionals branch on is computed once, here, and stored with the run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from persona.adapters import drift_store, evidently_report, mlflow_registry, scoring_log
from persona.adapters.database import make_engine
from persona.adapters.telegram import TelegramNotifier
from persona.data.months import previous_month
from persona.data.validation import require_valid
from persona.errors import ConfigurationError, ModelUnavailableError
from persona.flags import parse_bool
from persona.flows import train
from persona.monitoring import alerts
from persona.monitoring.drift import DriftConfig, DriftResult, feature_columns, load_drift_config
from persona.run_variables import DEFAULT_MONTH, MONITOR_DEFAULTS
from persona.settings import Settings

logger = logging.getLogger(__name__)

RETRAIN = "retrain"  # drift found and retraining enabled
DRIFT_NO_RETRAIN = "drift_no_retrain"  # drift found, retraining switched off for this run
NO_DRIFT = "no_drift"
INSUFFICIENT_DATA = "insufficient_data"
SCORING_LOG = "scoring_log"  # current data = what the scoring service scored lately


@dataclass(frozen=True)
class MonitorRequest:
    """Which current data to check and what the run may do (the pipeline's run variables)."""

    data: train.DataRequest
    retrain: bool = MONITOR_DEFAULTS["retrain"]
    all_clear_alert: bool | None = None  # None = the drift config decides
    days: float = MONITOR_DEFAULTS["days"]  # window of the scoring log (source=scoring_log)

    @classmethod
    def from_variables(
        cls, variables: dict[str, Any], today: datetime | None = None
    ) -> MonitorRequest:
        defaults = {**MONITOR_DEFAULTS, **variables}
        if str(defaults.get("month", "")).strip().lower() == "previous":  # the monthly schedule
            defaults["month"] = previous_month(today or datetime.now(UTC))
        from_log = defaults.get("source") == SCORING_LOG
        if from_log:
            defaults["source"] = "table"  # validated as a table request, then marked as the log
        data = train.DataRequest.from_variables(defaults)
        if from_log:
            data = replace(data, source=SCORING_LOG, months=())
        elif data.source == "table" and not data.months:
            raise ConfigurationError("monitor needs the variable 'month' (YYYY-MM) for a table")
        return cls(
            data=data,
            retrain=train.run_flag(variables, "retrain", MONITOR_DEFAULTS["retrain"]),
            all_clear_alert=parse_bool(  # absent: the drift config decides
                variables.get("all_clear_alert"), "run variable 'all_clear_alert'"
            ),
            days=_days(variables.get("days")),
        )

    @property
    def window(self) -> str:
        """How the data window is named in the history, the report and the alert."""
        if self.data.source == SCORING_LOG:
            return f"scoring log, last {self.days:g} days"
        if self.data.source == "file" and self.data.path:
            label = Path(self.data.path).name
            return f"{label} [{','.join(self.data.months)}]" if self.data.months else label
        months = ",".join(self.data.months) or DEFAULT_MONTH
        suffix = f" (synthetic, {self.data.scenario})" if self.data.source == "synthetic" else ""
        return months + suffix


def _days(value: Any) -> float:
    if value in (None, ""):
        return float(MONITOR_DEFAULTS["days"])
    try:
        days = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"days must be a number of days, got {value!r}") from None
    if days <= 0:
        raise ConfigurationError(f"days must be positive, got {value!r}")
    return days


@dataclass(frozen=True)
class MonitorContext:
    """What the steps need, built once by an entry point; the notifier is passed in."""

    settings: Settings
    config: DriftConfig
    training: train.TrainingContext
    notifier: TelegramNotifier

    @classmethod
    def from_settings(cls, settings: Settings) -> MonitorContext:
        notifier = TelegramNotifier(
            settings.telegram_bot_token or None,
            settings.telegram_chat_id or None,
            base_url=settings.telegram_base_url or None,
            timeout=settings.telegram_timeout_seconds,
            retries=settings.telegram_retries,
        )
        return cls(
            settings=settings,
            config=load_drift_config(settings.drift_config_path),
            training=train.TrainingContext.from_settings(settings),
            notifier=notifier,
        )

    @property
    def alias(self) -> str:
        """The served alias: its model is the reference, a retrained winner may take it."""
        return self.training.alias

    @property
    def workdir(self) -> Path:
        path = self.settings.home / "monitoring"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @cached_property
    def engine(self):
        """One engine per context: the steps store, then update, the same run's row."""
        return make_engine(self.settings.project_database_url)


def load_reference_step(context: MonitorContext) -> dict[str, Any]:
    """The served model's own reference sample, fetched to a local file for the next step."""
    settings = context.settings
    client = mlflow_registry.connect(settings.mlflow_tracking_uri, settings.mlflow_experiment)
    production = mlflow_registry.production_version(client, settings.model_name, context.alias)
    if production is None:
        raise ModelUnavailableError(
            f"no version of {settings.model_name!r} holds @{context.alias}; "
            "run the train pipeline first"
        )
    folder = context.workdir / f"reference-v{production.version}"
    path = mlflow_registry.download_artifact(production.run_id, train.REFERENCE_ARTIFACT, folder)
    rows = pq.ParquetFile(path).metadata.num_rows
    logger.info("reference: %d rows of %s v%s", rows, settings.model_name, production.version)
    return {
        "path": str(path),
        "rows": rows,
        "model_name": settings.model_name,
        "model_version": str(production.version),
        "model_run_id": production.run_id,
    }


def load_current_step(context: MonitorContext, request: MonitorRequest) -> pd.DataFrame:
    if request.data.source == SCORING_LOG:
        settings = context.settings
        logged = scoring_log.read_scoring_log(
            settings.project_database_url, settings.scoring_log_table, request.days
        )
        frame = frame_from_scoring_log(logged, context.training.schema)
        logger.info("current data: %d customers from the scoring log", len(frame))
        if frame.empty:
            return frame  # nothing scored lately: the drift check reports too little data
    else:
        frame = train.load_step(context.training, request.data, progress=False)
    require_valid(frame, context.training.schema)
    return frame


def frame_from_scoring_log(logged: pd.DataFrame, schema) -> pd.DataFrame:
    """Scored rows as customer rows: the latest score per customer, month from the score time.

    A customer scored twice would count twice in the distribution; rows sent without an id are
    each their own customer.
    """
    columns = [schema.id_column, schema.month_column, *schema.features]
    if logged.empty:
        return pd.DataFrame(columns=columns)
    frame = logged.copy()
    missing_id = frame["customer_id"].isna()
    frame.loc[missing_id, "customer_id"] = [f"anonymous-{i}" for i in range(missing_id.sum())]
    frame = frame.drop_duplicates("customer_id", keep="last")
    frame[schema.id_column] = frame["customer_id"].astype(str)
    frame[schema.month_column] = pd.to_datetime(frame["scored_at"], utc=True).dt.strftime("%Y-%m")
    return frame[columns].reset_index(drop=True)


def check_drift_step(
    context: MonitorContext, reference: dict[str, Any], current: pd.DataFrame
) -> dict[str, Any]:
    """Run the Evidently report, save it as HTML to the artifact store and the Evidently UI."""
    schema, config = context.training.schema, context.config
    columns = feature_columns(schema)
    reference_frame = pd.read_parquet(reference["path"])
    enough = config.enough_data(len(current))
    if not enough.ok:
        result = DriftResult.insufficient(len(reference_frame), len(current), enough.reason)
        logger.warning("drift check skipped: %s", enough.reason)
        return {"result": result.to_dict(), "report_location": None, "report_url": None}
    snapshot, report = evidently_report.run_drift_report(
        reference_frame[columns], current[columns], schema, config
    )
    result = evidently_report.interpret(report, config, len(reference_frame), len(current))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    html = evidently_report.save_html(snapshot, context.workdir / f"drift-{stamp}.html")
    runs = evidently_report.add_to_workspace(
        context.settings.evidently_workspace_path, context.settings.evidently_project, snapshot
    )
    mlflow_registry.connect(
        context.settings.mlflow_tracking_uri, context.settings.mlflow_experiment
    )
    run_id, location = mlflow_registry.log_report_run(
        f"drift-{stamp}",
        {"model_version": reference["model_version"], "n_current": len(current)},
        {"drift_share": result.drift_share, "dataset_drift": float(result.dataset_drift)},
        {"persona.stage": "monitoring"},
        [html],
        "drift",
    )
    logger.info(
        "drift share %.2f (threshold %.2f), dataset drift %s; %d run(s) in the Evidently UI",
        result.drift_share,
        config.drift_share,
        result.dataset_drift,
        runs,
    )
    return {
        "result": result.to_dict(),
        "report_location": f"{location}/{html.name}",
        "report_url": mlflow_registry.run_url(context.settings.mlflow_tracking_uri, run_id),
    }


def decide(result: dict[str, Any], request: MonitorRequest) -> str:
    if not result["enough_data"]:
        return INSUFFICIENT_DATA
    if not result["dataset_drift"]:
        return NO_DRIFT
    return RETRAIN if request.retrain else DRIFT_NO_RETRAIN


def store_step(
    context: MonitorContext,
    reference: dict[str, Any],
    check: dict[str, Any],
    request: MonitorRequest,
) -> dict[str, Any]:
    """One history row per run and one per column; the decision the conditionals read."""
    result, decision = check["result"], decide(check["result"], request)
    run = {
        "data_window": request.window,
        "model_name": reference["model_name"],
        "model_version": reference["model_version"],
        "n_reference": result["n_reference"],
        "n_current": result["n_current"],
        "drift_share": result["drift_share"],
        "drift_share_threshold": context.config.drift_share,
        "dataset_drift": result["dataset_drift"],
        "enough_data": result["enough_data"],
        "report_location": check["report_location"],
        "action": "retraining" if decision == RETRAIN else decision,
        "alert_status": "pending",
        "detail": result.get("reason"),
    }
    run_id = drift_store.record_run(context.engine, run, result["columns"])
    return {**check, **run, "run_id": run_id, "decision": decision}


def retrain_step(
    context: MonitorContext,
    drift: dict[str, Any],
    reference: dict[str, Any],
    current: pd.DataFrame,
) -> dict[str, Any]:
    """The training flow on reference + current rows; champion/challenger decides promotion."""
    reference_frame = pd.read_parquet(reference["path"])
    frame = pd.concat([reference_frame, current[reference_frame.columns]], ignore_index=True)
    training = context.training
    frame = train.validate_step(frame, training.schema)
    search = train.search_step(training, frame, progress=False)
    selection = train.select_step(training, search, frame)
    registration = train.register_step(training, selection, frame)
    promoted = registration["alias"] == context.alias
    drift_store.update_run(
        context.engine,
        drift["run_id"],
        action="retrained",
        new_model_version=registration["version"],
        promoted=promoted,
    )
    logger.info(
        "retrained on %d rows: v%s %s",
        len(frame),
        registration["version"],
        f"promoted to @{context.alias}" if promoted else f"kept as @{registration['alias']}",
    )
    return {
        "version": registration["version"],
        "alias": registration["alias"],
        "promoted": promoted,
        "reason": registration["reason"],
        "n_rows": len(frame),
    }


def alert_step(
    context: MonitorContext,
    drift: dict[str, Any],
    retrained: dict[str, Any] | None,
    request: MonitorRequest,
) -> dict[str, Any]:
    """Tell the team; an alert that cannot be sent is recorded, never a failed run."""
    decision = drift["decision"]
    result = drift["result"]
    link = drift.get("report_url") or drift.get("report_location")
    if decision == INSUFFICIENT_DATA:
        alert = alerts.insufficient_data_alert(
            model_name=drift["model_name"],
            window=drift["data_window"],
            n_current=result["n_current"],
            min_rows=context.config.min_rows,
        )
    elif decision == NO_DRIFT:
        wanted = (
            context.config.all_clear_alert
            if request.all_clear_alert is None
            else request.all_clear_alert
        )
        if not wanted:
            drift_store.update_run(context.engine, drift["run_id"], alert_status="skipped")
            return {"status": "skipped", "decision": decision}
        alert = alerts.all_clear_alert(
            model_name=drift["model_name"],
            window=drift["data_window"],
            drift_share=result["drift_share"],
            threshold=context.config.drift_share,
            report_link=link,
        )
    else:
        alert = alerts.drift_alert(
            model_name=drift["model_name"],
            window=drift["data_window"],
            drift_share=result["drift_share"],
            threshold=context.config.drift_share,
            drifted_columns=[
                (c["column_name"], c["method"], c["score"])
                for c in result["columns"]
                if c["drifted"]
            ],
            new_version=None if retrained is None else retrained["version"],
            promoted=None if retrained is None else retrained["promoted"],
            not_retrained_reason=(
                "retraining is switched off for this run" if retrained is None else None
            ),
            report_link=link,
            alias=context.alias,
        )
    outcome = context.notifier.send(alert)
    drift_store.update_run(context.engine, drift["run_id"], alert_status=outcome.status)
    return {"status": outcome.status, "attempts": outcome.attempts, "decision": decision}


def run_monitoring(context: MonitorContext, request: MonitorRequest) -> dict[str, Any]:
    """The whole monitor pipeline in one process, honouring the same branches as Mage's."""
    reference = load_reference_step(context)
    current = load_current_step(context, request)
    check = check_drift_step(context, reference, current)
    drift = store_step(context, reference, check, request)
    retrained = None
    if drift["decision"] == RETRAIN:
        retrained = retrain_step(context, drift, reference, current)
    alert = alert_step(context, drift, retrained, request)
    return {
        "run_id": drift["run_id"],
        "decision": drift["decision"],
        "drift_share": drift["drift_share"],
        "dataset_drift": drift["dataset_drift"],
        "report_location": drift["report_location"],
        "retrained": retrained,
        "alert": alert,
    }
