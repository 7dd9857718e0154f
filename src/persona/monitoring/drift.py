"""Drift thresholds and verdicts, free of Evidently so they are fast to import and to test.

``04_monitoring/drift.yaml`` becomes a frozen :class:`DriftConfig`; Evidently's
``snapshot.dict()`` (made by :mod:`persona.adapters.evidently_report`) becomes a
:class:`DriftResult`. Each per-column score is judged in the direction its method needs:
p-value tests (Evidently's automatic choice for references of <= 1000 rows) drift when the
score is BELOW the threshold, distance tests (its choice for larger references) when ABOVE.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

from persona.config_files import read_yaml
from persona.data.schema import DatasetSchema
from persona.errors import ConfigurationError, InvalidInputError
from persona.monitoring.personas import PersonaConfig, persona_config_from_dict
from persona.monitoring.quality import QualityConfig, quality_config_from_dict
from persona.monitoring.retrain_policy import RetrainPolicy, retrain_policy_from_dict
from persona.monitoring.slow_drift import SlowDriftConfig, slow_drift_config_from_dict

logger = logging.getLogger(__name__)

NUMERIC, CATEGORICAL = "numeric", "categorical"


@dataclass(frozen=True)
class StatTest:
    """What Evidently 0.7's stattest ``name`` means: how to read its score, where it applies."""

    name: str  # what drift.yaml and Evidently's ``method=`` accept
    display_name: str  # what ``snapshot.dict()`` reports as the ValueDrift method
    kind: Literal["p_value", "distance"]
    inclusive: bool  # the threshold itself counts as drift (<= / >= rather than < / >)
    default_threshold: float
    types: frozenset[str]


def _test(name, display, kind, inclusive, default, *types) -> StatTest:
    return StatTest(name, display, kind, inclusive, default, frozenset(types))


# Read off evidently/legacy/calculations/stattests/*.py (0.7.23). Text-only tests are left out:
# the schema has no text columns. Note TVD reports a permutation p-value, not a distance.
STAT_TESTS: dict[str, StatTest] = {
    t.name: t
    for t in (
        _test("ks", "K-S p_value", "p_value", True, 0.05, NUMERIC),
        _test("cramer_von_mises", "Cramer-von Mises", "p_value", True, 0.1, NUMERIC),
        _test("anderson", "Anderson-Darling", "p_value", False, 0.1, NUMERIC),
        _test("es", "Epps-Singleton", "p_value", False, 0.05, NUMERIC),
        _test("mannw", "Mann-Whitney U-rank test", "p_value", False, 0.05, NUMERIC),
        _test("t_test", "t_test", "p_value", False, 0.05, NUMERIC),
        _test("empirical_mmd", "empirical_mmd", "p_value", False, 0.1, NUMERIC),
        _test("chisquare", "chi-square p_value", "p_value", False, 0.05, CATEGORICAL),
        _test("z", "Z-test p_value", "p_value", False, 0.05, CATEGORICAL),
        _test("fisher_exact", "Fisher's Exact test", "p_value", False, 0.1, CATEGORICAL),
        _test("g_test", "g_test", "p_value", False, 0.1, CATEGORICAL),
        _test("TVD", "Total-Variation-Distance", "p_value", False, 0.1, CATEGORICAL),
        _test("wasserstein", "Wasserstein distance (normed)", "distance", True, 0.1, NUMERIC),
        _test("ed", "Energy-distance", "distance", False, 0.1, NUMERIC),
        _test("psi", "PSI", "distance", True, 0.1, NUMERIC, CATEGORICAL),
        _test("kl_div", "Kullback-Leibler divergence", "distance", True, 0.1, NUMERIC, CATEGORICAL),
        _test(
            "jensenshannon", "Jensen-Shannon distance", "distance", True, 0.1, NUMERIC, CATEGORICAL
        ),
        _test("hellinger", "Hellinger distance", "distance", True, 0.1, NUMERIC, CATEGORICAL),
    )
}
_BY_DISPLAY_NAME = {t.display_name: t for t in STAT_TESTS.values()}
# Registered but unusable here: g_test feeds raw reference counts to scipy as expected
# frequencies, so it raises unless reference and current have exactly the same size.
UNUSABLE_TESTS = {"g_test": "it fails whenever reference and current differ in size"}


def stat_test(method: str) -> StatTest | None:
    """The test behind a config name (``psi``) or a report's display name (``PSI``)."""
    return STAT_TESTS.get(method) or _BY_DISPLAY_NAME.get(method)


def is_drifted(score: float, threshold: float, test: StatTest) -> bool:
    """Evidently's own comparison for ``test``: p-values drift low, distances drift high."""
    if math.isnan(score):
        return False
    if test.kind == "p_value":
        return score <= threshold if test.inclusive else score < threshold
    return score >= threshold if test.inclusive else score > threshold


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class MethodSpec:
    """A column's test: ``None`` method = Evidently picks by sample size and type."""

    method: str | None = None
    threshold: float | None = None


