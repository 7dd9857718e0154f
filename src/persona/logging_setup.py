"""Logging configuration, called only by entry points (CLI, blocks, app factory)."""

from __future__ import annotations

import logging
import warnings
from typing import TextIO

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(
    level: str = "INFO", stream: TextIO | None = None, only_prefixes: tuple[str, ...] = ()
) -> None:
    """Once per process: the first call sets logging up, a later one only moves the level.

    Every Mage block of a run calls this (through ``persona.orchestration.blocks``), as may the
    process that started them: the first call adds our one handler (to ``stream``, default
    stderr), quiets noisy libraries and sets the level; a later call with the same level is a
    no-op, one with another level sets that level and keeps the handler, its stream and its
    filter. So each record is written once, however many blocks ran in the process.

    ``only_prefixes`` keeps the handler to our own loggers, for hosts (Mage) whose loggers
    print tracebacks that users should find in a log file instead.
    """
    root = logging.getLogger()
    wanted = level.upper()
    if any(getattr(h, "_persona", False) for h in root.handlers):
        if logging.getLevelName(root.level) != wanted:
            root.setLevel(wanted)
        return
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(_FORMAT))
    if only_prefixes:
        handler.addFilter(lambda record: record.name.startswith(only_prefixes))
    handler._persona = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(wanted)
    # MLflow's and Mage's pydantic models warn on import about their own field names: noise
    # to a user, and nothing they can act on.
    warnings.filterwarnings("ignore", category=UserWarning, module="pydantic")
    for noisy in ("urllib3", "alembic", "git", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
