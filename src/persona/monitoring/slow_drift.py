"""Slow drift: shifts too small to flag in one month that add up over consecutive months.

The month-vs-reference check (Evidently, :mod:`persona.monitoring.drift`) judges each month on
its own; a normed Wasserstein distance of 0.1 misses a 3% income rise however many months it
lasts. Here each numeric model input gets a signed effect size per month, its standardized mean
shift ``(mean(current) - mean(reference)) / sd(reference)``, and a two-sided CUSUM runs over the
consecutive monitored months of one model version (the same reference sample)::

    up_t   = max(0, up_{t-1}   + shift_t - allowance)
    down_t = max(0, down_{t-1} - shift_t - allowance)

The column is flagged when either side exceeds ``limit``; that side then restarts from 0, so a
lasting shift is flagged again a few months later rather than every month. The allowance is in
reference standard deviations: it must exceed the reference sample's own error of the mean
(1/sqrt(20000) = 0.007 sd), which every month shares and a CUSUM would otherwise add up. The
state is never stored: it is recomputed from the per-run shifts in the drift history, so a new
reference (a promoted model) starts from zero and a config change applies to the past months.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from persona.config_files import config_section
from persona.errors import ConfigurationError

logger = logging.getLogger(__name__)

SLOW_DRIFT_KEYS = ("enabled", "allowance", "noise_sds", "limit")


@dataclass(frozen=True)
class SlowDriftConfig:
    """The ``slow_drift:`` section of drift.yaml (both numbers in reference sds)."""

    enabled: bool = True
    allowance: float = 0.02  # k: a month's shift below this adds nothing
    noise_sds: float = 2.0  # ... nor below this many standard errors of the month's shift
    limit: float = 0.03  # h: flag when the accumulated excess passes this

    def allowance_for(self, n_current: int, n_reference: int) -> float:
        """The month's allowance: a small month's noisy shift must be larger to count."""
        if n_current <= 0 or n_reference <= 0:
            return self.allowance
        return max(self.allowance, self.noise_sds * math.sqrt(1 / n_current + 1 / n_reference))


def slow_drift_config_from_dict(raw: Any, source: str = "drift config") -> SlowDriftConfig:
    """Parse the ``slow_drift:`` section; errors name the key, the value and the rule."""
    raw = config_section(raw, "slow_drift", SLOW_DRIFT_KEYS, source)
    defaults = SlowDriftConfig()
    enabled = raw.get("enabled", defaults.enabled)
    if not isinstance(enabled, bool):
        raise ConfigurationError(
            f"{source}: slow_drift.enabled must be true or false, got {enabled!r}"
        )
    numbers = {}
    for key in ("allowance", "noise_sds", "limit"):
        value = raw.get(key, getattr(defaults, key))
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise ConfigurationError(
                f"{source}: slow_drift.{key} must be a number > 0, got {value!r}"
            )
        numbers[key] = float(value)
    return SlowDriftConfig(enabled, numbers["allowance"], numbers["noise_sds"], numbers["limit"])


def mean_shifts(
    reference: pd.DataFrame, current: pd.DataFrame, columns: Sequence[str]
) -> dict[str, float]:
    """Each column's standardized mean shift, missing values left out; NaN where undefined
    (no values, or a constant reference column)."""
    shifts = {}
    for column in columns:
        before = pd.to_numeric(reference[column], errors="coerce").to_numpy(dtype=float)
        after = pd.to_numeric(current[column], errors="coerce").to_numpy(dtype=float)
        before, after = before[np.isfinite(before)], after[np.isfinite(after)]
        spread = float(before.std(ddof=1)) if before.size > 1 else math.nan
        if after.size == 0 or not spread > 0:
            shifts[column] = math.nan
            continue
        shifts[column] = (float(after.mean()) - float(before.mean())) / spread
    return shifts


@dataclass(frozen=True)
class MonthShifts:
    """One checked month: its columns' mean shifts and the sample sizes behind them."""

    shifts: dict[str, float]
    n_current: int
    n_reference: int


@dataclass(frozen=True)
class PastRun:
    """One earlier monitoring run of the same model version, as the drift history holds it."""

    data_window: str
    enough_data: bool
    dataset_drift: bool
    slow_drift: bool | None = None  # None: stored before slow drift was checked
    shifts: dict[str, float] = field(default_factory=dict)  # column -> standardized mean shift
    n_current: int = 0
    n_reference: int = 0

    @property
    def drifted(self) -> bool:
        return bool(self.dataset_drift or self.slow_drift)

    @property
    def month(self) -> MonthShifts:
        return MonthShifts(self.shifts, self.n_current, self.n_reference)


