"""Dataset schema: which columns are the id, the month, the features and (optionally) the truth.

The pipeline reads column roles from here, never from the synthetic generator, so a team's
own CSV/Parquet trains as soon as a schema file describes it. Besides the model inputs a file
may carry date columns (raw dates, checked to parse, kept for features derived from them) and
columns that are excluded (accepted and ignored, with the reason a person gave).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from persona.config_files import read_yaml
from persona.errors import ConfigurationError


@dataclass(frozen=True)
class NumericSpec:
    min: float | None = None
    max: float | None = None
    integer: bool = False
    unit: str = ""


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
    # Raw dates (name -> strptime format, None: let pandas infer): not model inputs themselves;
    # validation checks they parse, ingest keeps them for the features derived from them.
    date_columns: Mapping[str, str | None] = field(default_factory=dict)
    # Columns a file carries that are ignored (name -> why): not validated, not stored by ingest.
    excluded: Mapping[str, str] = field(default_factory=dict)

    @property
    def features(self) -> list[str]:
        return [*self.numeric, *self.categorical]

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
            "date_columns": {name: {"format": fmt} for name, fmt in self.date_columns.items()},
            "excluded": dict(self.excluded),
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
    date_columns = _date_columns(raw.get("date_columns"), source)
    excluded = _excluded(raw.get("excluded"), source)
    taken = {
        "feature or role": set(numeric) | set(categorical) | roles,
        "passthrough column": set(passthrough),
    }
    for section, names in (("date_columns", set(date_columns)), ("excluded", set(excluded))):
        for what, others in taken.items():
            clash = sorted(names & others)
            if clash:
                raise ConfigurationError(
                    f"{source}: {section} {clash}: already a {what}; a column has one role"
                )
        taken["date column"] = set(date_columns)
    share = float(raw.get("max_null_share", 0.05))
    if not 0 <= share <= 1:
        raise ConfigurationError(f"{source}: max_null_share must be in [0, 1], got {share}")
    return DatasetSchema(
        id_column=id_column,
        numeric=numeric,
        categorical=categorical,
        month_column=str(raw.get("month_column", "snapshot_month")),
        truth_column=raw.get("truth_column"),
        max_null_share=share,
        min_rows=int(raw.get("min_rows", 50)),
        table=raw.get("table"),
        passthrough=passthrough,
        date_columns=date_columns,
        excluded=excluded,
    )


def _date_columns(raw: Any, source: str) -> dict[str, str | None]:
    """``name: {format: "%d-%m-%Y"}`` (or ``name:`` / ``format: null``: pandas infers it)."""
    if not raw:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigurationError(
            f"{source}: date_columns must map column -> {{format: ...}}, got {type(raw).__name__}"
        )
    columns: dict[str, str | None] = {}
    for name, spec in raw.items():
        spec = spec or {}
        if not isinstance(spec, Mapping) or set(spec) - {"format"}:
            raise ConfigurationError(
                f"{source}: date column {name!r}: expected {{format: STRFTIME or null}}, "
                f"got {spec!r}"
            )
        fmt = spec.get("format")
        if fmt is not None and (not isinstance(fmt, str) or "%" not in fmt):
            raise ConfigurationError(
                f"{source}: date column {name!r}: format must be a strftime pattern such as "
                f"'%d-%m-%Y' (or null), got {fmt!r}"
            )
        columns[str(name)] = fmt
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
