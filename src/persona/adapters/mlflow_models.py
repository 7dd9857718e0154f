"""The MLflow adapter behind the ``Registry`` and ``Tracker`` ports, for one model name.

Training, monitoring and the demo's walk through a running stack all reach MLflow through one
``MlflowModels``; the alias mechanics (history, rollback) are in ``mlflow_registry``. It
connects on first use, so building one (an entry point does, from settings) costs nothing.
``CutRegistrations`` shows reconciliation the registrations and alias moves a kill cut short.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import requests
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from persona.adapters import mlflow_registry
from persona.adapters.alias_history import (
    ABANDONED,
    OWNER_TAG,
    CutMove,
    VersionState,
    abandoned_reason,
    append_history,
    find_cut_moves,
)
from persona.errors import UpstreamUnavailableError
from persona.ports import ModelFiles, ModelVersion, OpenRun, Registration

logger = logging.getLogger(__name__)

ABANDONED_TAG = "persona.abandoned_reason"
PARENT_TAG = "mlflow.parentRunId"


@dataclass(frozen=True)
class ProductionArtifacts:
    """The files the stack needs from the served version, as this MLflow server sees them."""

    version: str
    run_id: str | None
    model_files: tuple[str, ...]
    reference_files: tuple[str, ...]
    error: str | None = None


@dataclass(frozen=True)
class VersionInfo:
    version: str
    aliases: tuple[str, ...]
    tags: dict[str, str]


class MlflowModels:
    """Registered versions of ``model_name`` and the runs that made them, on one server."""

    def __init__(
        self,
        tracking_uri: str,
        experiment: str | None,
        model_name: str,
        connect_timeout_s: float = mlflow_registry.CONNECT_BUDGET_S,
        model_tags: Mapping[str, str] | None = None,
        owner: str | None = None,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.owner = owner  # recorded on each run this process starts or reopens
        self.experiment = experiment
        self.model_name = model_name
        self.model_tags = dict(model_tags or {})
        self.connect_timeout_s = connect_timeout_s
        self._client: MlflowClient | None = None
        # why open_runs found the server down: the registry's cut moves, read next in the same
        # reconciliation, are not waited for a second time
        self.unreachable: UpstreamUnavailableError | None = None

    @property
    def client(self) -> MlflowClient:
        """Connected on first use; fails fast naming the URI when the server does not answer."""
        if self._client is None:
            self._client = mlflow_registry.connect(
                self.tracking_uri, timeout_s=self.connect_timeout_s
            )
        return self._client

    def check(self) -> None:
        """Preflight before a long step: the server answers now (bounded wait, each retry
        logged), else one ``UpstreamUnavailableError`` naming the URL."""
        if self._client is None:
            self.client  # noqa: B018 - connecting probes the server
        else:
            mlflow_registry.probe(self.tracking_uri, self.connect_timeout_s)

    def _in_experiment(self) -> None:
        """Runs go to the configured experiment; reading the registry creates none."""
        self.client  # noqa: B018
        if self.experiment:
            mlflow.set_experiment(self.experiment)

    # ------------------------------------------------------------------------------- Registry

    def version_holding(self, alias: str) -> ModelVersion | None:
        found = mlflow_registry.production_version(self.client, self.model_name, alias)
        return None if found is None else ModelVersion(str(found.version), found.run_id)

    def alias_uri(self, alias: str) -> str:
        return f"models:/{self.model_name}@{alias}"

    def load(self, model_uri: str) -> Any:
        self.client  # noqa: B018 - the tracking URI must be set before loading
        return mlflow_registry.load_model(model_uri)

    def register(
        self,
        model_uri: str,
        promote: bool,
        reason: str,
        tags: Mapping[str, Any],
        *,
        alias: str,
    ) -> Registration:
        return mlflow_registry.register(
            self.client,
            self.model_name,
            model_uri,
            promote,
            reason,
            tags,
            alias=alias,
            model_tags=self.model_tags,
            owner=self.owner,
        )

    def persona_names(self) -> dict[int, str]:
        return mlflow_registry.persona_names(self.client, self.model_name)

    def rename_persona(self, persona_id: int, name: str) -> None:
        mlflow_registry.rename_persona(self.client, self.model_name, persona_id, name)

    def untag(self) -> None:
        """Remove this adapter's tags from the registered model (the API stops finding it)."""
        for key in self.model_tags:
            try:
                self.client.delete_registered_model_tag(self.model_name, key)
            except MlflowException as exc:
                if not mlflow_registry.is_not_found(exc):
                    raise

    def download_artifact(self, run_id: str, artifact_path: str, destination: Path) -> Path:
        self.client  # noqa: B018
        return mlflow_registry.download_artifact(run_id, artifact_path, destination)

    # -------------------------------------------------------------------------------- Tracker

    @contextmanager
    def training_run(
        self, run_name: str, tags: Mapping[str, str], params: Mapping[str, Any]
    ) -> Iterator[str]:
        self._in_experiment()
        with mlflow.start_run(run_name=run_name) as run:
            mlflow.set_tags({**dict(tags), **self._owner_tags()})
            mlflow.log_params(dict(params))
            yield run.info.run_id

    def log_candidate(
        self, name: str, params: Mapping[str, Any], metrics: Mapping[str, float]
    ) -> str:
        return mlflow_registry.log_candidate_run(name, params, metrics)

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
        self.client  # noqa: B018
        active = mlflow.active_run()
        reopen = active is None or active.info.run_id != run_id
        with mlflow.start_run(run_id=run_id) if reopen else nullcontext():
            if tags or reopen:
                mlflow.set_tags({**dict(tags or {}), **(self._owner_tags() if reopen else {})})
            if metrics:
                mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v == v})
            if params:
                mlflow.log_params(dict(params))
            for folder, paths in (files or {}).items():
                mlflow_registry.log_files(list(paths), folder or None)
            if model is None:
                return None
            return mlflow_registry.log_pyfunc_model(
                model.python_model,
                model.artifacts,
                model.input_example,
                model.output_example,
                list(model.pip_requirements),
            )

    def log_report_run(
        self,
        run_name: str,
        params: Mapping[str, Any],
        metrics: Mapping[str, float | None],
        tags: Mapping[str, str],
        files: Sequence[Path],
        artifact_path: str,
    ) -> tuple[str, str]:
        self._in_experiment()
        return mlflow_registry.log_report_run(
            run_name, params, metrics, {**tags, **self._owner_tags()}, list(files), artifact_path
        )

    def run_url(self, run_id: str) -> str | None:
        return mlflow_registry.run_url(self.tracking_uri, run_id)

    def _owner_tags(self) -> dict[str, str]:
        return {} if self.owner is None else {OWNER_TAG: self.owner}

    # ------------------------------------------------------------------ runs left running

    def open_runs(self) -> list[OpenRun]:
        """Runs of the experiment still RUNNING; a nested run without an owner has its
        parent's (candidates are logged by the process that opened the training run)."""
        if not self.experiment:
            return []
        try:
            client = self.client
        except UpstreamUnavailableError as exc:
            self.unreachable = exc
            raise
        try:
            experiment = client.get_experiment_by_name(self.experiment)
            if experiment is None:
                return []
            found = client.search_runs(
                [experiment.experiment_id],
                filter_string="attributes.status = 'RUNNING'",
                max_results=1000,
            )
        except (MlflowException, requests.RequestException) as exc:
            raise UpstreamUnavailableError(f"MLflow runs: {str(exc)[:200]}") from None
        owners = {run.info.run_id: run.data.tags.get(OWNER_TAG) for run in found}
        return [
            OpenRun(
                kind="mlflow_run",
                run_id=run.info.run_id,
                owner=run.data.tags.get(OWNER_TAG)
                or owners.get(run.data.tags.get(PARENT_TAG, ""))
                or self._parent_owner(run.data.tags.get(PARENT_TAG)),
                heartbeat=datetime.fromtimestamp(run.info.start_time / 1000, UTC),
                label=f"{self.experiment}/{run.info.run_name}",
                state=str(run.info.status),
            )
            for run in found
        ]

    def _parent_owner(self, parent_id: str | None) -> str | None:
        if not parent_id:
            return None
        try:
            return self.client.get_run(parent_id).data.tags.get(OWNER_TAG)
        except MlflowException:
            return None

    def close_run(self, run_id: str, reason: str) -> bool:
        """KILLED, with the reason as a tag; False when the run is no longer RUNNING."""
        try:
            if self.client.get_run(run_id).info.status != "RUNNING":
                return False
            self.client.set_tag(run_id, ABANDONED_TAG, reason[:500])
            self.client.set_terminated(run_id, status="KILLED")
        except (MlflowException, requests.RequestException) as exc:
            raise UpstreamUnavailableError(f"MLflow run {run_id}: {str(exc)[:200]}") from None
        logger.warning("MLflow run %s killed: %s", run_id, reason)
        return True

    # ----------------------------------------------- what a walk through a running stack reads

    def production_artifacts(self, alias: str, reference_folder: str) -> ProductionArtifacts | None:
        """List the model holding ``alias`` and its drift reference (None when no version does).

        Artifacts live wherever the server that logged them stored them, so a registry shared
        by several checkouts can name a version whose files this server cannot reach.
        """
        version = self.version_holding(alias)
        if version is None:
            return None
        model_files: list[str] = []
        reference_files: list[str] = []
        error = None
        try:
            listed = mlflow.artifacts.list_artifacts(
                artifact_uri=f"models:/{self.model_name}/{version.version}"
            )
            model_files = [item.path for item in listed]
            if version.run_id:
                listed = self.client.list_artifacts(version.run_id, reference_folder)
                reference_files = [item.path for item in listed]
        except MlflowException as exc:  # a run or logged model deleted from the registry
            if not mlflow_registry.is_not_found(exc):
                raise UpstreamUnavailableError(f"MLflow artifacts: {str(exc)[:200]}") from None
            error = str(exc)[:200]
        except requests.RequestException as exc:
            raise UpstreamUnavailableError(f"MLflow did not list artifacts ({exc})") from None
        return ProductionArtifacts(
            version.version, version.run_id, tuple(model_files), tuple(reference_files), error
        )

    def retire(self, alias: str, version: str, reason: str) -> None:
        """Take the served alias off a version nothing can load (recorded in the history)."""
        mlflow_registry.retire(self.client, self.model_name, alias, version, reason)

    # --------------------------------------------------------------- what an operator does

    def promote(self, version: str | int, alias: str, reason: str | None = None) -> Registration:
        return mlflow_registry.promote(
            self.client, self.model_name, version, alias, reason, owner=self.owner
        )

    def rollback(self, alias: str, to: str | int | None = None) -> Registration:
        return mlflow_registry.rollback(
            self.client, self.model_name, alias, to=to, owner=self.owner
        )

    def describe(self) -> dict[str, Any]:
        """Alias -> version with the recorded decision, and each alias's history."""
        return mlflow_registry.describe_aliases(self.client, self.model_name)

    def versions(self) -> list[VersionInfo]:
        """Every registered version (empty when the model is not registered yet)."""
        try:
            found = self.client.search_model_versions(f"name = '{self.model_name}'")
        except MlflowException as exc:
            raise UpstreamUnavailableError(f"MLflow registry: {str(exc)[:200]}") from None
        return [
            VersionInfo(str(v.version), tuple(v.aliases or ()), dict(v.tags or {})) for v in found
        ]

    def version_tags(self, version: str) -> dict[str, str]:
        return dict(self.client.get_model_version(self.model_name, version).tags or {})

    def cut_registrations(self) -> CutRegistrations:
        """This model's registrations and alias moves cut short, for reconciliation."""
        return CutRegistrations(self)