def consecutive_months(
    history: Sequence[PastRun], current_window: str, repeatable: bool = False
) -> list[PastRun]:
    """The checked months before this one, oldest first: runs with too little data are no
    month; a rerun of a month replaces its earlier runs (this run replaces them all) unless the
    window is ``repeatable`` (a rolling scoring-log window keeps one label for every period)."""
    months: list[PastRun] = []
    for run in history:
        if not run.enough_data:
            continue
        if not repeatable:
            if run.data_window == current_window:
                continue
            months = [m for m in months if m.data_window != run.data_window]
        months.append(run)
    return months


@dataclass(frozen=True)
class ColumnCusum:
    """One column's CUSUM after this month."""

    column: str
    shift: float  # this month's standardized mean shift (NaN: not computed)
    up: float
    down: float
    months: int  # months since the flagged (or larger) side last stood at 0
    total_shift: float  # signed sum of the shifts over those months
    flagged: bool

    @property
    def statistic(self) -> float:
        """The larger side, signed: what the history stores and a chart shows."""
        return self.up if self.up >= self.down else -self.down

    def describe(self) -> str:
        return (
            f"{self.column}: cumulative shift {self.total_shift:+.2f} sd over {self.months} "
            f"month{'s' if self.months != 1 else ''}"
        )


@dataclass(frozen=True)
class SlowDriftResult:
    columns: tuple[ColumnCusum, ...] = ()
    months: int = 0  # months the CUSUM ran over, this one included
    enabled: bool = True

    @property
    def flagged(self) -> bool:
        return any(c.flagged for c in self.columns)

    @property
    def flagged_columns(self) -> tuple[str, ...]:
        return tuple(c.column for c in self.columns if c.flagged)

    def descriptions(self, besides: Collection[str] = ()) -> list[str]:
        """The flagged columns in words, leaving out ``besides`` (flagged by another check)."""
        return [c.describe() for c in self.columns if c.flagged and c.column not in besides]

    @property
    def reason(self) -> str | None:
        if not self.flagged:
            return None
        return "slow drift: " + "; ".join(self.descriptions())

    def column_values(self, column: str) -> dict[str, float | None]:
        """Keys match the ``drift_columns`` history table (None: not a numeric input)."""
        for entry in self.columns:
            if entry.column == column:
                shift = None if math.isnan(entry.shift) else entry.shift
                return {"mean_shift": shift, "cumulative_shift": entry.statistic}
        return {"mean_shift": None, "cumulative_shift": None}


@dataclass
class _Side:
    value: float = 0.0
    months: int = 0
    total: float = 0.0

    def add(self, increment: float, shift: float) -> None:
        self.value = max(0.0, self.value + increment)
        if self.value > 0:
            self.months, self.total = self.months + 1, self.total + shift
        else:
            self.months, self.total = 0, 0.0


def cusum(months: Sequence[MonthShifts], config: SlowDriftConfig) -> SlowDriftResult:
    """The CUSUM over ``months`` (oldest first, this month last) of each column this month has;
    a side that passed the limit in an earlier month restarted from 0 after it."""
    if not config.enabled or not months:
        return SlowDriftResult(enabled=config.enabled)
    current = months[-1].shifts
    results = []
    for column in current:
        up, down = _Side(), _Side()
        flagged = False
        for index, month in enumerate(months):
            shift = month.shifts.get(column, math.nan)
            if shift is None or math.isnan(shift):
                continue
            allowance = config.allowance_for(month.n_current, month.n_reference)
            up.add(shift - allowance, shift)
            down.add(-shift - allowance, shift)
            over = [side for side in (up, down) if side.value > config.limit]
            if index == len(months) - 1:
                flagged = bool(over)
                continue
            for side in over:  # an earlier month's signal: that side restarts
                side.value, side.months, side.total = 0.0, 0, 0.0
        side = up if up.value >= down.value else down
        this = current.get(column, math.nan)
        results.append(
            ColumnCusum(
                column,
                math.nan if this is None else float(this),
                up.value,
                down.value,
                side.months,
                side.total,
                flagged,
            )
        )
    result = SlowDriftResult(tuple(results), len(months))
    if result.flagged:
        logger.info("%s", result.reason)
    return result
