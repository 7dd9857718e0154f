"""MLflow tracking and registry: runs, the pyfunc model, aliases and rollback (no stages).

Every alias move of ours (register, promote, rollback) goes through ``_move_alias``: it tags
the version (decision, reason, promoted_at, previous_<alias>, the move itself), moves the alias,
then appends to the alias history (``persona.adapters.alias_history``, whose names are
re-exported here). A registration creates its version with ``decision=pending`` and its tags
in one call, so a version whose run died before an alias moved says so.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import requests
from mlflow.exceptions import MlflowException, RestException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from persona.adapters import upstream
from persona.adapters.alias_history import (  # noqa: F401 - public names kept importable here
    BY_OUTSIDE,
    BY_PERSONA,
    HISTORY_LENGTH,
    HISTORY_TAG_PREFIX,
    LAST_MOVE_TAG,
    OWNER_TAG,
    PENDING,
    PROMOTE,
    REGISTER,
    RETIRE,
    ROLLBACK,
    alias_history,
    alias_stack,
    append_history,
    history_entry,
    last_move_tag,
    parse_history,
    promotion_info_from,
    rollback_target,
)
from persona.errors import (
    InvalidInputError,
    ModelUnavailableError,
    PersonaError,
)
from persona.ports import Registration

logger = logging.getLogger(__name__)

# The alias the API serves and training promotes to is configured (settings.model_alias,
# PERSONA_MODEL_ALIAS) and passed in by every caller; only the challenger alias is fixed.
CHALLENGER = "challenger"
MANUAL_PROMOTE_REASON = "manual promote by operator"
# One registered-model tag per persona a person renamed: persona.name.<persona_id> = the name.
# On the registered model, not a version, so every later version (retrains) keeps it.
PERSONA_NAME_TAG_PREFIX = "persona.name."


# MLflow's client retries a dead server 7 times with a doubling backoff (about 250 s in
# silence). Ours: 2 retries, 1 s backoff factor, 8 s per attempt -> at most 26 s per request
# (upstream.request_bound_s), 2 s for a closed port. An operator's own MLFLOW_HTTP_* win.
REQUEST_BOUNDS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "8",
}
CONNECT_BUDGET_S = 20.0  # the probe's whole wait (5 attempts over 15 s for a closed port): a
# starting server (6-12 s) still makes it, and a command fails within 30 s of its start


def bound_requests() -> None:
    """Bound the MLflow client's retries and timeouts in this process (the CLI, flows, blocks)."""
    for name, value in REQUEST_BOUNDS.items():
        os.environ.setdefault(name, value)


def probe(
    tracking_uri: str,
    budget_s: float = CONNECT_BUDGET_S,
    *,
    clock=time.monotonic,
    sleep=time.sleep,
) -> None:
    """Wait (bounded, each retry logged) until the server's /health answers; else one
    ``UpstreamUnavailableError`` naming the URL. A non-HTTP store (a folder) needs no probe."""
    if not tracking_uri.startswith(("http://", "https://")):
        return
    health = f"{tracking_uri.rstrip('/')}/health"

    def attempt(timeout_s: float) -> str | None:
        try:
            response = requests.get(health, timeout=timeout_s)
        except requests.RequestException as exc:
            return type(exc).__name__
        return None if response.status_code == 200 else f"HTTP {response.status_code} from /health"

    upstream.wait_for(
        f"MLflow at {tracking_uri}",
        attempt,
        upstream.Backoff(budget_s=budget_s, attempt_timeout_s=min(5.0, budget_s)),
        clock=clock,
        sleep=sleep,
    )


def connect(
    tracking_uri: str, experiment: str | None = None, timeout_s: float = CONNECT_BUDGET_S
) -> MlflowClient:
    """Point MLflow at the server and fail fast, naming the URI, when it does not answer.

    The probe retries on a short logged schedule; the client's own retries are bounded
    (``REQUEST_BOUNDS``) so a server that goes away later fails a request within 30 s too.
    """
    bound_requests()
    probe(tracking_uri, timeout_s)
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


