"""The model a scoring worker serves, and how it follows the registry alias without restarts.

Each worker owns one ``ModelStore``. A background thread resolves ``models:/<name>@<alias>``
every poll interval; when the alias points at a new version, the version is downloaded and
compiled off the request path and then swapped in with one reference assignment, so a request
keeps the model it started with. While the registry cannot be reached the store keeps serving
what it has (and says how stale it is), retrying with exponential backoff.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from persona.data.schema import DatasetSchema
from persona.errors import ModelUnavailableError, PersonaError, UpstreamUnavailableError
from persona.model.pyfunc import PersonaModel
from persona.serving.fastpath import CompiledModel
from persona.serving.payload import Batch, InputSpec

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedModel:
    """Everything a request needs, immutable once built: swapping it is atomic."""

    name: str
    version: str
    run_id: str
    alias: str
    promoted_at: str | None
    model: PersonaModel
    compiled: CompiledModel | None
    spec: InputSpec
    training_metrics: dict[str, float] = field(default_factory=dict)
    loaded_at: float = field(default_factory=time.time)

    def describe(self) -> dict[str, Any]:
        personas = sorted(self.model.personas.values(), key=lambda p: p.persona_id)
        unique = {p.persona_id: p for p in personas}
        return {
            "name": self.name,
            "version": self.version,
            "alias": self.alias,
            "run_id": self.run_id,
            "promoted_at": self.promoted_at,
            "loaded_at": self.loaded_at,
            "fast_path": self.compiled is not None,
            "input": {
                "id_column": self.spec.id_column,
                "numeric": list(self.spec.numeric),
                "categorical": list(self.spec.categorical),
            },
            "personas": [
                {"persona_id": p.persona_id, "name": p.name, "description": p.description}
                for p in unique.values()
            ],
            "training_metrics": self.training_metrics,
        }

    def score(self, batch: Batch) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """persona_id, persona_name, confidence, distance — fast path when the model compiled."""
        compiled, spec = self.compiled, self.spec
        if compiled is not None:
            # The request follows the model's feature list; the compiled model takes its own column
            # order and only the categoricals it uses (none when categorical_weight was 0).
            numeric = batch.numeric
            if compiled.numeric != spec.numeric:
                numeric = numeric[:, [spec.numeric.index(name) for name in compiled.numeric]]
            categorical = [
                batch.categorical[spec.categorical.index(n)] for n in compiled.categorical
            ]
            scores = compiled.score(numeric, categorical)
            return scores.persona_id, scores.persona_name, scores.confidence, scores.distance
        frame = pd.DataFrame(batch.numeric, columns=list(self.spec.numeric))
        for name, values in zip(self.spec.categorical, batch.categorical, strict=True):
            frame[name] = values
        out = self.model.predict(None, frame)
        return (
            out["persona_id"].to_numpy(),
            out["persona_name"].to_numpy(),
            out["confidence"].to_numpy(),
            out["distance"].to_numpy(),
        )


def spec_for_model(schema: DatasetSchema, max_rows: int) -> Callable[[PersonaModel], InputSpec]:
    """The request contract of a model: its own feature columns, the schema's id column."""
    ignored = tuple(c for c in (schema.month_column, schema.truth_column) if c)

    def build(model: PersonaModel) -> InputSpec:
        categorical = tuple(model.categorical)
        numeric = tuple(f for f in model.features if f not in categorical)
        return InputSpec(numeric, categorical, schema.id_column, ignored, max_rows)

    return build


