"""Evidently 0.7 behind four calls: run the drift report, save its HTML, file it in the UI,
and take out of the UI the reports of runs killed before their drift row was kept.

The only module that imports ``evidently``; it does so inside the functions because the import
alone takes seconds, which nothing else in the package should pay. The verdict itself is
pure and lives in :mod:`persona.monitoring.drift`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from datetime import UTC
from pathlib import Path
from typing import Any

import pandas as pd

from persona.data.schema import DatasetSchema
from persona.errors import InvalidInputError
from persona.monitoring.drift import (
    DriftConfig,
    column_tests,
    feature_columns,
)
from persona.monitoring.drift import interpret_report as interpret
from persona.ports import OpenRun

logger = logging.getLogger(__name__)

OWNER_KEY = "persona_owner"

__all__ = [
    "UnlinkedReports",
    "add_to_workspace",
    "interpret",
    "run_drift_report",
    "save_html",
    "ui_command",
]


def _check_frame(frame: pd.DataFrame, columns: list[str], role: str) -> None:
    if frame.empty:
        raise InvalidInputError(f"{role} data is empty: nothing to compare")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InvalidInputError(f"{role} data lacks the feature columns {missing}")


def run_drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    schema: DatasetSchema,
    config: DriftConfig,
    owner: str | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Evidently's DataDriftPreset on the schema's features; returns (snapshot, snapshot.dict()).

    Column types come from the schema, not from Evidently's guess (a numeric-looking region
    code must stay categorical); per-column methods and thresholds come from ``config``.
    """
    columns = feature_columns(schema)
    _check_frame(reference, columns, "reference")
    _check_frame(current, columns, "current")
    tests = column_tests(config, schema)

    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(
        numerical_columns=[c for c in columns if c in schema.numeric],
        categorical_columns=[c for c in columns if c in schema.categorical],
    )
    methods = {c: t.method for c, t in tests.items() if t.method is not None}
    thresholds = {c: t.threshold for c, t in tests.items() if t.threshold is not None}
    preset = DataDriftPreset(
        columns=columns,
        drift_share=config.drift_share,
        per_column_method=methods or None,
        per_column_threshold=thresholds or None,
    )
    report = Report([preset], include_tests=True)
    snapshot = report.run(
        current_data=Dataset.from_pandas(current[columns], data_definition=definition),
        reference_data=Dataset.from_pandas(reference[columns], data_definition=definition),
        # who made it: a report whose run was killed before its drift row was kept is taken
        # out of the UI by reconciliation (UnlinkedReports), once that owner is gone
        metadata={OWNER_KEY: owner} if owner else None,
    )
    logger.info(
        "Evidently drift report: %d reference vs %d current rows, %d columns",
        len(reference),
        len(current),
        len(columns),
    )
    return snapshot, snapshot.dict()


def save_html(snapshot: Any, path: Path) -> Path:
    """A self-contained page (scripts inlined), fit to attach to a run or an alert."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(path))
    return path


def _project(workspace_dir: Path, project_name: str, create: bool = True) -> tuple[Any, Any]:
    """The local workspace and its project (made on first use; None when absent and not
    ``create``)."""
    from evidently.ui.workspace import Workspace

    workspace_dir = Path(workspace_dir)
    workspace_dir.mkdir(parents=True, exist_ok=True)
    workspace = Workspace.create(str(workspace_dir))
    found = workspace.search_project(project_name)
    if found or not create:
        return workspace, (found[0] if found else None)
    project = workspace.create_project(
        project_name, description="Monthly data drift of the persona model's features"
    )
    logger.info("created Evidently project %r in %s", project_name, workspace_dir)
    return workspace, project


def add_to_workspace(
    workspace_dir: Path, project_name: str, snapshot: Any, name: str | None = None
) -> int:
    """File the run in a local Evidently workspace (created on first use) so the UI shows the
    history; returns how many runs the project now holds."""
    workspace, project = _project(workspace_dir, project_name)
    workspace.add_run(project.id, snapshot, include_data=False, name=name)
    return len(workspace.list_runs(project.id))


def ui_command(workspace_dir: Path, host: str = "127.0.0.1", port: int = 8000) -> list[str]:
    """The argv of ``evidently ui`` serving ``workspace_dir``; the script beside this
    interpreter when there is one, so a venv needs no PATH. Set ``DO_NOT_TRACK=1`` in its
    environment to keep Evidently's usage telemetry off."""
    script = Path(sys.executable).with_name("evidently")
    program = [str(script)] if script.exists() else [sys.executable, "-m", "evidently.cli"]
    return [
        *program,
        "ui",
        "--workspace",
        str(Path(workspace_dir)),
        "--host",
        host,
        "--port",
        str(port),
    ]