class EnoughData(NamedTuple):
    ok: bool
    reason: str | None = None


@dataclass(frozen=True)
class DriftConfig:
    drift_share: float = 0.1
    min_rows: int = 1000
    reference_sample_rows: int = 20_000
    all_clear_alert: bool = True
    numeric: MethodSpec = field(default_factory=MethodSpec)
    categorical: MethodSpec = field(default_factory=MethodSpec)
    columns: Mapping[str, MethodSpec] = field(default_factory=dict)
    quality: QualityConfig = field(default_factory=QualityConfig)
    slow_drift: SlowDriftConfig = field(default_factory=SlowDriftConfig)
    retrain_policy: RetrainPolicy = field(default_factory=RetrainPolicy)
    personas: PersonaConfig = field(default_factory=PersonaConfig)

    def enough_data(self, n_current: int, n_reference: int | None = None) -> EnoughData:
        return check_enough_data(n_current, self, n_reference=n_reference)


_TOP_KEYS = {
    "drift_share",
    "min_rows",
    "reference_sample_rows",
    "all_clear_alert",
    "defaults",
    "columns",
    "data_quality",
    "slow_drift",
    "retrain_policy",
    "personas",
}


def _number(value: Any, key: str, source: str, expected: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ConfigurationError(f"{source}: {key} must be {expected}, got {value!r}")
    return float(value)


def _integer(value: Any, key: str, source: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(f"{source}: {key} must be an integer >= {minimum}, got {value!r}")
    return value


def _method_spec(raw: Any, key: str, source: str) -> MethodSpec:
    if raw is None:
        return MethodSpec()
    if not isinstance(raw, Mapping):
        raise ConfigurationError(
            f"{source}: {key} must be a mapping {{method, threshold}}, got {raw!r}"
        )
    unknown = set(raw) - {"method", "threshold"}
    if unknown:
        raise ConfigurationError(
            f"{source}: {key}: unknown keys {sorted(unknown)}, expected method and threshold"
        )
    method, threshold = raw.get("method"), raw.get("threshold")
    if method is None:
        if threshold is not None:
            # Evidently's automatic choice may be a p-value or a distance test depending on the
            # reference size, so a bare threshold could silently flip its meaning.
            raise ConfigurationError(
                f"{source}: {key}.threshold {threshold!r} needs a {key}.method: "
                "the automatic method is a p-value or a distance depending on sample size"
            )
        return MethodSpec()
    test = STAT_TESTS.get(method) if isinstance(method, str) else None
    if test is None:
        raise ConfigurationError(
            f"{source}: {key}.method must be one of {sorted(STAT_TESTS)} or null, got {method!r}"
        )
    if method in UNUSABLE_TESTS:
        raise ConfigurationError(
            f"{source}: {key}.method {method!r} cannot be used: {UNUSABLE_TESTS[method]}"
        )
    if threshold is None:
        return MethodSpec(method, None)
    if test.kind == "p_value":
        value = _number(threshold, f"{key}.threshold", source, "a p-value in (0, 1)")
        if not 0 < value < 1:
            raise ConfigurationError(
                f"{source}: {key}.threshold must be a p-value in (0, 1) for {method}, "
                f"got {threshold!r}"
            )
    else:
        value = _number(threshold, f"{key}.threshold", source, "a distance > 0")
        if value <= 0:
            raise ConfigurationError(
                f"{source}: {key}.threshold must be a distance > 0 for {method}, got {threshold!r}"
            )
    return MethodSpec(method, value)


def drift_config_from_dict(raw: Any, source: str = "drift config") -> DriftConfig:
    """Parse and check a drift config mapping; errors name the key, the value and the rule."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigurationError(f"{source}: expected a mapping at top level, got {raw!r}")
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise ConfigurationError(
            f"{source}: unknown keys {sorted(unknown)}; expected some of {sorted(_TOP_KEYS)}"
        )
    defaults = DriftConfig()
    share = _number(
        raw.get("drift_share", defaults.drift_share), "drift_share", source, "a number in (0, 1]"
    )
    if not 0 < share <= 1:
        raise ConfigurationError(
            f"{source}: drift_share must be a number in (0, 1], got {raw.get('drift_share')!r}"
        )
    min_rows = _integer(raw.get("min_rows", defaults.min_rows), "min_rows", source, 1)
    sample = _integer(
        raw.get("reference_sample_rows", defaults.reference_sample_rows),
        "reference_sample_rows",
        source,
        min_rows,
    )
    all_clear = raw.get("all_clear_alert", defaults.all_clear_alert)
    if not isinstance(all_clear, bool):
        raise ConfigurationError(
            f"{source}: all_clear_alert must be true or false, got {all_clear!r}"
        )
    type_defaults = raw.get("defaults") or {}
    if not isinstance(type_defaults, Mapping) or set(type_defaults) - {NUMERIC, CATEGORICAL}:
        raise ConfigurationError(
            f"{source}: defaults must be a mapping with keys numeric and categorical, "
            f"got {type_defaults!r}"
        )
    numeric = _method_spec(type_defaults.get(NUMERIC), f"defaults.{NUMERIC}", source)
    categorical = _method_spec(type_defaults.get(CATEGORICAL), f"defaults.{CATEGORICAL}", source)
    _check_types(numeric, NUMERIC, f"defaults.{NUMERIC}", source)
    _check_types(categorical, CATEGORICAL, f"defaults.{CATEGORICAL}", source)
    columns_raw = raw.get("columns") or {}
    if not isinstance(columns_raw, Mapping):
        raise ConfigurationError(
            f"{source}: columns must map column names to {{method, threshold}}, "
            f"got {columns_raw!r}"
        )
    columns = {
        str(name): _method_spec(spec, f"columns.{name}", source)
        for name, spec in columns_raw.items()
    }
    return DriftConfig(
        drift_share=share,
        min_rows=min_rows,
        reference_sample_rows=sample,
        all_clear_alert=all_clear,
        numeric=numeric,
        categorical=categorical,
        columns=columns,
        quality=quality_config_from_dict(raw.get("data_quality"), source),
        slow_drift=slow_drift_config_from_dict(raw.get("slow_drift"), source),
        retrain_policy=retrain_policy_from_dict(raw.get("retrain_policy"), source),
        personas=persona_config_from_dict(raw.get("personas"), source),
    )


def _check_types(spec: MethodSpec, column_type: str, key: str, source: str) -> None:
    test = STAT_TESTS.get(spec.method) if spec.method else None
    if test is not None and column_type not in test.types:
        raise ConfigurationError(
            f"{source}: {key}.method {spec.method!r} works on {sorted(test.types)} columns, "
            f"not {column_type}"
        )


def load_drift_config(path: Path) -> DriftConfig:
    raw = read_yaml(path, "drift config")
    return drift_config_from_dict(raw, source=str(path))


def check_enough_data(
    n_current: int, config: DriftConfig, n_reference: int | None = None
) -> EnoughData:
    """Too few current rows make every test noisy: say so rather than trigger a retrain."""
    if n_current < config.min_rows:
        return EnoughData(
            False, f"only {n_current} current rows, drift needs at least {config.min_rows}"
        )
    if n_reference is not None and n_reference < config.min_rows:
        return EnoughData(
            False, f"only {n_reference} reference rows, drift needs at least {config.min_rows}"
        )
    return EnoughData(True, None)


def feature_columns(schema: DatasetSchema) -> list[str]:
    """The columns drift is checked on: the model inputs (derived features included, raw
    columns that only feed them left out), never the id, month or truth."""
    excluded = {schema.id_column, schema.month_column, schema.truth_column}
    columns = [c for c in schema.model_schema.features if c not in excluded]
    if not columns:
        raise ConfigurationError("the schema names no feature columns to check for drift")
    return columns


def column_tests(config: DriftConfig, schema: DatasetSchema) -> dict[str, MethodSpec]:
    """Each feature's method and threshold: its override, else its type's default."""
    numeric = set(schema.model_schema.numeric)
    columns = feature_columns(schema)
    unknown = set(config.columns) - set(columns)
    if unknown:
        raise ConfigurationError(
            f"drift config: columns {sorted(unknown)} are not feature columns of the schema "
            f"(features: {columns})"
        )
    resolved: dict[str, MethodSpec] = {}
    for name in columns:
        column_type = NUMERIC if name in numeric else CATEGORICAL
        spec = config.columns.get(name)
        if spec is None or spec.method is None:
            spec = config.numeric if column_type == NUMERIC else config.categorical
        else:
            _check_types(spec, column_type, f"columns.{name}", "drift config")
        resolved[name] = spec
    return resolved


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    method: str  # Evidently stattest name (``wasserstein``), or its display name if unknown
    score: float
    threshold: float
    drifted: bool

    def to_dict(self) -> dict[str, Any]:
        """Keys match the ``drift_columns`` history table."""
        return {
            "column_name": self.column,
            "method": self.method,
            "score": None if math.isnan(self.score) else self.score,
            "threshold": None if math.isnan(self.threshold) else self.threshold,
            "drifted": self.drifted,
        }


@dataclass(frozen=True)
class DriftResult:
    """One monitoring verdict; ``reason`` says why the run is not an all-clear (or None)."""

    n_reference: int
    n_current: int
    columns: tuple[ColumnDrift, ...]
    drift_share: float | None  # share of checked columns that drifted; None = not checked
    dataset_drift: bool
    enough_data: bool = True
    reason: str | None = None

    @property
    def drifted_columns(self) -> tuple[str, ...]:
        return tuple(c.column for c in self.columns if c.drifted)

    @classmethod
    def insufficient(cls, n_reference: int, n_current: int, reason: str | None) -> DriftResult:
        """A run that checked nothing: never drift, so never a retrain on a thin sample."""
        return cls(n_reference, n_current, (), None, False, False, reason or "not enough data")

    @classmethod
    def not_checked(
        cls, n_reference: int, n_current: int, enough_data: bool, reason: str
    ) -> DriftResult:
        """A month whose data failed its quality checks: drift is not judged on broken data."""
        return cls(n_reference, n_current, (), None, False, enough_data, reason)


def _type_of(entry: Mapping[str, Any]) -> str:
    config = entry.get("config") or entry.get("params") or {}
    return str(config.get("type", "")).rsplit(":", 1)[-1]


def _column_statuses(tests: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Evidently's own per-column verdicts (FAIL = drift), to cross-check ours."""
    statuses = {}
    for test in tests:
        params = (test.get("metric_config") or {}).get("params") or {}
        if str(params.get("type", "")).endswith(":ValueDrift") and "column" in params:
            status = test.get("status")
            statuses[str(params["column"])] = str(getattr(status, "value", status))
    return statuses


def interpret_report(
    report_dict: Mapping[str, Any], config: DriftConfig, n_reference: int, n_current: int
) -> DriftResult:
    """Turn Evidently's ``snapshot.dict()`` of a DataDriftPreset run into a :class:`DriftResult`."""
    metrics = report_dict.get("metrics") if isinstance(report_dict, Mapping) else None
    if not isinstance(metrics, Sequence):
        raise InvalidInputError("not an Evidently snapshot dict: no 'metrics' list")
    statuses = _column_statuses(report_dict.get("tests") or [])
    columns: list[ColumnDrift] = []
    evidently_share: float | None = None
    for metric in metrics:
        kind = _type_of(metric)
        if kind == "DriftedColumnsCount":
            evidently_share = float((metric.get("value") or {}).get("share", math.nan))
        if kind != "ValueDrift":
            continue
        params = metric["config"]
        name, method = str(params["column"]), params.get("method")
        score = math.nan if metric.get("value") is None else float(metric["value"])
        test = stat_test(str(method)) if method else None
        threshold = params.get("threshold")
        if threshold is None and test is not None:
            threshold = test.default_threshold
        status = statuses.get(name)
        if test is not None and threshold is not None:
            drifted = is_drifted(score, float(threshold), test)
            if status is not None and drifted != (status == "FAIL"):
                logger.warning(
                    "column %s: %s score %.4g vs threshold %s reads as drifted=%s, "
                    "but Evidently's test says %s",
                    name,
                    method,
                    score,
                    threshold,
                    drifted,
                    status,
                )
        elif status is not None:  # a method we do not know: trust Evidently's own test
            drifted = status == "FAIL"
        else:
            raise InvalidInputError(
                f"column {name}: unknown drift method {method!r} and no test status to read"
            )
        columns.append(
            ColumnDrift(
                column=name,
                method=test.name if test is not None else str(method),
                score=score,
                threshold=math.nan if threshold is None else float(threshold),
                drifted=drifted,
            )
        )
    if not columns:
        raise InvalidInputError("the Evidently report holds no ValueDrift metrics")
    result = summarise(columns, config, n_reference, n_current)
    if evidently_share is not None and not math.isclose(
        result.drift_share, evidently_share, abs_tol=1e-9
    ):
        logger.warning(
            "drifted share %.3f differs from Evidently's DriftedColumnsCount %.3f",
            result.drift_share,
            evidently_share,
        )
    return result


def summarise(
    columns: Sequence[ColumnDrift], config: DriftConfig, n_reference: int, n_current: int
) -> DriftResult:
    """The dataset verdict of per-column verdicts, whichever engine judged the columns."""
    drifted = [c.column for c in columns if c.drifted]
    share = len(drifted) / len(columns)
    enough = check_enough_data(n_current, config, n_reference=n_reference)
    dataset_drift = enough.ok and share >= config.drift_share
    if not enough.ok:
        reason = enough.reason
    elif dataset_drift:
        reason = (
            f"{len(drifted)} of {len(columns)} columns drifted "
            f"(share {share:.2f} >= {config.drift_share:.2f}): {', '.join(drifted)}"
        )
    else:
        reason = None
    return DriftResult(
        n_reference=n_reference,
        n_current=n_current,
        columns=tuple(columns),
        drift_share=share,
        dataset_drift=dataset_drift,
        enough_data=enough.ok,
        reason=reason,
    )
