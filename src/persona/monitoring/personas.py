"""Persona monitoring: how the served model's persona mix and fit moved since its reference.

Column drift says the inputs moved; this says what that did to the segmentation people use.
Both the reference sample and the current month are assigned by the served model (its output:
``persona_id``, ``persona_name``, ``confidence``, ``distance`` to the assigned centre); per
persona we compare the share of customers, the fit (mean and 90th percentile distance, share
of low-confidence customers) and, over all personas, the mix as one distribution. A persona
whose share moves by more than ``max_share_change``, or whose customers fit markedly worse,
is flagged and named in the alert ("Budget Families 31% → 18%").

Pure core: frames in, a frozen :class:`PersonaMix` out; the ``personas:`` section of
``04_monitoring/drift.yaml`` becomes a :class:`PersonaConfig`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from persona.config_files import config_section
from persona.errors import ConfigurationError, InvalidInputError
from persona.readable import percent

# The two tests of the whole mix. Jensen-Shannon distance (natural log, as Evidently computes
# it for categorical columns) drifts ABOVE its threshold; the chi-square test of homogeneity
# (reference counts vs current counts) drifts when its p-value is BELOW it.
JENSEN_SHANNON, CHI_SQUARE = "jensenshannon", "chisquare"
MIX_METHODS = {JENSEN_SHANNON: "distance", CHI_SQUARE: "p_value"}
ASSIGNMENT_COLUMNS = ("persona_id", "persona_name", "confidence", "distance")
_SHARE_REASON = "share "


@dataclass(frozen=True)
class PersonaConfig:
    """When a persona, or the mix as a whole, counts as drifted (defaults: see drift.yaml)."""

    enabled: bool = True
    max_share_change: float = 0.05  # absolute change of a persona's share (0.05 = 5 points)
    max_distance_ratio: float = 1.25  # current / reference mean distance to the centre
    low_confidence: float = 0.8  # a customer assigned with less confidence is low-confidence
    max_low_confidence_rise: float = 0.10  # rise of a persona's low-confidence share
    min_customers: int = 50  # fewer (current or reference) customers: the fit is not judged
    mix_method: str = JENSEN_SHANNON
    mix_threshold: float = 0.1


_KEYS = {
    "enabled",
    "max_share_change",
    "max_distance_ratio",
    "low_confidence",
    "max_low_confidence_rise",
    "min_customers",
    "mix",
}


def _fraction(raw: Mapping[str, Any], key: str, default: float, source: str) -> float:
    """A number in (0, 1], named by its key when it is not one."""
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ConfigurationError(
            f"{source}: personas.{key} must be a number in (0, 1], got {value!r}"
        )
    return float(value)


def persona_config_from_dict(raw: Any, source: str = "drift config") -> PersonaConfig:
    """Parse the ``personas:`` section; errors name the key, the value and the rule."""
    defaults = PersonaConfig()
    if raw is None:
        return defaults
    raw = config_section(raw, "personas", _KEYS, source)
    enabled = raw.get("enabled", defaults.enabled)
    if not isinstance(enabled, bool):
        raise ConfigurationError(
            f"{source}: personas.enabled must be true or false, got {enabled!r}"
        )
    ratio = raw.get("max_distance_ratio", defaults.max_distance_ratio)
    if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not ratio > 1:
        raise ConfigurationError(
            f"{source}: personas.max_distance_ratio must be a number > 1 (current over "
            f"reference mean distance), got {ratio!r}"
        )
    minimum = raw.get("min_customers", defaults.min_customers)
    if isinstance(minimum, bool) or not isinstance(minimum, int) or minimum < 1:
        raise ConfigurationError(
            f"{source}: personas.min_customers must be an integer >= 1, got {minimum!r}"
        )
    method, threshold = _mix(raw.get("mix"), defaults, source)
    return PersonaConfig(
        enabled=enabled,
        max_share_change=_fraction(raw, "max_share_change", defaults.max_share_change, source),
        max_distance_ratio=float(ratio),
        low_confidence=_fraction(raw, "low_confidence", defaults.low_confidence, source),
        max_low_confidence_rise=_fraction(
            raw, "max_low_confidence_rise", defaults.max_low_confidence_rise, source
        ),
        min_customers=minimum,
        mix_method=method,
        mix_threshold=threshold,
    )


def _mix(raw: Any, defaults: PersonaConfig, source: str) -> tuple[str, float]:
    if raw is None:
        return defaults.mix_method, defaults.mix_threshold
    if not isinstance(raw, Mapping) or set(raw) - {"method", "threshold"}:
        raise ConfigurationError(
            f"{source}: personas.mix must be a mapping {{method, threshold}}, got {raw!r}"
        )
    method = raw.get("method", defaults.mix_method)
    if method not in MIX_METHODS:
        raise ConfigurationError(
            f"{source}: personas.mix.method must be one of {sorted(MIX_METHODS)}, got {method!r}"
        )
    threshold = raw.get("threshold")
    if threshold is None:
        # the default threshold belongs to the default method: a p-value is not a distance
        return method, defaults.mix_threshold if method == JENSEN_SHANNON else 0.05
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        threshold = math.nan
    if not 0 < threshold < 1:
        kind = "a p-value in (0, 1)" if MIX_METHODS[method] == "p_value" else "a distance in (0, 1)"
        raise ConfigurationError(
            f"{source}: personas.mix.threshold must be {kind} for {method}, "
            f"got {raw.get('threshold')!r}"
        )
    return method, float(threshold)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class PersonaFit:
    """One persona in one run: its share and fit, reference against current."""

    persona_id: int
    name: str
    n_reference: int
    n_current: int
    reference_share: float
    current_share: float
    mean_distance_reference: float  # NaN when the persona has no customers on that side
    mean_distance_current: float
    p90_distance_reference: float
    p90_distance_current: float
    low_confidence_reference: float  # share of its customers below the low-confidence cut
    low_confidence_current: float
    flagged: bool = False
    reason: str | None = None

    @property
    def change(self) -> float:
        """Current minus reference share (a fraction: -0.13 = 13 points fewer)."""
        return self.current_share - self.reference_share

    @property
    def fit_reasons(self) -> tuple[str, ...]:
        """The reasons about fit, leaving out the share change (which alerts show as numbers)."""
        parts = (self.reason or "").split("; ")
        return tuple(p for p in parts if p and not p.startswith(_SHARE_REASON))

    @property
    def distance_ratio(self) -> float:
        if not self.mean_distance_reference > 0 or math.isnan(self.mean_distance_current):
            return math.nan
        return self.mean_distance_current / self.mean_distance_reference

    def to_dict(self) -> dict[str, Any]:
        """Keys match the ``persona_mix`` history table (NaN stored as NULL)."""
        values = {
            "persona_id": self.persona_id,
            "persona_name": self.name,
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "reference_share": self.reference_share,
            "current_share": self.current_share,
            "share_change": self.change,
            "mean_distance_reference": self.mean_distance_reference,
            "mean_distance_current": self.mean_distance_current,
            "p90_distance_reference": self.p90_distance_reference,
            "p90_distance_current": self.p90_distance_current,
            "low_confidence_reference": self.low_confidence_reference,
            "low_confidence_current": self.low_confidence_current,
            "flagged": self.flagged,
            "reason": self.reason,
        }
        return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in values.items()}


@dataclass(frozen=True)
class PersonaMix:
    """The persona part of a drift check: every persona's row and the verdict on the mix."""

    personas: tuple[PersonaFit, ...]
    method: str  # jensenshannon | chisquare
    score: float  # the distance, or the p-value
    threshold: float
    mix_drifted: bool
    statistic: float = math.nan  # chi-square statistic (NaN for Jensen-Shannon)
    period: str | None = None  # the month(s) of the current rows, the trend chart's x axis

    @property
    def flagged(self) -> tuple[PersonaFit, ...]:
        return tuple(p for p in self.personas if p.flagged)

    @property
    def drifted(self) -> bool:
        """Counts as drift for the run's decision: the mix moved or a persona is flagged."""
        return self.mix_drifted or bool(self.flagged)

    @property
    def reason(self) -> str | None:
        """Why the personas count as drifted, in one line (None when they do not)."""
        parts = []
        if self.mix_drifted:
            parts.append(f"persona mix moved ({describe_mix(self)})")
        parts.extend(f"{p.name}: {p.reason}" for p in self.flagged)
        return "; ".join(parts) or None


