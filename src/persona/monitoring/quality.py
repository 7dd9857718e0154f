"""Data quality of a monitored month, checked before drift: a result to store and alert on.

A month that breaks the data contract (an unseen level, a value out of range, a duplicate
customer, a missing column, too few rows) or whose values go missing far more often than in the
reference must not be judged for drift nor retrained on — but it must not vanish either: the
monitor records every check here, ends the run as ``data_quality_failed`` and says why. The
schema's rules are reused as they are (``persona.data.validation``); missing values are a metric
of their own, per column against the reference sample, with thresholds from ``drift.yaml``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from persona.config_files import config_section
from persona.data.schema import DatasetSchema
from persona.data.validation import Finding, validate_frame
from persona.errors import ConfigurationError
from persona.readable import percent

NULL_SHARE = "null share"
UNSEEN_LEVEL = "level unseen in the reference"
EXAMPLES = 3
_KEYS = {"max_null_share", "max_null_increase", "max_unseen_share"}


@dataclass(frozen=True)
class QualityConfig:
    """The ``data_quality:`` section of ``drift.yaml``."""

    max_null_share: float | None = None  # None: the schema's max_null_share
    max_null_increase: float = 0.02  # points over the reference sample's null share
    max_unseen_share: float = 0.01  # free-text levels the reference never held

    def null_limit(self, schema: DatasetSchema) -> float:
        """The null share a column may reach; the retrain validates with the same limit."""
        return schema.max_null_share if self.max_null_share is None else self.max_null_share


def quality_config_from_dict(raw: Any, source: str = "drift config") -> QualityConfig:
    """Parse ``data_quality:``; errors name the key, the value and the rule."""
    raw = config_section(raw, "data_quality", _KEYS, source)
    values: dict[str, float | None] = {}
    for key in sorted(_KEYS):
        if key not in raw or (key == "max_null_share" and raw[key] is None):
            continue
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise ConfigurationError(
                f"{source}: data_quality.{key} must be a share in [0, 1], got {value!r}"
            )
        values[key] = float(value)
    return QualityConfig(**values)


@dataclass(frozen=True)
class QualityCheck:
    """One rule on one column: how many rows broke it, against what limit, e.g. which values."""

    column: str
    rule: str
    n_rows: int
    share: float
    threshold: float
    failed: bool
    reference_share: float | None = None
    examples: tuple[str, ...] = ()

    def describe(self) -> str:
        against = (
            ""
            if self.reference_share is None
            else f", reference {percent(self.reference_share, 1)}"
        )
        shown = f"; e.g. {', '.join(self.examples)}" if self.examples else ""
        return (
            f"{self.column}: {self.rule} in {self.n_rows:,} row(s) ({percent(self.share, 1)}"
            f"{against}, limit {percent(self.threshold, 1)}){shown}"
        )

    def to_dict(self) -> dict[str, Any]:
        """Keys match the ``data_quality`` history table."""
        return {
            "column_name": self.column,
            "rule": self.rule,
            "n_rows": self.n_rows,
            "share": self.share,
            "threshold": self.threshold,
            "reference_share": self.reference_share,
            "failed": self.failed,
            "examples": "; ".join(self.examples) or None,
        }


@dataclass(frozen=True)
class QualityResult:
    n_rows: int
    checks: tuple[QualityCheck, ...]

    @property
    def failures(self) -> tuple[QualityCheck, ...]:
        return tuple(check for check in self.checks if check.failed)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def reason(self) -> str | None:
        """What the run's row says when the month failed, else None."""
        if self.ok:
            return None
        failures = self.failures
        return f"data quality failed on {len(failures)} check(s): " + " | ".join(
            check.describe() for check in failures
        )


def check_quality(
    current: pd.DataFrame,
    reference: pd.DataFrame,
    schema: DatasetSchema,
    config: QualityConfig,
) -> QualityResult:
    """Every contract rule, unseen free-text levels and each column's null share.

    The schema's rules allow no broken row (loosen them in the schema); null shares are judged
    here, not by the schema, so that drift.yaml's limits apply and each column's share is kept
    even when it passes — the history then shows missing values creeping up.
    """
    n_rows = len(current)
    contract = validate_frame(current, replace(schema, max_null_share=1.0))
    checks = [_from_finding(finding, n_rows) for finding in contract.findings]
    broken_columns = {check.column for check in checks}
    checks += _unseen_levels(current, reference, schema, config, broken_columns)
    checks += _null_shares(current, reference, schema, config)
    return QualityResult(n_rows, tuple(checks))


def _from_finding(finding: Finding, n_rows: int) -> QualityCheck:
    share = finding.count / n_rows if n_rows else 1.0
    examples = tuple(
        dict.fromkeys(_example(example, finding.column) for example in finding.examples)
    )
    return QualityCheck(
        finding.column, finding.rule, finding.count, share, 0.0, True, None, examples
    )


def _example(example: Mapping[str, Any], column: str) -> str:
    """The offending value when the finding has one, else the row's other fields."""
    if column in example:
        return repr(example[column])
    shown = {key: value for key, value in example.items() if key != "row"}
    return ", ".join(f"{key}={value!r}" for key, value in shown.items()) or f"row {example['row']}"


def _unseen_levels(
    current: pd.DataFrame,
    reference: pd.DataFrame,
    schema: DatasetSchema,
    config: QualityConfig,
    broken_columns: set[str],
) -> list[QualityCheck]:
    """Levels of a free-text column (no allowed list in the schema) that the reference sample
    never held: a new code, a renamed category, a shifted column."""
    checks = []
    for name, levels in schema.categorical.items():
        if levels or name in broken_columns or name not in current or name not in reference:
            continue
        values = current[name].dropna().astype(str)
        unseen = values[~values.isin(set(reference[name].dropna().astype(str)))]
        share = len(unseen) / len(current) if len(current) else 0.0
        checks.append(
            QualityCheck(
                name,
                UNSEEN_LEVEL,
                len(unseen),
                share,
                config.max_unseen_share,
                share > config.max_unseen_share,
                examples=tuple(repr(level) for level in unseen.unique()[:EXAMPLES]),
            )
        )
    return checks


def _null_shares(
    current: pd.DataFrame, reference: pd.DataFrame, schema: DatasetSchema, config: QualityConfig
) -> list[QualityCheck]:
    """Each input column's missing share, failed above the absolute limit or when it rose more
    than ``max_null_increase`` over the reference's (missing at random moves no distance)."""
    limit = config.null_limit(schema)
    checks = []
    for name in dict.fromkeys([*schema.features, *schema.date_columns]):
        if name not in current:
            continue  # the contract reported the missing column
        nulls = int(current[name].isna().sum())
        share = nulls / len(current) if len(current) else 0.0
        before = float(reference[name].isna().mean()) if name in reference else math.nan
        threshold = limit if math.isnan(before) else min(limit, before + config.max_null_increase)
        ids = (
            current.loc[current[name].isna(), schema.id_column]
            if schema.id_column in current
            else []
        )
        checks.append(
            QualityCheck(
                name,
                NULL_SHARE,
                nulls,
                share,
                threshold,
                share > threshold,
                None if math.isnan(before) else before,
                tuple(f"{schema.id_column}={value!r}" for value in list(ids)[:EXAMPLES]),
            )
        )
    return checks
