"""The persona catalogue: named personas with per-feature distributions and drift scenarios.

A numeric feature is drawn per persona from ``[mean, sd]`` in original units. Two optional
keys per feature describe data that is harder to cluster, without touching the schema (the data
contract only knows ranges and units): ``distribution: lognormal`` draws a right-skewed,
heavy-tailed amount with that mean and sd (``normal`` is the default), and ``shared: [mean, sd]``
draws the feature from one distribution for every persona, i.e. a column that carries no
persona signal. Personas do not list shared features.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from persona.config_files import read_yaml
from persona.data.schema import DatasetSchema, NumericSpec
from persona.errors import ConfigurationError

DISTRIBUTIONS = ("normal", "lognormal")


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
    # feature -> "lognormal" for the features not drawn from a normal distribution
    distributions: Mapping[str, str] = field(default_factory=dict)
    # feature -> (mean, sd) drawn alike for every persona (no persona signal)
    shared: Mapping[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.personas]

    def persona(self, name: str) -> PersonaSpec:
        for spec in self.personas:
            if spec.name == name:
                return spec
        raise ConfigurationError(f"unknown persona {name!r}; known: {self.names}")

    def parse_persona(self, raw: Mapping[str, Any], source: str) -> PersonaSpec:
        """A persona outside the list (e.g. a drift scenario's newcomer), shared features filled."""
        return _persona(raw, self.schema, source, self.shared)


def _persona(
    raw: Mapping[str, Any],
    schema: DatasetSchema,
    source: str,
    shared: Mapping[str, tuple[float, float]] | None = None,
) -> PersonaSpec:
    name = raw.get("name")
    if not name:
        raise ConfigurationError(f"{source}: every persona needs a 'name'")
    shared = shared or {}
    listed = set(raw.get("numeric") or {}) & set(shared)
    if listed:
        raise ConfigurationError(
            f"{source}: persona {name!r} lists shared features {sorted(listed)}; "
            "they are drawn alike for every persona"
        )
    numeric = {}
    for feature in schema.numeric:
        if feature in shared:
            numeric[feature] = shared[feature]
            continue
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


def _mean_sd(value: Any, where: str) -> tuple[float, float]:
    try:
        mean, sd = value
        mean, sd = float(mean), float(sd)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{where} must be [mean, sd]") from None
    if sd < 0:
        raise ConfigurationError(f"{where}: sd must be >= 0, got {sd}")
    return mean, sd


def _generator_keys(
    features: Mapping[str, Any], source: str
) -> tuple[dict[str, str], dict[str, tuple[float, float]]]:
    """The per-feature distribution and shared draws: generator truth, not schema."""
    distributions: dict[str, str] = {}
    shared: dict[str, tuple[float, float]] = {}
    for name, spec in features.items():
        spec = spec or {}
        kind = spec.get("distribution", "normal")
        if kind not in DISTRIBUTIONS:
            raise ConfigurationError(
                f"{source}: numeric_features.{name}.distribution must be one of "
                f"{'|'.join(DISTRIBUTIONS)}, got {kind!r}"
            )
        if kind != "normal":
            distributions[name] = kind
        if "shared" in spec:
            shared[name] = _mean_sd(spec["shared"], f"{source}: numeric_features.{name}.shared")
    return distributions, shared


def catalogue_from_dict(raw: Mapping[str, Any], source: str = "catalogue") -> Catalogue:
    dataset = raw.get("dataset") or {}
    distributions, shared = _generator_keys(raw.get("numeric_features") or {}, source)
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
    personas = tuple(_persona(p, schema, source, shared) for p in raw.get("personas") or [])
    if len(personas) < 2:
        raise ConfigurationError(f"{source}: at least two personas are needed")
    total = sum(p.share for p in personas)
    if abs(total - 1.0) > 1e-6:
        raise ConfigurationError(f"{source}: persona shares must sum to 1, got {total:.4f}")
    for persona in personas:
        for feature, kind in distributions.items():
            mean, _sd = persona.numeric[feature]
            if kind == "lognormal" and mean <= 0:
                raise ConfigurationError(
                    f"{source}: persona {persona.name!r} {feature}: a lognormal mean must be > 0"
                )
    scenarios = dict(raw.get("drift_scenarios") or {})
    catalogue = Catalogue(
        schema=schema,
        personas=personas,
        scenarios=scenarios,
        distributions=distributions,
        shared=shared,
    )
    if "new_persona" in scenarios:
        catalogue.parse_persona(scenarios["new_persona"]["persona"], f"{source}: new_persona")
    return catalogue


def load_catalogue(path: Path) -> Catalogue:
    raw = read_yaml(path, "persona catalogue")
    return catalogue_from_dict(raw, source=str(path))
