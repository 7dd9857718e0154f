"""Spark work started from environments without pyspark (Mage, the monitor): the Spark
environment's ``persona`` (``PERSONA_SPARK_COMMAND``) as a subprocess in its own process group
(:func:`persona.services.process_tree.run_group`), so a killed monitor takes its Spark driver
and executors with it."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from persona.errors import (
    ConfigurationError,
    InvalidInputError,
    PersonaError,
    UpstreamUnavailableError,
)
from persona.monitoring.sketch import ANSWER_NAME, SAMPLE_NAME, SKETCH_NAME
from persona.services import process_tree

if TYPE_CHECKING:  # the Spark environment runs the job's side only (no training flow)
    from persona.flows.spark_drift import SketchedMonth
    from persona.flows.train import DataRequest

logger = logging.getLogger(__name__)

# the job exits with the code of its PersonaError (persona.errors)
EXIT_ERRORS = {2: ConfigurationError, 3: InvalidInputError, 5: UpstreamUnavailableError}


def spark_program(command: str) -> str:
    """PERSONA_SPARK_COMMAND as a program that exists: a path as given, a name on PATH, or a
    path relative to the project (Mage's blocks may run from another folder)."""
    project = Path(__file__).resolve().parents[3]
    for candidate in (Path(command), project / command):
        if candidate.is_file():
            return str(candidate.absolute())
    found = shutil.which(command)
    if found is None:
        raise ConfigurationError(
            f"PERSONA_SPARK_COMMAND {command!r} not found: make install-spark creates "
            ".venv/spark/bin/persona (or point it at the persona command of an environment "
            "with pyspark)"
        )
    return found


def drift_sketch_command(
    spark_command: str,
    data: DataRequest,
    reference_date: str | None,
    out: Path,
    sample_rows: int,
    schema_path: Path,
    master: str,
) -> list[str]:
    """The argv of ``persona drift-sketch`` for one month."""
    command = [
        spark_command,
        "drift-sketch",
        "--source",
        data.source,
        "--schema",
        str(schema_path),
        "--out",
        str(out),
        "--sample-rows",
        str(sample_rows),
        "--master",
        master,
    ]
    if data.path:
        command += ["--path", data.path]
    for month in data.months:
        command += ["--month", month]
    if reference_date:
        command += ["--reference-date", reference_date]
    return command


class SparkSketcher:
    """The ``SparkSketcher`` port of :mod:`persona.flows.spark_drift`."""

    def __init__(self, spark_command: str, master: str, schema_path: Path, records: Path) -> None:
        self.spark_command, self.master = spark_command, master
        self.schema_path, self.records = Path(schema_path), Path(records)

    def sketch(
        self, data: DataRequest, reference_date: str | None, folder: Path, sample_rows: int
    ) -> SketchedMonth:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name in (SKETCH_NAME, SAMPLE_NAME, ANSWER_NAME):
            (folder / name).unlink(missing_ok=True)
        command = drift_sketch_command(
            spark_program(self.spark_command),
            data,
            reference_date,
            folder,
            sample_rows,
            self.schema_path,
            self.master,
        )
        logger.info("Spark drift sketch on %s: %s", self.master, " ".join(command))
        # the job's JSON answer goes to stderr: stdout is the monitor's own answer
        code = process_tree.run_group(command, dict(os.environ), self.records, stdout=sys.stderr)
        answer = folder / ANSWER_NAME
        if code != 0 or not answer.exists():
            # the job's own one-line error went to its stderr (this process's), above
            error = EXIT_ERRORS.get(code, PersonaError)
            rerun = " A rerun is safe." if error is UpstreamUnavailableError else ""
            raise error(
                f"the Spark drift job ({self.spark_command} drift-sketch on {self.master}) "
                f"exited with {code}: its error is the line above.{rerun}"
            )
        from persona.flows.spark_drift import SketchedMonth

        return SketchedMonth(**json.loads(answer.read_text("utf-8")))
