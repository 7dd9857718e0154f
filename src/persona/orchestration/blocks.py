"""What Mage blocks call. Each block is two lines: its decorator and one call into here.

This is the entry-point layer for Mage: it reads settings (run variables > environment >
defaults) and configures logging; the work itself is in ``persona.flows``.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from persona.flows import monitor, train
from persona.logging_setup import configure_logging
from persona.run_variables import TRAIN_DEFAULTS
from persona.settings import Settings, load_settings

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
    settings = load_settings(overrides=overrides)
    # Only our loggers: Mage re-logs whatever a block writes to stderr through its own loggers,
    # so a root handler that also took those records would feed them back forever.
    configure_logging(settings.log_level, only_prefixes=("persona",))
    return settings


def _context(variables: dict[str, Any]) -> train.TrainingContext:
    settings = _settings(variables)
    seed = variables.get("seed")
    return train.TrainingContext.from_settings(
        settings, seed=int(seed) if seed not in (None, "") else None
    )


def json_safe(value: Any) -> Any:
    """Mage stores dict outputs as JSON: NaN becomes None, numpy scalars become Python."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def registration_enabled(variables: dict[str, Any]) -> bool:
    return train.run_flag(variables, "register", TRAIN_DEFAULTS["register"])


def load_customers(variables: dict[str, Any]) -> pd.DataFrame:
    return train.load_step(
        _context(variables), train.DataRequest.from_variables(variables), progress=False
    )


def validate_customers(frame: pd.DataFrame, variables: dict[str, Any]) -> pd.DataFrame:
    return train.validate_step(frame, _context(variables).schema)


def train_candidates(frame: pd.DataFrame, variables: dict[str, Any]) -> dict[str, Any]:
    return json_safe(train.search_step(_context(variables), frame, progress=False))


def select_model(
    search: dict[str, Any], frame: pd.DataFrame, variables: dict[str, Any]
) -> dict[str, Any]:
    return json_safe(train.select_step(_context(variables), search, frame))


def register_model(
    selection: dict[str, Any], frame: pd.DataFrame, variables: dict[str, Any]
) -> dict[str, Any]:
    return json_safe(train.register_step(_context(variables), selection, frame))


# ------------------------------------------------------------------------------ monitor pipeline


def _monitor(variables: dict[str, Any]) -> monitor.MonitorContext:
    return monitor.MonitorContext.from_settings(_settings(variables))


def load_reference(variables: dict[str, Any]) -> dict[str, Any]:
    return json_safe(monitor.load_reference_step(_monitor(variables)))


def load_current(variables: dict[str, Any]) -> pd.DataFrame:
    request = monitor.MonitorRequest.from_variables(variables)
    return monitor.load_current_step(_monitor(variables), request)


def check_drift(
    reference: dict[str, Any], current: pd.DataFrame, variables: dict[str, Any]
) -> dict[str, Any]:
    return json_safe(monitor.check_drift_step(_monitor(variables), reference, current))


def store_drift(
    check: dict[str, Any], reference: dict[str, Any], variables: dict[str, Any]
) -> dict[str, Any]:
    request = monitor.MonitorRequest.from_variables(variables)
    return json_safe(monitor.store_step(_monitor(variables), reference, check, request))


def is_retraining(drift: dict[str, Any]) -> bool:
    """The branch the stored decision chose (conditionals of the monitor pipeline)."""
    return drift.get("decision") == monitor.RETRAIN


def retrain_on_drift(
    drift: dict[str, Any],
    reference: dict[str, Any],
    current: pd.DataFrame,
    variables: dict[str, Any],
) -> dict[str, Any]:
    return json_safe(monitor.retrain_step(_monitor(variables), drift, reference, current))


def alert(
    drift: dict[str, Any], retrained: dict[str, Any] | None, variables: dict[str, Any]
) -> dict[str, Any]:
    request = monitor.MonitorRequest.from_variables(variables)
    return json_safe(monitor.alert_step(_monitor(variables), drift, retrained, request))