def production_version(client: MlflowClient, name: str, alias: str):
    """The version holding ``alias`` (the served one, or the challenger), or None."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except (RestException, MlflowException) as exc:
        if is_not_found(exc):
            return None
        raise


def is_not_found(exc: Exception) -> bool:
    """MLflow's way of saying a model, version, alias, run or artifact does not exist (vs. is
    down): the one place its error text is read."""
    code = getattr(exc, "error_code", "")
    return "RESOURCE_DOES_NOT_EXIST" in f"{code} {exc}" or "not found" in str(exc).lower()


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
    *,
    alias: str,
    model_tags: Mapping[str, str] | None = None,
    owner: str | None = None,
) -> Registration:
    """Register the winner and move ``alias`` (on promotion) or the challenger alias, with why.

    ``alias`` is the served alias (settings.model_alias) that a promotion moves; ``model_tags``
    go on the registered model (e.g. the segmentation it belongs to). The version is created
    with its ``tags``, ``decision=pending`` and the ``owner`` (the process registering) in one
    call: if the run dies before an alias moves, reconciliation marks it abandoned.
    """
    if alias == CHALLENGER:
        raise PersonaError(f"the served alias cannot be @{CHALLENGER}: training sets it on losers")
    try:
        client.get_registered_model(name)
    except (RestException, MlflowException):
        client.create_registered_model(name, description="Customer persona segmentation models.")
    for key, value in (model_tags or {}).items():
        client.set_registered_model_tag(name, key, value)
    current = production_version(client, name, alias)
    creation_tags = {**{k: str(v) for k, v in tags.items()}, "decision": PENDING}
    if owner is not None:
        creation_tags[OWNER_TAG] = owner
    version = str(mlflow.register_model(model_uri, name, tags=creation_tags).version)
    moved = alias if promote else CHALLENGER
    holder = current if promote else production_version(client, name, moved)
    replaced = holder.version if holder is not None else None
    entry = _move_alias(
        client,
        name,
        moved,
        version,
        action=REGISTER,
        reason=reason,
        replaced=replaced,
        previous=replaced,
        promotion=promote,
        owner=owner,
    )
    return Registration(
        name,
        version,
        moved,
        reason,
        replaced if promote else None,
        promoted_at=entry["at"] if promote else None,
    )


def promote(
    client: MlflowClient,
    name: str,
    version: str | int,
    alias: str,
    reason: str | None = None,
    owner: str | None = None,
) -> Registration:
    """Move the alias to a chosen version by hand, tagged and recorded like an automatic one."""
    reason = reason or MANUAL_PROMOTE_REASON
    version = str(version).strip().removeprefix("v")
    history = alias_history(_registered_model(client, name), alias)
    _require_version(client, name, version)
    current = production_version(client, name, alias)
    if current is not None and str(current.version) == version:
        by = BY_PERSONA if history and history[-1]["version"] == version else BY_OUTSIDE
        message = f"v{version} already holds @{alias} (moved there by {by}); nothing changed"
        logger.info("%s: %s", name, message)
        return Registration(name, version, alias, message, None, changed=False)
    replaced = current.version if current is not None else None
    entry = _move_alias(
        client,
        name,
        alias,
        version,
        action=PROMOTE,
        reason=reason,
        replaced=replaced,
        previous=replaced,
        owner=owner,
    )
    return Registration(name, version, alias, reason, replaced, promoted_at=entry["at"])


def rollback(
    client: MlflowClient,
    name: str,
    alias: str,
    to: str | int | None = None,
    owner: str | None = None,
) -> Registration:
    """Move the alias back to the version it replaced, whoever moved it last.

    Our alias history decides (it survives promotions made in the MLflow UI); the
    previous_<alias> tag of the current version is the fallback for registries older than the
    history. ``to`` picks the version explicitly (a promote recorded as a rollback).
    """
    history = alias_history(_registered_model(client, name), alias)
    current = production_version(client, name, alias)
    if to is not None:
        target = str(to).strip().removeprefix("v")
        _require_version(client, name, target)
        if current is not None and str(current.version) == target:
            message = f"v{target} already holds @{alias}; nothing changed"
            logger.info("%s: %s", name, message)
            return Registration(name, target, alias, message, None, changed=False)
    elif current is None:
        raise PersonaError(f"{name} has no {alias} version to roll back")
    else:
        current_tags = current.tags or {}
        target = rollback_target(
            history, str(current.version), current_tags.get(_previous_tag(alias))
        )
        if target is None:
            raise PersonaError(_nothing_to_roll_back(client, name, alias, current.version, history))
        _require_version(client, name, target, " (the version to roll back to)")
    replaced = str(current.version) if current is not None else None
    reason = f"rollback from v{replaced}" if replaced else f"rollback to v{target}"
    if replaced and (not history or history[-1]["version"] != replaced):
        reason += ", which was moved there outside persona"
    entry = history_entry(target, replaced, ROLLBACK, reason)
    after = alias_stack([*history, entry])
    if len(after) >= 2:
        previous = after[-2]
    else:  # nothing older in our history: keep what the restored version itself replaced
        previous = (client.get_model_version(name, target).tags or {}).get(_previous_tag(alias))
        previous = previous if previous not in (target, replaced) else None
    entry = _move_alias(
        client,
        name,
        alias,
        target,
        action=ROLLBACK,
        reason=reason,
        replaced=replaced,
        previous=previous,
        owner=owner,
    )
    return Registration(name, target, alias, reason, replaced, promoted_at=entry["at"])


def retire(client: MlflowClient, name: str, alias: str, version: str, reason: str) -> None:
    """Take ``alias`` off a version nothing can load, recorded in the history like any move.

    A later rollback never returns to a retired version: the history pops it.
    """
    entry = history_entry(version, version, RETIRE, reason)
    client.delete_registered_model_alias(name, alias)
    client.set_model_version_tag(name, version, "retired_at", entry["at"])
    client.set_model_version_tag(name, version, "retired_reason", reason[:200])
    append_history(client, name, alias, entry)
    logger.warning("took @%s off %s v%s: %s", alias, name, version, reason)


def promotion_info(
    client: MlflowClient, name: str, alias: str, version: str | int
) -> dict[str, str | None]:
    """When and by whom the version holding ``alias`` got it, for the scoring API's /model.

    One registry call; None fields (never an exception) when MLflow does not answer, so the
    API keeps serving. "outside persona" when our history does not end with this version.
    """
    try:
        model = client.get_registered_model(name)
    except (MlflowException, requests.RequestException, OSError) as exc:
        logger.warning("no promotion info for %s@%s: %s", name, alias, str(exc)[:200])
        return {"promoted_at": None, "promoted_by": None}
    return promotion_info_from(model, alias, version)


def _move_alias(
    client: MlflowClient,
    name: str,
    alias: str,
    version: str,
    *,
    action: str,
    reason: str,
    replaced: str | None,
    previous: str | None,
    promotion: bool = True,
    owner: str | None = None,
) -> dict[str, Any]:
    """The one place an alias moves: version tags, the alias, then the history entry.

    ``promotion`` False (a challenger) records the decision but no promoted_at. The history is
    written after the alias so that a failed move never looks like one of ours. The move
    itself (its history entry, alias and ``owner``) is tagged on the version first: a move cut
    between the steps is found from it and completed or abandoned by reconciliation
    (``alias_history.find_cut_moves``).
    """
    entry = history_entry(version, replaced, action, reason)
    tags = {
        LAST_MOVE_TAG: last_move_tag(alias, entry, owner),
        "decision": alias,
        "decision_reason": reason,
    }
    if promotion:
        tags["promoted_at"] = entry["at"]
        if previous is not None:
            tags[_previous_tag(alias)] = str(previous)
        if action == ROLLBACK:
            tags["restored_at"] = entry["at"]
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    if promotion and previous is None:
        # a stale previous_<alias> from an earlier promotion would mislead a rollback
        with contextlib.suppress(MlflowException):
            client.delete_model_version_tag(name, version, _previous_tag(alias))
    client.set_registered_model_alias(name, alias, version)
    if action == ROLLBACK and replaced is not None and replaced != version:
        client.set_model_version_tag(name, replaced, "rolled_back_at", entry["at"])
    append_history(client, name, alias, entry)
    logger.info(
        "%s: @%s moved to v%s (%s%s): %s",
        name,
        alias,
        version,
        action,
        f", was v{replaced}" if replaced else "",
        reason,
    )
    return entry


def persona_names(client: MlflowClient, name: str) -> dict[int, str]:
    """The names people gave personas of model ``name`` (none before its first version)."""
    try:
        tags = client.get_registered_model(name).tags or {}
    except (RestException, MlflowException) as exc:
        if is_not_found(exc):
            return {}
        raise
    return names_from_tags(tags)


def names_from_tags(tags: Mapping[str, str]) -> dict[int, str]:
    found = {}
    for key, value in tags.items():
        suffix = key.removeprefix(PERSONA_NAME_TAG_PREFIX)
        if suffix != key and suffix.isdigit():
            found[int(suffix)] = value
    return found


def rename_persona(client: MlflowClient, name: str, persona_id: int, new_name: str) -> None:
    client.set_registered_model_tag(name, f"{PERSONA_NAME_TAG_PREFIX}{persona_id}", new_name)


def _previous_tag(alias: str) -> str:
    return f"previous_{alias}"


def _registered_model(client: MlflowClient, name: str) -> Any:
    try:
        return client.get_registered_model(name)
    except (RestException, MlflowException):
        raise ModelUnavailableError(f"no registered model named {name!r}") from None


def version_numbers(client: MlflowClient, name: str) -> list[str]:
    """Every registered version of the model, oldest first."""
    found = client.search_model_versions(f"name = '{name}'")
    return sorted((str(v.version) for v in found), key=lambda v: (len(v), v))


def _require_version(client: MlflowClient, name: str, version: str, role: str = "") -> None:
    """Refuse, in one line naming the versions that exist, a version that does not."""
    versions = version_numbers(client, name)
    if version not in versions:
        raise InvalidInputError(
            f"{name} has no version {version!r}{role}; versions: {', '.join(versions) or 'none'}"
        )


def _nothing_to_roll_back(
    client: MlflowClient, name: str, alias: str, current: str, history: list[dict[str, Any]]
) -> str:
    versions = ", ".join(version_numbers(client, name))
    hint = (
        f"choose one with `persona model promote N` (`make promote VERSION=N`); "
        f"versions: {versions}"
    )
    if history:
        return f"{name} v{current} replaced nothing; cannot roll back; {hint}"
    return (
        f"{name} v{current} holds @{alias} but persona recorded no earlier version (promoted "
        f"outside persona, e.g. in the MLflow UI, or before persona kept a history); {hint}"
    )


def log_files(paths: list[Path], artifact_path: str | None = None) -> None:
    for path in paths:
        mlflow.log_artifact(str(path), artifact_path=artifact_path)


def describe_aliases(client: MlflowClient, name: str) -> dict[str, Any]:
    """Alias -> version summary with the recorded decision, for people and health checks."""
    try:
        model = client.get_registered_model(name)
    except (RestException, MlflowException):
        raise ModelUnavailableError(f"no registered model named {name!r}") from None
    summary = {"name": name, "aliases": {}, "history": {}}
    for alias, version in (model.aliases or {}).items():
        details = client.get_model_version(name, version)
        summary["aliases"][alias] = {
            "version": version,
            **details.tags,
            "promoted_by": promotion_info_from(model, alias, version)["promoted_by"],
        }
    for key in sorted(model.tags or {}):
        if key.startswith(HISTORY_TAG_PREFIX):
            alias = key.removeprefix(HISTORY_TAG_PREFIX)
            summary["history"][alias] = alias_history(model, alias)
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
