"""Reading the project's YAML config files, with one error wording for all of them."""

from __future__ import annotations

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
