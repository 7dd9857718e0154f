"""Logging configuration, called only by entry points (CLI, blocks, app factory)."""

from __future__ import annotations

import logging
import warnings
from typing import TextIO

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(
    level: str = "INFO", stream: TextIO | None = None, only_prefixes: tuple[str, ...] = ()
) -> None:
    """Idempotent: blocks call it on every run inside one Mage process.

    ``only_prefixes`` keeps the handler to our own loggers, for hosts (Mage) whose loggers
    print tracebacks that users should find in a log file instead.
    """
    root = logging.getLogger()
    if not any(getattr(h, "_persona", False) for h in root.handlers):
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter(_FORMAT))
        if only_prefixes:
            handler.addFilter(lambda record: record.name.startswith(only_prefixes))
        handler._persona = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level.upper())
    # MLflow's and Mage's pydantic models warn on import about their own field names: noise
    # to a user, and nothing they can act on.
    warnings.filterwarnings("ignore", category=UserWarning, module="pydantic")
    for noisy in ("urllib3", "alembic", "git", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
