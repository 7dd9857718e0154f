"""MLflow tracking and registry: runs, the pyfunc model, aliases and rollback (no stages)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import requests
from mlflow.exceptions import MlflowException, RestException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from persona.errors import ModelUnavailableError, PersonaError, UpstreamUnavailableError

logger = logging.getLogger(__name__)

PRODUCTION = "production"
CHALLENGER = "challenger"


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    alias: str
    reason: str
    previous_production: str | None


def connect(
    tracking_uri: str, experiment: str | None = None, timeout_s: float = 30.0
) -> MlflowClient:
    """Point MLflow at the server and fail fast, naming the URI, when it does not answer.

    The probe is one plain HTTP GET per second: MLflow's own client retries for minutes.
    """
    if tracking_uri.startswith(("http://", "https://")):
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                response = requests.get(
                    f"{tracking_uri.rstrip('/')}/health", timeout=min(5.0, timeout_s)
                )
                if response.status_code == 200:
                    break
                problem = f"HTTP {response.status_code} from /health"
            except requests.RequestException as exc:
                problem = type(exc).__name__
            if time.monotonic() > deadline:
                raise UpstreamUnavailableError(
                    f"MLflow server at {tracking_uri} did not answer ({problem})"
                )
            time.sleep(1.0)
    # MLflow prints a "View run" URL on stdout per run (our CLIs answer in JSON on stdout) and
    # a progress bar per model download (twice per training); our own logs say what happens.
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri)
    if experiment:
        mlflow.set_experiment(experiment)
    return client


def log_candidate_run(name: str, params: Mapping[str, Any], metrics: Mapping[str, float]) -> str:
    with mlflow.start_run(run_name=name, nested=True) as run:
        mlflow.log_params(dict(params))
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v == v})
        return run.info.run_id


def log_pyfunc_model(
    python_model,
    artifacts: Mapping[str, str],
    input_example: pd.DataFrame,
    output_example: pd.DataFrame,
    pip_requirements: list[str],
) -> str:
    """Log the winner in the active run; returns the model URI."""
    signature = infer_signature(input_example, output_example)
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=python_model,
        artifacts=dict(artifacts),
        signature=signature,
        input_example=input_example,
        pip_requirements=pip_requirements,
    )
    return info.model_uri


def production_version(client: MlflowClient, name: str):
    """The version holding the production alias, or None."""
    try:
        return client.get_model_version_by_alias(name, PRODUCTION)
    except (RestException, MlflowException) as exc:
        if "RESOURCE_DOES_NOT_EXIST" in str(exc) or "not found" in str(exc).lower():
            return None
        raise


def load_model(uri: str):
    try:
        return mlflow.pyfunc.load_model(uri)
    except MlflowException as exc:
        raise ModelUnavailableError(f"cannot load {uri}: {str(exc)[:300]}") from None


def register(
    client: MlflowClient,
    name: str,
    model_uri: str,
    promote: bool,
    reason: str,
    tags: Mapping[str, Any],
) -> RegisteredVersion:
    """Register the winner and move the production or challenger alias, recording why."""
    try:
        client.get_registered_model(name)
    except (RestException, MlflowException):
        client.create_registered_model(name, description="Customer persona segmentation models.")
    current = production_version(client, name)
    version = mlflow.register_model(model_uri, name).version
    alias = PRODUCTION if promote else CHALLENGER
    now = datetime.now(UTC).isoformat(timespec="seconds")
    version_tags = {
        **{k: str(v) for k, v in tags.items()},
        "decision": alias,
        "decision_reason": reason,
    }
    if promote:
        version_tags["promoted_at"] = now
        if current is not None:
            version_tags["previous_production"] = current.version
    for key, value in version_tags.items():
        client.set_model_version_tag(name, version, key, value)
    client.set_registered_model_alias(name, alias, version)
    logger.info("registered %s v%s as @%s: %s", name, version, alias, reason)
    return RegisteredVersion(
        name, str(version), alias, reason, current.version if (promote and current) else None
    )


def rollback(client: MlflowClient, name: str) -> RegisteredVersion:
    """Move production back to the version it replaced (recorded when it was promoted)."""
    current = production_version(client, name)
    if current is None:
        raise PersonaError(f"{name} has no production version to roll back")
    previous = current.tags.get("previous_production")
    if not previous:
        raise PersonaError(f"{name} v{current.version} replaced nothing; cannot roll back")
    client.set_registered_model_alias(name, PRODUCTION, previous)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    client.set_model_version_tag(name, current.version, "rolled_back_at", now)
    client.set_model_version_tag(name, previous, "restored_at", now)
    reason = f"rollback from v{current.version}"
    logger.info("%s: production moved back from v%s to v%s", name, current.version, previous)
    return RegisteredVersion(name, str(previous), PRODUCTION, reason, current.version)


def log_files(paths: list[Path], artifact_path: str | None = None) -> None:
    for path in paths:
        mlflow.log_artifact(str(path), artifact_path=artifact_path)


def describe_aliases(client: MlflowClient, name: str) -> dict[str, Any]:
    """Alias -> version summary with the recorded decision, for people and health checks."""
    try:
        model = client.get_registered_model(name)
    except (RestException, MlflowException):
        raise ModelUnavailableError(f"no registered model named {name!r}") from None
    summary = {"name": name, "aliases": {}}
    for alias, version in (model.aliases or {}).items():
        details = client.get_model_version(name, version)
        summary["aliases"][alias] = {"version": version, **details.tags}
    return summary


def download_artifact(run_id: str, artifact_path: str, destination: Path) -> Path:
    """One artifact of a run, fetched through the tracking server (local folder or GCS)."""
    destination.mkdir(parents=True, exist_ok=True)
    try:
        return Path(
            mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=artifact_path, dst_path=str(destination)
            )
        )
    except (MlflowException, OSError) as exc:
        raise ModelUnavailableError(
            f"run {run_id} has no artifact {artifact_path!r}: {str(exc)[:200]}"
        ) from None


def log_report_run(
    run_name: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    tags: Mapping[str, str],
    files: list[Path],
    artifact_path: str,
) -> tuple[str, str]:
    """A run that carries a report (drift check); returns its id and its artifact folder URI."""
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.set_tags(dict(tags))
        mlflow.log_params(dict(params))
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None})
        log_files(files, artifact_path)
        artifact_uri = f"{run.info.artifact_uri.rstrip('/')}/{artifact_path}"
    return run.info.run_id, artifact_uri


def run_url(tracking_uri: str, run_id: str) -> str | None:
    """Where a person opens a run in the MLflow UI (None when the store is not a server)."""
    if not tracking_uri.startswith(("http://", "https://")):
        return None
    run = MlflowClient(tracking_uri).get_run(run_id)
    return f"{tracking_uri.rstrip('/')}/#/experiments/{run.info.experiment_id}/runs/{run_id}"
