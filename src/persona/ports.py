"""The ports the application layer (``persona.flows``) works through.

A flow takes these small protocols and plain values; an entry point (``persona.composition``)
builds the one adapter behind each from settings. Tests pass in-memory stand-ins. The names
say what a flow needs, not how a system provides it: ``Registry`` and ``Tracker`` are both
implemented by the MLflow adapter, ``CustomerStore`` by PostgreSQL, ``Notifier`` by Telegram.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from persona.data.schema import DatasetSchema
from persona.monitoring.slow_drift import PastRun


@dataclass(frozen=True)
class ModelVersion:
    """A registered version: what a flow needs to load it and find its run's artifacts."""

    version: str
    run_id: str | None


@dataclass(frozen=True)
class Registration:
    """What registering a challenger did: which alias it got, why, and what it replaced."""

    name: str
    version: str
    alias: str
    reason: str
    previous_production: str | None  # the version that held the alias before (any alias)
    changed: bool = True
    promoted_at: str | None = None


class Registry(Protocol):
    """Registered models of one name: versions, aliases, loading."""

    model_name: str

    def version_holding(self, alias: str) -> ModelVersion | None:
        """The version ``alias`` points at, or None when no version holds it."""

    def load(self, model_uri: str) -> Any:
        """The pyfunc model behind a URI (``models:/name@alias`` or a run's model)."""

    def alias_uri(self, alias: str) -> str:
        """The URI that loads whatever version holds ``alias``."""

    def register(
        self,
        model_uri: str,
        promote: bool,
        reason: str,
        tags: Mapping[str, Any],
        *,
        alias: str,
    ) -> Registration:
        """Register a model and move ``alias`` (promote) or the challenger alias to it."""

    def download_artifact(self, run_id: str, artifact_path: str, destination: Path) -> Path:
        """One artifact of the run that logged a version, as a local file."""

    def persona_names(self) -> dict[int, str]:
        """persona_id -> the name a person gave it (``persona personas rename``); retrains
        keep these names."""


@dataclass(frozen=True)
class ModelFiles:
    """What the pyfunc model is made of, for ``Tracker.log_model``."""

    python_model: Any
    artifacts: Mapping[str, str]
    input_example: pd.DataFrame
    output_example: pd.DataFrame
    pip_requirements: Sequence[str]


class Tracker(Protocol):
    """Experiment runs: parameters, metrics, tags, files, the model."""

    def check(self) -> None:
        """Preflight before a long step: fail fast (UpstreamUnavailableError naming the
        server) when the tracking server does not answer, instead of after the work."""

    def training_run(
        self, run_name: str, tags: Mapping[str, str], params: Mapping[str, Any]
    ) -> AbstractContextManager[str]:
        """A parent run that the candidates nest under; yields its id."""

    def log_candidate(
        self, name: str, params: Mapping[str, Any], metrics: Mapping[str, float]
    ) -> str:
        """A nested run per candidate inside the open training run; returns its id."""

    def log_to_run(
        self,
        run_id: str,
        *,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
        files: Mapping[str, Sequence[Path]] | None = None,
        model: ModelFiles | None = None,
    ) -> str | None:
        """Add to an existing run (files by artifact folder); returns the model URI if logged."""

    def log_report_run(
        self,
        run_name: str,
        params: Mapping[str, Any],
        metrics: Mapping[str, float | None],
        tags: Mapping[str, str],
        files: Sequence[Path],
        artifact_path: str,
    ) -> tuple[str, str]:
        """A run that carries a report; returns its id and its artifact folder URI."""

    def run_url(self, run_id: str) -> str | None:
        """Where a person opens the run (None when the store has no UI)."""


class CustomerStore(Protocol):
    """The project's customer rows and what the scoring service recorded."""

    def read_months(self, schema: DatasetSchema, months: Sequence[str] | None) -> pd.DataFrame:
        """Rows of the given months (all when None); names the problem when there are none."""

    def read_scored(self, days: float) -> pd.DataFrame:
        """The rows the scoring API scored in the last ``days`` days (may be empty)."""


@dataclass(frozen=True)
class OpenRun:
    """A run that has not ended (a drift history row, an MLflow run): its owner may be at work
    or gone; reconciliation (``persona.flows.reconcile``) tells which."""

    kind: str  # "drift_run", "mlflow_run", "mage_run"
    run_id: str
    owner: str | None  # persona.monitoring.owners.Owner as text; None: not recorded
    heartbeat: datetime | None  # when the owner last wrote to the run (naive: UTC)
    label: str  # what a person recognises: the month, the run's name
    state: str  # the state it was left in


