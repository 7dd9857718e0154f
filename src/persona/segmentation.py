"""Segmentations: several datasets side by side in one stack, each with its own names.

A segmentation is a name plus its schema, search parameters and drift thresholds. Everything it
writes carries its name: its customers and scores tables, its registered model (and so its
aliases and drift history rows, which are keyed by model name), its MLflow experiment and its
Evidently project. The ``default`` segmentation is today's single-dataset setup: its names are
the settings themselves, so an existing stack keeps working unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from persona.data.schema import schema_from_dict
from persona.errors import ConfigurationError

DEFAULT = "default"
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
# The registered model's tag that says which segmentation it belongs to (the API finds
# segmentations by it).
SEGMENTATION_TAG = "persona.segmentation"


def check_name(name: str) -> str:
    """A segmentation name is part of table and model names: lower-case letters, digits, _."""
    if not NAME_PATTERN.match(name or ""):
        raise ConfigurationError(
            f"segmentation name must match {NAME_PATTERN.pattern} (lower-case letters, digits "
            f"and _, starting with a letter, at most 40 characters), got {name!r}"
        )
    return name


def suffixed(base: str, segmentation: str, separator: str = "_") -> str:
    """The name ``base`` takes in ``segmentation`` (unchanged for the default one)."""
    return base if segmentation == DEFAULT else f"{base}{separator}{segmentation}"


@dataclass(frozen=True)
class Definition:
    """A segmentation as stored: its name and the three YAML texts that configure it."""

    name: str
    schema_text: str
    params_text: str
    drift_text: str
    created_at: str = ""


def _parse(text: str, what: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{what}: not valid YAML: {exc}") from None


def checked_definition(
    name: str, schema_text: str, params_text: str, drift_text: str, sources: Mapping[str, str]
) -> Definition:
    """A definition whose three files parse and pass their checks; errors name the file.

    The checks are the ones training and monitoring run, so a segmentation that is added can
    be trained (bad derived expressions, unknown keys, impossible thresholds are refused here).
    """
    from persona.model.params import params_from_dict
    from persona.monitoring.drift import drift_config_from_dict

    check_name(name)
    if name == DEFAULT:
        raise ConfigurationError(
            f"{DEFAULT!r} is the stack's own segmentation (PERSONA_SCHEMA, PERSONA_PARAMS, "
            "PERSONA_DRIFT_CONFIG); choose another name"
        )
    schema_from_dict(_parse(schema_text, sources["schema"]), sources["schema"])
    params_from_dict(_parse(params_text, sources["params"]) or {}, sources["params"])
    drift_config_from_dict(_parse(drift_text, sources["drift"]), sources["drift"])
    return Definition(name, schema_text, params_text, drift_text)