def describe_mix(mix: PersonaMix) -> str:
    """The mix verdict as people read it: "Jensen-Shannon 0.27 >= 0.1"."""
    if mix.method == CHI_SQUARE:
        sign = "<" if mix.mix_drifted else ">="
        return f"chi-square p-value {mix.score:.3g} {sign} {mix.threshold:g}"
    sign = ">=" if mix.mix_drifted else "<"
    return f"Jensen-Shannon {mix.score:.3g} {sign} {mix.threshold:g}"


def _check_assignment(frame: pd.DataFrame, side: str) -> None:
    missing = [c for c in ASSIGNMENT_COLUMNS if c not in frame.columns]
    if missing:
        raise InvalidInputError(
            f"{side} persona assignment lacks columns {missing}; the served model returns "
            f"{list(ASSIGNMENT_COLUMNS)}"
        )
    if frame.empty:
        raise InvalidInputError(f"{side} persona assignment has no rows")


def _per_persona(frame: pd.DataFrame, cut: float) -> pd.DataFrame:
    # Non-finite distances or confidences (overflowing rows) count in the share, not the fit.
    distance = frame["distance"].where(np.isfinite(frame["distance"]))
    confidence = frame["confidence"].where(np.isfinite(frame["confidence"]))
    grouped = pd.DataFrame(
        {
            "persona_id": frame["persona_id"].astype(int),
            "distance": distance,
            "low": (confidence < cut).where(confidence.notna()),
        }
    ).groupby("persona_id")
    return pd.DataFrame(
        {
            "n": grouped.size(),
            "mean": grouped["distance"].mean(),
            "p90": grouped["distance"].quantile(0.9),
            "low": grouped["low"].mean(),
        }
    )


