"""The persona catalogue: named personas with per-feature distributions and drift scenarios."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from persona.config_files import read_yaml
from persona.data.schema import DatasetSchema, NumericSpec
from persona.errors import ConfigurationError


@dataclass(frozen=True)
class PersonaSpec:
    name: str
    description: str
    share: float
    numeric: Mapping[str, tuple[float, float]]  # mean, sd in original units
    categorical: Mapping[str, Mapping[str, float]]  # level -> probability


@dataclass(frozen=True)
class Catalogue:
    schema: DatasetSchema
    personas: tuple[PersonaSpec, ...]
    scenarios: Mapping[str, Mapping[str, Any]]

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.personas]

    def persona(self, name: str) -> PersonaSpec:
        for spec in self.personas:
            if spec.name == name:
                return spec
        raise ConfigurationError(f"unknown persona {name!r}; known: {self.names}")


def _persona(raw: Mapping[str, Any], schema: DatasetSchema, source: str) -> PersonaSpec:
    name = raw.get("name")
    if not name:
        raise ConfigurationError(f"{source}: every persona needs a 'name'")
    numeric = {}
    for feature in schema.numeric:
        try:
            mean, sd = raw["numeric"][feature]
        except (KeyError, TypeError, ValueError):
            raise ConfigurationError(
                f"{source}: persona {name!r} needs numeric.{feature} as [mean, sd]"
            ) from None
        numeric[feature] = (float(mean), float(sd))
    categorical = {}
    for feature, levels in schema.categorical.items():
        probs = dict((raw.get("categorical") or {}).get(feature) or {})
        if not probs:
            raise ConfigurationError(f"{source}: persona {name!r} needs categorical.{feature}")
        unknown = set(probs) - set(levels or probs)
        if unknown:
            raise ConfigurationError(
                f"{source}: persona {name!r} categorical.{feature}: unknown levels {sorted(unknown)}"
            )
        total = sum(probs.values())
        if total <= 0:
            raise ConfigurationError(f"{source}: persona {name!r} categorical.{feature} sums to 0")
        categorical[feature] = {k: float(v) / total for k, v in probs.items()}
    return PersonaSpec(
        name=str(name),
        description=str(raw.get("description", "")),
        share=float(raw.get("share", 0.0)),
        numeric=numeric,
        categorical=categorical,
    )


def catalogue_from_dict(raw: Mapping[str, Any], source: str = "catalogue") -> Catalogue:
    dataset = raw.get("dataset") or {}
    numeric = {
        name: NumericSpec(
            min=spec.get("min"),
            max=spec.get("max"),
            integer=bool(spec.get("integer")),
            unit=spec.get("unit", ""),
        )
        for name, spec in (raw.get("numeric_features") or {}).items()
    }
    categorical = {
        name: tuple(levels) for name, levels in (raw.get("categorical_features") or {}).items()
    }
    schema = DatasetSchema(
        id_column=dataset.get("id_column", "customer_id"),
        month_column=dataset.get("month_column", "snapshot_month"),
        truth_column=dataset.get("truth_column", "true_persona"),
        numeric=numeric,
        categorical=categorical,
    )
    personas = tuple(_persona(p, schema, source) for p in raw.get("personas") or [])
    if len(personas) < 2:
        raise ConfigurationError(f"{source}: at least two personas are needed")
    total = sum(p.share for p in personas)
    if abs(total - 1.0) > 1e-6:
        raise ConfigurationError(f"{source}: persona shares must sum to 1, got {total:.4f}")
    scenarios = dict(raw.get("drift_scenarios") or {})
    if "new_persona" in scenarios:
        _persona(scenarios["new_persona"]["persona"], schema, f"{source}: new_persona")
    return Catalogue(schema=schema, personas=personas, scenarios=scenarios)


def load_catalogue(path: Path) -> Catalogue:
    raw = read_yaml(path, "persona catalogue")
    return catalogue_from_dict(raw, source=str(path))
