"""What a walk through the running stack reads and repairs: service probes, the served model,
the registry's production version, the months of the customers table.

Thin adapters over the existing ones (``mlflow_registry``, ``database``) and plain HTTP, for
``persona.flows.demo``; every failure becomes a PersonaError that names what to do.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import mlflow
import pandas as pd
import requests
import sqlalchemy as sa
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from sqlalchemy.exc import SQLAlchemyError

from persona.adapters import database, mlflow_registry
from persona.data.schema import DatasetSchema
from persona.errors import UpstreamUnavailableError
from persona.services.processes import ServiceStartError, wait_http

logger = logging.getLogger(__name__)


def require_answer(name: str, url: str, timeout_s: float = 30.0) -> None:
    """Fail with the fix (start the stack) when a service does not answer its health URL."""
    try:
        wait_http(url, timeout_s)
    except ServiceStartError:
        raise UpstreamUnavailableError(
            f"{name} does not answer at {url}; start the stack with `make local-up` "
            "(`make local-status` tells what answers, logs are under PERSONA_HOME/logs)"
        ) from None


@dataclass(frozen=True)
class ProductionArtifacts:
    """The files the stack needs from the production version, as this MLflow server sees them."""

    version: str
    run_id: str | None
    model_files: tuple[str, ...]
    reference_files: tuple[str, ...]
    error: str | None = None


def production_artifacts(
    client: MlflowClient, name: str, alias: str, reference_folder: str
) -> ProductionArtifacts | None:
    """List the model holding ``alias`` and its drift reference (None when no version does).

    Artifacts live wherever the server that logged them stored them, so a registry shared by
    several checkouts can name a version whose files this server cannot reach.
    """
    version = mlflow_registry.production_version(client, name, alias)
    if version is None:
        return None
    model_files: list[str] = []
    reference_files: list[str] = []
    error = None
    try:
        listed = mlflow.artifacts.list_artifacts(artifact_uri=f"models:/{name}/{version.version}")
        model_files = [item.path for item in listed]
        if version.run_id:
            reference_files = [
                item.path for item in client.list_artifacts(version.run_id, reference_folder)
            ]
    except MlflowException as exc:  # a run or logged model deleted from the registry
        if "RESOURCE_DOES_NOT_EXIST" not in str(exc) and "not found" not in str(exc).lower():
            raise UpstreamUnavailableError(f"MLflow artifacts: {str(exc)[:200]}") from None
        error = str(exc)[:200]
    except requests.RequestException as exc:
        raise UpstreamUnavailableError(f"MLflow did not list artifacts ({exc})") from None
    return ProductionArtifacts(
        str(version.version), version.run_id, tuple(model_files), tuple(reference_files), error
    )


def retire_production(
    client: MlflowClient, name: str, alias: str, version: str, reason: str
) -> None:
    """Take the served alias off a version nothing can load; tags on it say when and why."""
    client.delete_registered_model_alias(name, alias)
    client.set_model_version_tag(name, version, "retired_at", datetime.now(UTC).isoformat())
    client.set_model_version_tag(name, version, "retired_reason", reason)
    logger.warning("took @%s off %s v%s: %s", alias, name, version, reason)


@dataclass(frozen=True)
class VersionInfo:
    version: str
    aliases: tuple[str, ...]
    tags: dict[str, str]


def model_versions(client: MlflowClient, name: str) -> list[VersionInfo]:
    """Every registered version of ``name`` (empty when the model is not registered yet)."""
    try:
        found = client.search_model_versions(f"name = '{name}'")
    except MlflowException as exc:
        raise UpstreamUnavailableError(f"MLflow registry: {str(exc)[:200]}") from None
    return [VersionInfo(str(v.version), tuple(v.aliases or ()), dict(v.tags or {})) for v in found]


def version_tags(client: MlflowClient, name: str, version: str) -> dict[str, str]:
    return dict(client.get_model_version(name, version).tags or {})


def read_ready(scoring_url: str, timeout_s: float = 5.0) -> tuple[str | None, str]:
    """(served version, detail) from the API's /ready, on a fresh connection each time.

    A fresh connection lets the kernel hand the request to any worker: each worker follows
    the alias on its own, so asking one keep-alive connection would ask one worker only.
    """
    url = f"{scoring_url.rstrip('/')}/ready"
    try:
        response = requests.get(url, timeout=timeout_s, headers={"Connection": "close"})
        body = response.json()
    except (requests.RequestException, ValueError) as exc:
        return None, f"{url}: {type(exc).__name__}"
    if response.status_code == 200 and body.get("ready"):
        return str(body.get("version")), ""
    return None, str(body.get("reason") or f"HTTP {response.status_code}")


def replace_months(
    engine: sa.Engine,
    table_name: str,
    frame: pd.DataFrame,
    schema: DatasetSchema,
    months: Sequence[str],
) -> int:
    """Delete ``months`` from the table, then upsert ``frame``: a re-run leaves exactly it.

    An upsert alone would keep rows of an earlier, larger run of the same months.
    """
    try:
        table = None
        if sa.inspect(engine).has_table(table_name):
            table = sa.Table(table_name, sa.MetaData(), autoload_with=engine)
        if table is not None and schema.month_column in table.c:  # else upsert names the problem
            with engine.begin() as connection:
                deleted = connection.execute(
                    table.delete().where(table.c[schema.month_column].in_(list(months)))
                ).rowcount
            if deleted:
                logger.info(
                    "removed %d earlier rows of %s from %s", deleted, ", ".join(months), table_name
                )
    except SQLAlchemyError as exc:
        raise UpstreamUnavailableError(f"database unreachable: {str(exc)[:200]}") from None
    return database.upsert_frame(engine, table_name, frame, schema, progress=False)
