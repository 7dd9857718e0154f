"""The MLflow adapter as the scoring API reads it: the ``ModelSource`` port
(``persona.serving.model_source``) over the registry's alias and the alias history.

A worker polls the registry for hours, so its client never probes at start and never retries:
the model store keeps serving and retries with a backoff of its own.
"""

from __future__ import annotations

import contextlib
import os
import tempfile

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from persona.adapters.mlflow_registry import (
    is_not_found,
    load_model,
    persona_names,
    production_version,
    promotion_info,
)
from persona.adapters.upstream import mlflow_unanswered
from persona.errors import ModelUnavailableError, PersonaError, UpstreamUnavailableError
from persona.segmentation import DEFAULT, NAME_PATTERN, SEGMENTATION_TAG
from persona.serving.model_source import LoadedVersion


def polling_client(tracking_uri: str) -> MlflowClient:
    """A client for a process that polls the registry for hours (the scoring API): no start-up
    probe and no retries, as the caller keeps serving and retries with a backoff of its own."""
    # MLflow's client retries a dead server for minutes
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)  # else models:/ URIs resolve against a local default
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


@contextlib.contextmanager
def _answering(tracking_uri: str):
    """Registry failures as persona errors: the server is down or answers with an error."""
    try:
        yield
    except PersonaError:
        raise
    except MlflowException as exc:
        # the client giving up on the server is said in one line, as the CLI's outages are
        said = mlflow_unanswered(exc) or f"MLflow at {tracking_uri}: {exc.message}"
        raise UpstreamUnavailableError(said) from None
    except Exception as exc:  # noqa: BLE001 - connection errors come in many types
        raise UpstreamUnavailableError(
            f"MLflow at {tracking_uri} did not answer ({type(exc).__name__})"
        ) from None


class RegistryModelSource:
    """Registered model ``name`` on the MLflow server at ``tracking_uri``, as the scoring API
    reads it: which version holds an alias, and a version downloaded, loaded and described."""

    def __init__(self, tracking_uri: str, name: str, client: MlflowClient | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.name = name
        self._client = client if client is not None else polling_client(tracking_uri)

    def version_holding(self, alias: str) -> str | None:
        with _answering(self.tracking_uri):
            holder = production_version(self._client, self.name, alias)
        return None if holder is None else str(holder.version)

    def persona_names(self) -> dict[int, str]:
        with _answering(self.tracking_uri):
            return persona_names(self._client, self.name)

    def load(self, version: str, alias: str) -> LoadedVersion:
        """A ``LoadedVersion`` (persona.serving.model_source) of ``version``."""
        with _answering(self.tracking_uri):
            try:
                details = self._client.get_model_version(self.name, version)
            except MlflowException as exc:
                if not is_not_found(exc):
                    raise
                raise ModelUnavailableError(f"{self.name} has no version {version!r}") from None
        try:
            with tempfile.TemporaryDirectory(prefix="persona-model-") as scratch:
                local = mlflow.artifacts.download_artifacts(
                    artifact_uri=f"models:/{self.name}/{details.version}", dst_path=scratch
                )
                loaded = load_model(local)
            metrics = self._client.get_run(details.run_id).data.metrics if details.run_id else {}
        except MlflowException as exc:
            raise ModelUnavailableError(f"{self.name} v{version}: {exc.message}") from None
        except OSError as exc:
            raise UpstreamUnavailableError(
                f"could not download {self.name} v{version}: {exc}"
            ) from None
        # when this version got the alias: our own history; a move made elsewhere (the MLflow
        # UI) has no time, and is said to come from outside
        promotion = promotion_info(self._client, self.name, alias, str(details.version))
        return LoadedVersion(
            version=str(details.version),
            model=loaded.unwrap_python_model(),
            run_id=details.run_id or "",
            run_metrics=dict(metrics),
            promoted_at=promotion["promoted_at"],
            promoted_by=promotion["promoted_by"],
        )


class RegistrySegmentations:
    """The ``SegmentationSource`` port (persona.serving.segmentations) over the registry: the
    registered models tagged with a segmentation other than the default one."""

    def __init__(self, tracking_uri: str, client: MlflowClient | None = None) -> None:
        self.tracking_uri = tracking_uri
        self._client = client if client is not None else polling_client(tracking_uri)

    def segmentations(self) -> dict[str, str]:
        found: dict[str, str] = {}
        with _answering(self.tracking_uri):
            token = None
            while True:
                page = self._client.search_registered_models(max_results=200, page_token=token)
                for model in page:
                    name = (model.tags or {}).get(SEGMENTATION_TAG, "")
                    if name != DEFAULT and NAME_PATTERN.match(name):
                        found[name] = model.name
                token = page.token
                if not token:
                    return found

    def model_source(self, model_name: str) -> RegistryModelSource:
        return RegistryModelSource(self.tracking_uri, model_name, client=self._client)