class EvidentlyReports:
    """The ``DriftReports`` port: Evidently computes, a local workspace keeps the history.

    ``owner`` (the run's process, ``persona.monitoring.owners``) goes into each report's
    metadata, so that reconciliation can tell the report of a killed run from a live one.
    """

    def __init__(self, workspace_dir: Path, project_name: str, owner: str | None = None) -> None:
        self.workspace_dir, self.project_name = Path(workspace_dir), project_name
        self.owner = owner

    def run(
        self,
        reference: pd.DataFrame,
        current: pd.DataFrame,
        schema: DatasetSchema,
        config: DriftConfig,
    ) -> tuple[Any, dict[str, Any]]:
        return run_drift_report(reference, current, schema, config, self.owner)

    def save_html(self, snapshot: Any, path: Path) -> Path:
        return save_html(snapshot, path)

    def publish(self, snapshot: Any, name: str | None = None) -> int:
        return add_to_workspace(self.workspace_dir, self.project_name, snapshot, name)


class UnlinkedReports:
    """Reports in the Evidently UI whose run was killed before its drift row was kept (or whose
    row was abandoned), as open runs for reconciliation: once their owner is gone they are
    taken out of the UI (Evidently's local workspace cannot relabel a report; its HTML page
    stays in the run folder and the MLflow run). Reports without a recorded owner (made by
    earlier releases, or by hand) are never touched.

    ``kept`` names the reports the drift history still stands by (see
    ``DriftStore.kept_report_names``).
    """

    def __init__(
        self, workspace_dir: Path, project_name: str, kept: Callable[[], set[str]]
    ) -> None:
        self.workspace_dir, self.project_name, self.kept = Path(workspace_dir), project_name, kept

    def open_runs(self) -> Sequence[OpenRun]:
        if not self.workspace_dir.is_dir():
            return []
        workspace, project = _project(self.workspace_dir, self.project_name, create=False)
        if project is None:
            return []
        kept, unlinked = self.kept(), []
        for snapshot_id in workspace.list_runs(project.id):
            try:
                run = workspace.get_run(project.id, snapshot_id)
            except (OSError, ValueError) as exc:  # a half-written snapshot file
                logger.warning("Evidently report %s unreadable: %s", snapshot_id, exc)
                continue
            owner = (run.metadata or {}).get(OWNER_KEY) if run is not None else None
            if not owner or run.name in kept:
                continue
            unlinked.append(
                OpenRun(
                    kind="evidently_report",
                    run_id=str(snapshot_id),
                    owner=str(owner),
                    heartbeat=run.timestamp.astimezone(UTC),  # Evidently stamps local time
                    label=run.name or str(snapshot_id),
                    state="in the Evidently UI without a kept drift row",
                )
            )
        return unlinked

    def close_run(self, run_id: str, reason: str) -> bool:
        workspace, project = _project(self.workspace_dir, self.project_name, create=False)
        if project is None or run_id not in {str(i) for i in workspace.list_runs(project.id)}:
            return False
        workspace.delete_run(project.id, run_id)
        logger.warning("Evidently report %s taken out of the UI: %s", run_id, reason)
        return True
