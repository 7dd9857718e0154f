"""The ``score_batch`` pipeline's work: ``persona score`` with the run's engine, month, file, out.

``http`` and ``local`` run in the block's process (Mage's environment has both). ``spark`` runs
``PERSONA_SPARK_COMMAND score --engine spark …`` (the Spark environment's persona: pyspark never
enters Mage's) as its own process group through ``process_tree.run_group``: however the run
ends (the command fails, Mage stops the block, the worker is killed), the command and its JVM
are stopped with it, and a leftover of a killed launcher is stopped by the next run. Its JSON
summary is the block's output; its error line is the block's error.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from persona.errors import ConfigurationError, PersonaError
from persona.run_variables import SCORE_BATCH, SCORE_ENGINES
from persona.settings import Settings

logger = logging.getLogger(__name__)

SPARK_TIMEOUT_S = 6 * 3600.0


def score_arguments(variables: Mapping[str, Any]) -> list[str]:
    """The ``persona score`` options of the run's variables (those set)."""
    engine = str(variables.get("engine") or SCORE_BATCH["engine"].default)
    if engine not in SCORE_ENGINES:
        raise ConfigurationError(f"engine must be one of {list(SCORE_ENGINES)}, got {engine!r}")
    argv = ["--engine", engine]
    for name in ("month", "file", "out", "segmentation"):
        value = variables.get(name)
        if value not in (None, ""):
            argv += [f"--{name}", str(value)]
    return argv


def run_score(settings: Settings, variables: Mapping[str, Any]) -> dict[str, Any]:
    """Score as the run's variables say; the summary, or a PersonaError naming what failed
    (a row that could not be scored fails the block, as it makes ``persona score`` exit 1)."""
    argv = score_arguments(variables)
    if argv[1] == "spark":
        summary = _run_spark(settings, argv)
    else:
        from persona.cli import build_parser
        from persona.cli_score import score

        summary = score(build_parser().parse_args(["score", *argv]), settings)
    if summary.get("failed_rows"):
        shown = ", ".join(map(str, summary.get("failed_ids", [])[:10]))
        raise PersonaError(f"{summary['failed_rows']:,} rows were not scored (ids: {shown})")
    return summary


def _run_spark(settings: Settings, argv: list[str]) -> dict[str, Any]:
    from persona.adapters.spark_jobs import spark_program
    from persona.services import process_tree

    command = [spark_program(settings.spark_command), "score", *argv]
    logger.info("running %s", " ".join(command))
    with tempfile.TemporaryDirectory(prefix="persona-spark-") as folder:
        out_path, err_path = Path(folder) / "summary.json", Path(folder) / "stderr.log"
        with out_path.open("wb") as out, err_path.open("wb") as err:
            code = process_tree.run_group(
                command,
                {**os.environ, "PERSONA_LOG_LEVEL": settings.log_level},
                process_tree.records_folder(Path(settings.home)),
                timeout_s=SPARK_TIMEOUT_S,
                stdout=out,
                stderr=err,
            )
        said = err_path.read_text(errors="replace")
        text = out_path.read_text(errors="replace")
    for line in said.splitlines():
        logger.info("spark: %s", line)
    if code not in (0, 1) or not text.strip():
        lines = [line for line in said.splitlines() if line.strip()]
        raise PersonaError(
            f"{' '.join(command[:3])} … exited {code}: {lines[-1] if lines else 'no output'}"
        )
    start = re.search(r"^\{$", text, flags=re.MULTILINE)  # the summary, whatever came before
    return json.loads(text[start.start() :] if start else text)
