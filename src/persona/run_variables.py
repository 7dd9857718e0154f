"""Run variables of the pipelines: each one's name, default, type and help, defined here once.

Who reads this table:

- ``persona train`` / ``persona monitor`` / ``persona data generate`` / ``persona demo`` take
  their option defaults and help from it (``persona.cli``);
- the flows' request classes (``DataRequest``, ``MonitorRequest``, ``DemoRequest``) fall back to
  these defaults for a variable that did not arrive;
- the ``variables:`` block of each Mage pipeline's ``metadata.yaml`` (what the Mage UI and a
  trigger start from) must equal ``defaults(pipeline)``, in order; the Makefile passes a
  variable only when it is set, so these defaults apply there too. Both are tested
  (tests/unit/test_run_variables.py), and the failure says what to change.

Pure: no imports beyond the standard library, so the CLI can build its parser cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The month synthetic data starts at when none is named, and the month the make targets
# (`make data`, `train`, `score`, `monitor`) act on when MONTH/MONTHS is not given.
DEFAULT_MONTH = "2026-01"

DATA_SOURCES = ("table", "file", "synthetic")
SCORING_LOG = "scoring_log"  # monitor only: what the scoring service scored lately


@dataclass(frozen=True)
class RunVariable:
    """One run variable. ``kind`` is how its text is read: str, int, float or bool (yes/no).

    An empty-text default means "not set": the flow decides (all months, no file, the drift
    config's choice).
    """

    name: str
    default: str | int | float | bool
    kind: type
    help: str
    choices: tuple[str, ...] = ()

    @property
    def option(self) -> str:
        """The command-line option: ``all_clear_alert`` -> ``--all-clear-alert``."""
        return "--" + self.name.replace("_", "-")


def _table(*variables: RunVariable) -> dict[str, RunVariable]:
    return {variable.name: variable for variable in variables}


# Every command and pipeline that touches data or models takes it.
SEGMENTATION = RunVariable(
    "segmentation",
    "",
    str,
    "segmentation to work on (`persona segmentation list`; empty: PERSONA_SEGMENTATION)",
)


TRAIN: dict[str, RunVariable] = _table(
    RunVariable(
        "source",
        "table",
        str,
        "where the customers come from: table (PERSONA_CUSTOMERS_TABLE), file or synthetic",
        DATA_SOURCES,
    ),
    RunVariable("months", "", str, "comma-separated YYYY-MM to train on (empty: every month)"),
    RunVariable("path", "", str, "CSV/Parquet file for source=file"),
    RunVariable("rows", 20_000, int, "customers per month for source=synthetic"),
    RunVariable("seed", 42, int, "seed of the synthetic data and of the model search"),
    RunVariable("scenario", "none", str, "drift scenario of source=synthetic"),
    RunVariable("register", True, bool, "false: train and select, skip registration"),
    SEGMENTATION,
)

MONITOR: dict[str, RunVariable] = _table(
    RunVariable(
        "source",
        "table",
        str,
        "current data: table, file, synthetic, or scoring_log (what the API scored lately)",
        (*DATA_SOURCES, SCORING_LOG),
    ),
    RunVariable("month", "", str, "YYYY-MM of the current data, or 'previous'"),
    RunVariable("path", "", str, "CSV/Parquet file for source=file"),
    RunVariable("rows", 10_000, int, "customers for source=synthetic"),
    RunVariable("seed", 7, int, "seed of the synthetic data"),
    RunVariable("scenario", "none", str, "drift scenario of source=synthetic"),
    RunVariable("retrain", True, bool, "false: check, store and alert, never retrain"),
    RunVariable(
        "all_clear_alert", "", bool, "true/false: alert when nothing drifted (empty: drift.yaml)"
    ),
    RunVariable("days", 30, float, "window in days of source=scoring_log"),
    SEGMENTATION,
)

# `persona demo` (`make demo`): the tour's knobs. Not a Mage pipeline; it runs both.
DEMO: dict[str, RunVariable] = _table(
    RunVariable(
        "months",
        "2026-01 2026-02 2026-03",
        str,
        "three YYYY-MM (train on the first two, drift in the third) or the first of three",
    ),
    RunVariable("rows", 10_000, int, "customers per month"),
    RunVariable("sample", 500, int, "customers scored over HTTP"),
    RunVariable("seed", 42, int, "seed of the synthetic data and of the model search"),
    # new_persona: the one synthetic drift a retrain fits better than the served model, so the
    # tour shows drift -> retrain -> promote (mix_shift retrains the same partition: a tie)
    RunVariable("scenario", "new_persona", str, "drift scenario of the third month"),
)

# `score_batch` (Mage): `persona score` as a pipeline; spark runs in the Spark environment.
SCORE_ENGINES = ("http", "local", "spark")
SCORE_BATCH: dict[str, RunVariable] = _table(
    RunVariable(
        "engine",
        "http",
        str,
        "http (the scoring API), local (in the block's process) or spark (PERSONA_SPARK_COMMAND "
        "on SPARK_MASTER)",
        SCORE_ENGINES,
    ),
    RunVariable("month", "", str, "YYYY-MM to score (empty: every month)"),
    RunVariable("file", "", str, "customers file or folder instead of the table (needs out)"),
    RunVariable("out", "", str, "results file (spark: folder) instead of the scores table"),
    SEGMENTATION,
)

# The Mage pipelines whose metadata.yaml `variables:` must equal defaults(name).
PIPELINES: dict[str, dict[str, RunVariable]] = {
    "train": TRAIN,
    "monitor": MONITOR,
    "score_batch": SCORE_BATCH,
}


def defaults(table: dict[str, RunVariable]) -> dict[str, Any]:
    """Name -> default, in the table's order (what a metadata.yaml ``variables:`` holds)."""
    return {name: variable.default for name, variable in table.items()}


TRAIN_DEFAULTS = defaults(TRAIN)
MONITOR_DEFAULTS = defaults(MONITOR)
SCORE_BATCH_DEFAULTS = defaults(SCORE_BATCH)
DEMO_DEFAULTS = defaults(DEMO)