class ModelStore:
    """Holds the served model; ``refresh`` is safe to call from any thread."""

    def __init__(
        self,
        loader: Callable[[], tuple[str, Callable[[], ServedModel]] | None],
        poll_seconds: float,
        max_backoff_seconds: float = 60.0,
    ) -> None:
        self._resolve = loader
        self.poll_seconds = poll_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.current: ServedModel | None = None
        self.last_error: str | None = None
        self.last_success_at: float | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> bool:
        """Check the alias once; load and swap when it moved. True when the registry answered."""
        with self._lock:
            try:
                resolved = self._resolve()
                if resolved is None:
                    raise ModelUnavailableError("no version holds the alias yet")
                version, build = resolved
                if self.current is None or self.current.version != version:
                    started = time.perf_counter()
                    fresh = build()
                    previous = self.current.version if self.current else None
                    self.current = fresh
                    logger.info(
                        "serving %s v%s (was %s), loaded in %.2fs",
                        fresh.name,
                        fresh.version,
                        f"v{previous}" if previous else "nothing",
                        time.perf_counter() - started,
                    )
            except PersonaError as exc:
                self.last_error = str(exc)
                logger.warning("model check failed: %s", exc)
                return False
            self.last_error = None
            self.last_success_at = time.time()
            return True

    def staleness_seconds(self) -> float | None:
        """Seconds since the registry last answered (None before it ever did)."""
        return None if self.last_success_at is None else time.time() - self.last_success_at

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="model-poller", daemon=True)
            self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()

    def _run(self) -> None:
        backoff = 1.0
        if self.current is not None:  # loaded already: the next check is one interval away
            self._wake.wait(self.poll_seconds)
            self._wake.clear()
        while not self._stopped.is_set():
            ok = self.refresh()
            if ok:
                backoff = 1.0
                wait = self.poll_seconds
            else:
                wait = min(backoff, self.max_backoff_seconds, max(self.poll_seconds, 1.0))
                backoff *= 2
            self._wake.wait(wait)
            self._wake.clear()


def registry_loader(
    tracking_uri: str, name: str, alias: str, spec_for: Callable[[PersonaModel], InputSpec]
) -> Callable[[], tuple[str, Callable[[], ServedModel]] | None]:
    """Resolve the alias over HTTP; the returned builder downloads and compiles that version."""
    import os

    # MLflow's client retries a dead server for minutes; the poller has its own backoff.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)  # else models:/ URIs resolve against a local default
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def resolve() -> tuple[str, Callable[[], ServedModel]] | None:
        try:
            version = client.get_model_version_by_alias(name, alias)
        except MlflowException as exc:
            if "RESOURCE_DOES_NOT_EXIST" in str(exc.error_code) or "not found" in str(exc).lower():
                return None
            raise UpstreamUnavailableError(f"MLflow at {tracking_uri}: {exc.message}") from None
        except Exception as exc:  # noqa: BLE001 - connection errors come in many types
            raise UpstreamUnavailableError(
                f"MLflow at {tracking_uri} did not answer ({type(exc).__name__})"
            ) from None

        def build() -> ServedModel:
            try:
                with tempfile.TemporaryDirectory(prefix="persona-model-") as scratch:
                    local = mlflow.artifacts.download_artifacts(
                        artifact_uri=f"models:/{name}/{version.version}",
                        dst_path=scratch,
                    )
                    loaded = mlflow.pyfunc.load_model(str(Path(local)))
                metrics = client.get_run(version.run_id).data.metrics if version.run_id else {}
            except MlflowException as exc:
                raise ModelUnavailableError(f"{name} v{version.version}: {exc.message}") from None
            except OSError as exc:
                raise UpstreamUnavailableError(
                    f"could not download {name} v{version.version}: {exc}"
                ) from None
            model = loaded.unwrap_python_model()
            try:
                compiled = CompiledModel.from_persona_model(model)
            except ModelUnavailableError as exc:
                logger.warning("no fast path for %s v%s (%s)", name, version.version, exc)
                compiled = None
            return ServedModel(
                name=name,
                version=str(version.version),
                run_id=version.run_id or "",
                alias=alias,
                promoted_at=(version.tags or {}).get("promoted_at"),
                model=model,
                compiled=compiled,
                spec=spec_for(model),
                training_metrics={
                    k.removeprefix("winner_"): v
                    for k, v in metrics.items()
                    if k.startswith("winner_")
                },
            )

        return str(version.version), build

    return resolve
