"""Reading the project's YAML config files, with one error wording for all of them."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import yaml

from persona.errors import ConfigurationError


def read_yaml(path: Path, what: str) -> Any:
    """The parsed file; a missing file or broken YAML is a ConfigurationError naming the path."""
    try:
        return yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigurationError(f"{what} not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{path}: not valid YAML: {exc}") from None


def config_section(raw: Any, name: str, keys: Collection[str], source: str) -> Mapping[str, Any]:
    """A section of a config file as a mapping (empty when absent): anything else, or a key it
    does not know, is a ConfigurationError naming the file, the section and the keys."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigurationError(
            f"{source}: {name} must be a mapping with keys {sorted(keys)}, got {raw!r}"
        )
    unknown = set(raw) - set(keys)
    if unknown:
        raise ConfigurationError(
            f"{source}: {name}: unknown keys {sorted(unknown)}; expected some of {sorted(keys)}"
        )
    return raw