class DriftStore(Protocol):
    """The drift history: one row per monitoring run, per checked column, per quality check,
    per persona."""

    def record_run(
        self,
        run: Mapping[str, Any],
        columns: Sequence[Mapping[str, Any]],
        quality: Sequence[Mapping[str, Any]] = (),
        *,
        supersede: bool = False,
    ) -> str:
        """Store a run, its drift columns and its data-quality checks; returns the run's id.
        ``supersede``: it replaces the current run of the same model and window (a month)."""

    def update_run(self, run_id: str, **values: Any) -> None:
        """Fill in what is known later in the run (action, new version, alert status); each
        write is a heartbeat."""

    def open_runs(self) -> Sequence[OpenRun]:
        """The runs that have not ended (still retraining, or the alert still pending)."""

    def kept_report_names(self) -> set[str]:
        """The report pages (stems) of the runs not abandoned: their reports stay in the UI."""

    def abandon_run(self, run_id: str, at: datetime, reason: str) -> bool:
        """Close a run whose owner is gone; False when it had ended meanwhile."""

    def previous_runs(self, model_name: str, model_version: str) -> Sequence[PastRun]:
        """The stored runs of this model version (its reference), oldest first."""

    def record_personas(self, run_id: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Store a run's persona rows (``persona_mix``: one per persona)."""

    def persona_history(self, model_name: str, limit: int) -> pd.DataFrame:
        """The persona rows of the model's newest ``limit`` runs, with their ``checked_at``."""


class OpenTrackerRuns(Protocol):
    """Runs another system keeps (MLflow's experiment runs, Mage's pipeline runs)."""

    def open_runs(self) -> Sequence[OpenRun]:
        """Its runs still marked running."""

    def close_run(self, run_id: str, reason: str) -> bool:
        """End a run whose owner is gone (killed, failed), with why; False when it had ended."""


class DriftReports(Protocol):
    """Where drift reports are computed and kept for people (HTML and the report UI)."""

    def run(
        self, reference: pd.DataFrame, current: pd.DataFrame, schema: DatasetSchema, config: Any
    ) -> tuple[Any, Mapping[str, Any]]:
        """The report on the schema's features: (snapshot, its dict)."""

    def save_html(self, snapshot: Any, path: Path) -> Path: ...

    def publish(self, snapshot: Any, name: str) -> int:
        """File the snapshot where the report UI shows it, under ``name`` (the stem of the drift
        row's report page); returns the runs it now holds."""


class Outcome(Protocol):
    status: str
    attempts: int


class Notifier(Protocol):
    """Tells the team; never raises for a message that could not be delivered."""

    def send(self, alert: Any) -> Outcome: ...


class Scorer(Protocol):
    """Scores a batch of customers with whatever model is served now."""

    def score(self, frame: pd.DataFrame) -> pd.DataFrame: ...


# ----------------------------------------------- the demo's walk through a running stack


class ArtifactListing(Protocol):
    version: str
    model_files: tuple[str, ...]
    reference_files: tuple[str, ...]
    error: str | None


class VersionListing(Protocol):
    version: str
    aliases: tuple[str, ...]
    tags: dict[str, str]


class StackModels(Protocol):
    """What the demo reads and repairs in the registry (the MLflow adapter provides it)."""

    model_name: str

    def version_holding(self, alias: str) -> ModelVersion | None: ...

    def production_artifacts(self, alias: str, reference_folder: str) -> ArtifactListing | None: ...

    def retire(self, alias: str, version: str, reason: str) -> None: ...

    def versions(self) -> Sequence[VersionListing]: ...

    def version_tags(self, version: str) -> dict[str, str]: ...


class StackTables(Protocol):
    """The demo's months in the customers table, and the drift history."""

    table: str

    def replace_months(
        self, frame: pd.DataFrame, schema: DatasetSchema, months: Sequence[str]
    ) -> int: ...

    def read_months(self, schema: DatasetSchema, months: Sequence[str] | None) -> pd.DataFrame: ...

    def read_drift_runs(self, limit: int) -> pd.DataFrame: ...


class PipelineRun(Protocol):
    ok: bool

    def failure_text(self) -> str: ...