class CutRegistrations:
    """Registrations and alias moves a kill cut between their steps, as open runs.

    Reconciliation (``persona.flows.reconcile``) judges the mover recorded on the version; when
    it is gone, a move that reached the alias gets its history entry (the alias serves it:
    the move was decided and done), and a version no alias reached is tagged
    ``decision=abandoned`` with why, so it never looks like a silent candidate.
    """

    def __init__(self, models: MlflowModels) -> None:
        self.models = models

    def _cut_moves(self) -> dict[str, CutMove]:
        if self.models.unreachable is not None:
            raise self.models.unreachable
        client, name = self.models.client, self.models.model_name
        try:
            model = client.get_registered_model(name)
            found = client.search_model_versions(f"name = '{name}'")
        except MlflowException as exc:
            if mlflow_registry.is_not_found(exc):
                return {}
            raise UpstreamUnavailableError(f"MLflow registry: {str(exc)[:200]}") from None
        except requests.RequestException as exc:
            raise UpstreamUnavailableError(f"MLflow registry: {str(exc)[:200]}") from None
        held: dict[str, list[str]] = {}  # search results carry no aliases: the model's do
        for alias, version in (model.aliases or {}).items():
            held.setdefault(str(version), []).append(alias)
        states = [
            VersionState(
                str(v.version),
                tuple(held.get(str(v.version), ())),
                dict(v.tags or {}),
                (
                    datetime.fromtimestamp(v.creation_timestamp / 1000, UTC)
                    if v.creation_timestamp
                    else None
                ),
            )
            for v in found
        ]
        return {cut.version: cut for cut in find_cut_moves(model.tags or {}, states)}

    def open_runs(self) -> list[OpenRun]:
        return [
            OpenRun(
                kind="model_version",
                run_id=cut.version,
                owner=cut.owner,
                heartbeat=cut.heartbeat,
                label=f"{self.models.model_name} v{cut.version}",
                state=cut.state,
            )
            for cut in self._cut_moves().values()
        ]

    def close_run(self, run_id: str, reason: str) -> bool:
        """Complete the move's history entry, or mark the version abandoned; False when the
        move is no longer cut (its mover finished it meanwhile)."""
        cut = self._cut_moves().get(run_id)
        if cut is None:
            return False
        client, name = self.models.client, self.models.model_name
        try:
            if cut.completes_history:
                append_history(client, name, cut.alias, cut.entry)
                logger.warning(
                    "%s v%s holds @%s but its history entry was cut: completed (%s)",
                    name,
                    cut.version,
                    cut.alias,
                    reason,
                )
                return True
            why = abandoned_reason(cut, reason)
            tags = {
                "decision": ABANDONED,
                "decision_reason": why[:500],
                "abandoned_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            for key, value in tags.items():
                client.set_model_version_tag(name, cut.version, key, value)
        except (MlflowException, requests.RequestException) as exc:
            raise UpstreamUnavailableError(f"MLflow registry: {str(exc)[:200]}") from None
        logger.warning("%s v%s %s", name, cut.version, why)
        return True
