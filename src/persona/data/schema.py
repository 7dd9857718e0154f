"""Dataset schema: which columns are the id, the month, the features and (optionally) the truth.

The pipeline reads column roles from here, never from the synthetic generator, so a team's
own CSV/Parquet trains as soon as a schema file describes it.

Two views of the columns: ``features`` are the raw columns a model takes (what a file or a
scoring request carries); ``model_schema`` is the schema as the estimator sees it, whose numeric
features are the raw numeric ones that are model inputs plus the ``derived:`` features computed
from raw columns (``persona.data.derived``). Without ``derived:`` the two are the same.
A file may also carry columns that are ``excluded`` (accepted and ignored, with the
reason a person gave).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from functools import cached_property
from pathlib import Path
from typing import Any

from persona.config_files import read_yaml
from persona.data.derived import DerivedFeatures
from persona.data.derived_syntax import parse_derived
from persona.errors import ConfigurationError


@dataclass(frozen=True)
class NumericSpec:
    min: float | None = None
    max: float | None = None
    integer: bool = False
    unit: str = ""


@dataclass(frozen=True)
class DateSpec:
    """A date column (``date_columns:``): text in ``format`` (strptime), or ISO when None."""

    format: str | None = None


@dataclass(frozen=True)
class DatasetSchema:
    id_column: str
    numeric: Mapping[str, NumericSpec]
    categorical: Mapping[str, tuple[str, ...] | None]
    month_column: str = "snapshot_month"
    truth_column: str | None = None
    max_null_share: float = 0.05
    min_rows: int = 50
    table: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    # Columns a file or request may carry that are neither model inputs nor roles above (e.g. a
    # CRM segment): stored by ingest, accepted and reported as ignored by the scoring API.
    passthrough: tuple[str, ...] = ()
    # Raw date columns (never model inputs themselves; derived features read them).
    date_columns: Mapping[str, DateSpec] = field(default_factory=dict)
    derived: DerivedFeatures = field(default_factory=DerivedFeatures)
    # Raw numeric columns that only feed derived features (every other one is a model input).
    inputs_only: tuple[str, ...] = ()
    # Columns a file carries that are ignored (name -> why): not validated, not stored by ingest.
    excluded: Mapping[str, str] = field(default_factory=dict)

    @property
    def features(self) -> list[str]:
        """The raw columns a model takes: numeric, the dates derived features read, categorical."""
        return [*self.numeric, *self.input_dates, *self.categorical]

    @property
    def input_dates(self) -> list[str]:
        """The date columns some derived feature reads, in declaration order."""
        read = set(self.derived.columns)
        return [name for name in self.date_columns if name in read]

    @cached_property
    def model_schema(self) -> DatasetSchema:
        """The schema as the estimator sees it: numeric model inputs are the raw numeric
        features not listed under ``inputs_only``, then the derived features (their ranges and
        units as a numeric feature's); no dates, nothing derived. ``self`` when nothing is."""
        if not self.derived and not self.inputs_only:
            return self
        numeric = {n: spec for n, spec in self.numeric.items() if n not in self.inputs_only}
        for feature in self.derived:
            numeric[feature.name] = NumericSpec(feature.min, feature.max, False, feature.unit)
        return replace(
            self, numeric=numeric, date_columns={}, derived=DerivedFeatures(), inputs_only=()
        )

    def with_reference_date(self, day: date | str | None) -> DatasetSchema:
        """The schema with ``day`` frozen as the reference date of its date functions, when
        they need one and the file gives none (a model answers the same tomorrow as today)."""
        derived = self.derived.with_reference_date(day)
        return self if derived is self.derived else replace(self, derived=derived)

    @property
    def reference_date(self) -> date | None:
        return self.derived.reference_date

    @property
    def key(self) -> list[str]:
        return [self.id_column, self.month_column]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id_column": self.id_column,
            "month_column": self.month_column,
            "truth_column": self.truth_column,
            "max_null_share": self.max_null_share,
            "min_rows": self.min_rows,
            "numeric_features": {
                name: {k: v for k, v in vars(spec).items() if v not in (None, "")}
                for name, spec in self.numeric.items()
            },
            "categorical_features": {
                name: list(levels) if levels else None for name, levels in self.categorical.items()
            },
            "passthrough": list(self.passthrough),
            # only when used, so a schema without them writes what it always wrote
            **(
                {"date_columns": {n: {"format": d.format} for n, d in self.date_columns.items()}}
                if self.date_columns
                else {}
            ),
            **({"derived": self.derived.to_dict()} if self.derived else {}),
            **({"inputs_only": list(self.inputs_only)} if self.inputs_only else {}),
            **({"excluded": dict(self.excluded)} if self.excluded else {}),
        }


