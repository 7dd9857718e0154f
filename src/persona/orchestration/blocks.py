"""What Mage blocks call. Each block is two lines: its decorator and one call into here.

This is the entry-point layer for Mage: it reads settings (run variables > environment >
defaults), configures logging and builds the flows' contexts (``persona.composition``); the
work itself is in ``persona.flows``. Step values cross between blocks as JSON: ``to_plain``
and ``from_plain`` are the only place the flows' dataclasses become dicts and back.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from persona import composition
from persona.errors import PersonaError
from persona.flows import monitor, train
from persona.logging_setup import configure_logging
from persona.run_variables import TRAIN_DEFAULTS
from persona.settings import Settings, load_settings
from persona.values import from_plain, to_plain

# Run variables that override settings (the rest are data/run knobs read by the steps).
SETTING_VARIABLES = {
    "model_name": "model_name",
    "experiment": "mlflow_experiment",
    "schema": "schema_path",
    "params": "params_path",
    "drift_config": "drift_config_path",
}


def _settings(variables: dict[str, Any]) -> Settings:
    overrides = {
        setting: variables[name]
        for name, setting in SETTING_VARIABLES.items()
        if variables.get(name)
    }
    settings = composition.for_segmentation(
        load_settings(overrides=overrides), variables.get("segmentation") or None
    )
    # Only our loggers: Mage re-logs whatever a block writes to stderr through its own loggers,
    # so a root handler that also took those records would feed them back forever.
    configure_logging(settings.log_level, only_prefixes=("persona",))
    return settings


def _context(variables: dict[str, Any]) -> train.TrainingContext:
    seed = variables.get("seed")
    return composition.training_context(
        _settings(variables), seed=int(seed) if seed not in (None, "") else None
    )


def registration_enabled(variables: dict[str, Any]) -> bool:
    return train.run_flag(variables, "register", TRAIN_DEFAULTS["register"])


def load_customers(variables: dict[str, Any]) -> pd.DataFrame:
    composition.reconcile_at_start(_settings(variables))  # the first block of a train run
    return train.load_step(
        _context(variables), train.DataRequest.from_variables(variables), progress=False
    )


def validate_customers(frame: pd.DataFrame, variables: dict[str, Any]) -> pd.DataFrame:
    return train.validate_step(frame, _context(variables).schema)


def train_candidates(frame: pd.DataFrame, variables: dict[str, Any]) -> dict[str, Any]:
    context = _context(variables)
    return to_plain(train.search_step(context, train.split_step(context, frame), progress=False))


def select_model(
    search: dict[str, Any], frame: pd.DataFrame, variables: dict[str, Any]
) -> dict[str, Any]:
    context = _context(variables)
    selection = train.select_step(
        context,
        from_plain(train.SearchOutcome, search),
        train.split_step(context, frame),
        train.load_champion(context),
    )
    return to_plain(selection)


def register_model(
    selection: dict[str, Any], frame: pd.DataFrame, variables: dict[str, Any]
) -> dict[str, Any]:
    context = _context(variables)
    registered = train.register_step(
        context,
        from_plain(train.Selection, selection),
        train.split_step(context, frame),
        train.load_champion(context),
    )
    return to_plain(registered)


# ------------------------------------------------------------------------------ monitor pipeline


def _monitor(variables: dict[str, Any]) -> monitor.MonitorContext:
    return composition.monitor_context(_settings(variables))


def load_reference(variables: dict[str, Any]) -> dict[str, Any]:
    composition.reconcile_at_start(_settings(variables))  # the first block of a monitor run
    return to_plain(monitor.load_reference_step(_monitor(variables)))


def load_current(variables: dict[str, Any]) -> pd.DataFrame:
    request = monitor.MonitorRequest.from_variables(variables)
    return monitor.load_current_step(_monitor(variables), request)


def check_drift(
    reference: dict[str, Any], current: pd.DataFrame, variables: dict[str, Any]
) -> dict[str, Any]:
    check = monitor.check_drift_step(
        _monitor(variables), from_plain(monitor.Reference, reference), current
    )
    return to_plain(check)


def store_drift(
    check: dict[str, Any], reference: dict[str, Any], variables: dict[str, Any]
) -> dict[str, Any]:
    request = monitor.MonitorRequest.from_variables(variables)
    stored = monitor.store_step(
        _monitor(variables),
        from_plain(monitor.Reference, reference),
        from_plain(monitor.DriftCheck, check),
        request,
    )
    return to_plain(stored)


def is_retraining(drift: dict[str, Any]) -> bool:
    """The branch the stored decision chose (conditionals of the monitor pipeline)."""
    return drift.get("decision") == monitor.Decision.RETRAIN


def retrain_on_drift(
    drift: dict[str, Any],
    reference: dict[str, Any],
    current: pd.DataFrame,
    variables: dict[str, Any],
) -> dict[str, Any]:
    retrained = monitor.retrain_step(
        _monitor(variables),
        from_plain(monitor.StoredDrift, drift),
        from_plain(monitor.Reference, reference),
        current,
    )
    return to_plain(retrained)


def alert(
    drift: dict[str, Any], retrained: dict[str, Any] | None, variables: dict[str, Any]
) -> dict[str, Any]:
    request = monitor.MonitorRequest.from_variables(variables)
    outcome = from_plain(monitor.Retrained | None, retrained)
    summary = monitor.alert_step(
        _monitor(variables), from_plain(monitor.StoredDrift, drift), outcome, request
    )
    if outcome is not None and outcome.failed:  # row final and alert sent: now Mage says so
        raise PersonaError(f"{outcome.reason} (the run is recorded as failed)")
    return to_plain(summary)


def score_batch(variables: dict[str, Any]) -> dict[str, Any]:
    """The score_batch pipeline: engine (http|local|spark), month, file, out."""
    from persona.orchestration.score_batch import run_score

    return run_score(_settings(variables), variables)