def _mix_verdict(
    reference: pd.Series, current: pd.Series, config: PersonaConfig
) -> tuple[float, float, bool]:
    """(score, statistic, drifted) of the whole mix, from counts per persona."""
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import chi2_contingency

    if config.mix_method == CHI_SQUARE:
        table = np.vstack([reference.to_numpy(), current.to_numpy()])
        table = table[:, table.sum(axis=0) > 0]
        if table.shape[1] < 2:
            return 1.0, 0.0, False  # one persona on both sides: nothing can have moved
        statistic, p_value, _, _ = chi2_contingency(table)
        return float(p_value), float(statistic), bool(p_value < config.mix_threshold)
    distance = float(jensenshannon(reference / reference.sum(), current / current.sum()))
    return distance, math.nan, distance >= config.mix_threshold


def compare_personas(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    config: PersonaConfig,
    names: Mapping[int, str] | None = None,
    period: str | None = None,
) -> PersonaMix:
    """The persona mix and fit of ``current`` against ``reference``, both as the served model
    assigned them (its output columns). ``names``: every persona it serves, by id, under the
    name people see (renames applied), so a persona nobody is assigned to any more still shows
    (as 0%); ids missing there take the model's own ``persona_name``."""
    _check_assignment(reference, "reference")
    _check_assignment(current, "current")
    before = _per_persona(reference, config.low_confidence)
    after = _per_persona(current, config.low_confidence)
    ids = sorted({*before.index, *after.index, *(names or {})})
    before, after = before.reindex(ids), after.reindex(ids)
    counts_before = before["n"].fillna(0).astype(int)
    counts_after = after["n"].fillna(0).astype(int)
    pairs = [
        f[["persona_id", "persona_name"]].drop_duplicates("persona_id")
        for f in (current, reference)
    ]
    seen = pd.concat(pairs).drop_duplicates("persona_id")
    model_names = dict(zip(seen["persona_id"].astype(int), seen["persona_name"], strict=True))
    rows = []
    for persona_id in ids:
        row = PersonaFit(
            persona_id=int(persona_id),
            name=str((names or {}).get(persona_id) or model_names.get(persona_id, persona_id)),
            n_reference=int(counts_before[persona_id]),
            n_current=int(counts_after[persona_id]),
            reference_share=float(counts_before[persona_id] / len(reference)),
            current_share=float(counts_after[persona_id] / len(current)),
            mean_distance_reference=float(before.at[persona_id, "mean"]),
            mean_distance_current=float(after.at[persona_id, "mean"]),
            p90_distance_reference=float(before.at[persona_id, "p90"]),
            p90_distance_current=float(after.at[persona_id, "p90"]),
            low_confidence_reference=float(before.at[persona_id, "low"]),
            low_confidence_current=float(after.at[persona_id, "low"]),
        )
        reasons = _reasons(row, config)
        rows.append(replace(row, flagged=True, reason="; ".join(reasons)) if reasons else row)
    score, statistic, drifted = _mix_verdict(counts_before, counts_after, config)
    return PersonaMix(
        personas=tuple(rows),
        method=config.mix_method,
        score=score,
        threshold=config.mix_threshold,
        mix_drifted=drifted,
        statistic=statistic,
        period=period,
    )


def _reasons(row: PersonaFit, config: PersonaConfig) -> list[str]:
    """Why a persona is flagged: its share moved, or its customers fit markedly worse."""
    reasons = []
    if abs(row.change) > config.max_share_change:
        reasons.append(
            f"{_SHARE_REASON}{percent(row.reference_share)} → {percent(row.current_share)} "
            f"({row.change * 100:+.0f} points)"
        )
    if min(row.n_reference, row.n_current) < config.min_customers:
        return reasons  # too few customers on one side to judge their fit
    ratio = row.distance_ratio
    if ratio > config.max_distance_ratio:
        reasons.append(
            f"fits worse: mean distance {row.mean_distance_reference:.2f} → "
            f"{row.mean_distance_current:.2f} (×{ratio:.2f})"
        )
    rise = row.low_confidence_current - row.low_confidence_reference
    if rise > config.max_low_confidence_rise:
        reasons.append(
            f"low-confidence customers {percent(row.low_confidence_reference)} → "
            f"{percent(row.low_confidence_current)}"
        )
    return reasons


def period_of(months: pd.Series) -> str | None:
    """The month(s) the current rows fall in: "2026-04", or "2026-03..2026-04" for several."""
    values = sorted({str(m) for m in months.dropna().unique()})
    if not values:
        return None
    return values[0] if len(values) == 1 else f"{values[0]}..{values[-1]}"