def schema_from_dict(raw: Mapping[str, Any], source: str = "schema") -> DatasetSchema:
    """Parse and check a schema mapping; errors name the file and the offending key."""
    if not isinstance(raw, Mapping):
        raise ConfigurationError(f"{source}: expected a mapping at top level")
    try:
        id_column = str(raw["id_column"])
    except KeyError:
        raise ConfigurationError(f"{source}: 'id_column' is required") from None
    numeric_raw = raw.get("numeric_features") or {}
    categorical_raw = raw.get("categorical_features") or {}
    if not numeric_raw:
        raise ConfigurationError(f"{source}: 'numeric_features' must list at least one column")
    numeric: dict[str, NumericSpec] = {}
    for name, spec in numeric_raw.items():
        spec = spec or {}
        unknown = set(spec) - {"min", "max", "integer", "unit"}
        if unknown:
            raise ConfigurationError(
                f"{source}: numeric feature {name!r}: unknown keys {sorted(unknown)}"
            )
        numeric[str(name)] = NumericSpec(
            min=spec.get("min"),
            max=spec.get("max"),
            integer=bool(spec.get("integer", False)),
            unit=str(spec.get("unit", "")),
        )
    categorical = {
        str(name): tuple(str(v) for v in levels) if levels else None
        for name, levels in categorical_raw.items()
    }
    overlap = set(numeric) & set(categorical)
    if overlap:
        raise ConfigurationError(
            f"{source}: columns both numeric and categorical: {sorted(overlap)}"
        )
    passthrough = tuple(str(c) for c in raw.get("passthrough") or ())
    roles = {id_column, raw.get("month_column", "snapshot_month"), raw.get("truth_column")}
    clash = sorted(set(passthrough) & (set(numeric) | set(categorical) | roles))
    if clash:
        raise ConfigurationError(
            f"{source}: passthrough columns {clash} are already features or roles"
        )
    month_column = str(raw.get("month_column", "snapshot_month"))
    date_columns = _date_columns(raw.get("date_columns"), source)
    named_roles = {
        id_column: "the id column",
        month_column: "the month column",
        **({raw["truth_column"]: "the truth column"} if raw.get("truth_column") else {}),
        **{name: "a passthrough column" for name in passthrough},
        **{name: "a categorical feature" for name in categorical},
    }
    clash = sorted(set(date_columns) & (set(numeric) | set(named_roles)))
    if clash:
        raise ConfigurationError(f"{source}: date columns {clash} are already features or roles")
    derived = parse_derived(
        raw.get("derived"),
        list(numeric),
        {name: spec.format for name, spec in date_columns.items()},
        named_roles,
        source,
    )
    inputs_only = tuple(str(c) for c in raw.get("inputs_only") or ())
    for name in inputs_only:
        if name not in numeric:
            raise ConfigurationError(
                f"{source}: inputs_only column {name!r} is not a numeric feature of the schema"
            )
        if name not in derived.columns:
            raise ConfigurationError(
                f"{source}: inputs_only column {name!r} is read by no derived feature"
            )
    excluded = _excluded(raw.get("excluded"), source)
    clash = sorted(set(excluded) & (set(numeric) | set(named_roles) | set(date_columns)))
    if clash:
        raise ConfigurationError(
            f"{source}: excluded {clash}: already a feature, role or date column; a column has "
            "one role"
        )
    share = float(raw.get("max_null_share", 0.05))
    if not 0 <= share <= 1:
        raise ConfigurationError(f"{source}: max_null_share must be in [0, 1], got {share}")
    return DatasetSchema(
        id_column=id_column,
        numeric=numeric,
        categorical=categorical,
        month_column=month_column,
        truth_column=raw.get("truth_column"),
        max_null_share=share,
        min_rows=int(raw.get("min_rows", 50)),
        table=raw.get("table"),
        passthrough=passthrough,
        date_columns=date_columns,
        derived=derived,
        inputs_only=inputs_only,
        excluded=excluded,
    )


def _date_columns(raw: Any, source: str) -> dict[str, DateSpec]:
    """``date_columns: {name: {format: "%d-%m-%Y" or null}}`` (a bare name: ISO dates)."""
    if not raw:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigurationError(f"{source}: 'date_columns' must be a mapping of name: {{format}}")
    columns = {}
    for name, spec in raw.items():
        spec = spec or {}
        if not isinstance(spec, Mapping) or set(spec) - {"format"}:
            raise ConfigurationError(
                f"{source}: date column {name!r}: expected {{format: '%d-%m-%Y' or null}}, "
                f"got {spec!r}"
            )
        fmt = spec.get("format")
        if fmt is not None and (not isinstance(fmt, str) or "%" not in fmt):
            raise ConfigurationError(
                f"{source}: date column {name!r}: format must be a strptime pattern such as "
                f"'%d-%m-%Y' (or null for YYYY-MM-DD), got {fmt!r}"
            )
        columns[str(name)] = DateSpec(fmt)
    return columns


def _excluded(raw: Any, source: str) -> dict[str, str]:
    """``name: reason``; a bare list of names is accepted too (no reason given)."""
    if not raw:
        return {}
    if isinstance(raw, Mapping):
        return {str(name): "" if reason is None else str(reason) for name, reason in raw.items()}
    if isinstance(raw, list | tuple):
        return {str(name): "" for name in raw}
    raise ConfigurationError(
        f"{source}: excluded must map column -> reason, got {type(raw).__name__}"
    )


def load_schema(path: Path) -> DatasetSchema:
    raw = read_yaml(path, "schema file")
    return schema_from_dict(raw, source=str(path))
