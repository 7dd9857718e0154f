"""What a monitoring run is asked to check (the pipeline's run variables) and what it decides.

Values only: the Mage blocks, the CLI and the local stack build a ``MonitorRequest`` from run
variables; ``persona.flows.monitor`` runs it and stores its ``Decision``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from persona.data.months import previous_month
from persona.errors import ConfigurationError
from persona.flags import parse_bool
from persona.flows import train
from persona.run_variables import DEFAULT_MONTH, MONITOR_DEFAULTS, SCORING_LOG


class Decision(StrEnum):
    """What a monitoring run decided; stored with the run, branched on by Mage."""

    RETRAIN = "retrain"  # drift found and retraining enabled
    DRIFT_NO_RETRAIN = "drift_no_retrain"  # drift found, retraining switched off for this run
    NO_DRIFT = "no_drift"
    INSUFFICIENT_DATA = "insufficient_data"
    DATA_QUALITY_FAILED = "data_quality_failed"  # broken data: stored and alerted, not judged
    DRIFT_HELD = "drift_held"  # drift found, the retrain policy waits for more drifted months


RETRAIN, DRIFT_NO_RETRAIN = Decision.RETRAIN, Decision.DRIFT_NO_RETRAIN
NO_DRIFT, INSUFFICIENT_DATA = Decision.NO_DRIFT, Decision.INSUFFICIENT_DATA
DATA_QUALITY_FAILED = Decision.DATA_QUALITY_FAILED


@dataclass(frozen=True)
class MonitorRequest:
    """Which current data to check and what the run may do (the pipeline's run variables)."""

    data: train.DataRequest
    retrain: bool = MONITOR_DEFAULTS["retrain"]
    all_clear_alert: bool | None = None  # None = the drift config decides
    days: float = MONITOR_DEFAULTS["days"]  # window of the scoring log (source=scoring_log)
    engine: str = MONITOR_DEFAULTS["engine"]  # pandas | spark (persona.flows.spark_drift)

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
            engine=_engine(variables.get("engine")),
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


def _engine(value: Any) -> str:
    engine = str(value or MONITOR_DEFAULTS["engine"]).strip().lower()
    if engine not in ("pandas", "spark"):
        raise ConfigurationError(f"engine must be pandas or spark, got {value!r}")
    return engine
