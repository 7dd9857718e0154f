"""The model a scoring worker serves, and how it follows the registry alias without restarts.

Each worker owns one ``ModelStore``. A background thread asks the model source (the MLflow
registry; see ``persona.serving.model_source``) which version holds the alias every poll
interval; when the alias points at a new version, the version is downloaded and
compiled off the request path and then swapped in with one reference assignment, so a request
keeps the model it started with. While the registry cannot be reached the store keeps serving
what it has (and says how stale it is), retrying with exponential backoff.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from persona.data.schema import DatasetSchema, schema_from_dict
from persona.errors import ModelUnavailableError, PersonaError
from persona.model.pyfunc import PersonaModel
from persona.serving.contract import Batch, InputSpec
from persona.serving.fastpath import CompiledModel
from persona.serving.model_source import LoadedVersion, ModelSource
from persona.serving.peers import Peers

logger = logging.getLogger(__name__)


class NoVersionYet(ModelUnavailableError):
    """Nothing holds the alias: expected until the first training, so said once, not per poll."""


class InFlight:
    """Requests still using one model, so a swap can wait until the old model is idle."""

    def __init__(self) -> None:
        self._count = 0
        self._idle = threading.Condition()

    def __enter__(self) -> None:
        with self._idle:
            self._count += 1

    def __exit__(self, *exc: object) -> None:
        with self._idle:
            self._count -= 1
            if self._count == 0:
                self._idle.notify_all()

    def __reduce__(self) -> tuple[type, tuple]:
        """A copy in another process (a Spark executor's model) starts with none in flight."""
        return (InFlight, ())

    def wait_idle(self, timeout_s: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._count == 0, timeout_s)


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
    promoted_by: str | None = None  # "persona", or "outside persona" (e.g. the MLflow UI)
    # persona_id -> the name a person gave it (`persona personas rename`), over the model's own
    renames: Mapping[int, str] = field(default_factory=dict)
    loaded_at: float = field(default_factory=time.time)
    in_flight: InFlight = field(default_factory=InFlight, compare=False, repr=False)

    @cached_property
    def _names_by_id(self) -> np.ndarray | None:
        """persona_id -> served name, as an array the scores index (None: no rename)."""
        if not self.renames:
            return None
        personas = self.model.personas.values()
        size = max([p.persona_id for p in personas] + list(self.renames)) + 1
        names = np.empty(size, dtype=object)
        for persona in personas:
            names[persona.persona_id] = self.renames.get(persona.persona_id, persona.name)
        return names

    def describe(self) -> dict[str, Any]:
        personas = sorted(self.model.personas.values(), key=lambda p: p.persona_id)
        unique = {p.persona_id: p for p in personas}
        return {
            "name": self.name,
            "version": self.version,
            "alias": self.alias,
            "run_id": self.run_id,
            "promoted_at": self.promoted_at,
            "promoted_by": self.promoted_by,
            "loaded_at": self.loaded_at,
            "fast_path": self.compiled is not None,
            "input": {
                "id_column": self.spec.id_column,
                "numeric": list(self.spec.numeric),
                "categorical": [c for c in self.spec.categorical if c not in self.spec.dates],
                "dates": list(self.spec.dates),
            },
            # model inputs the model computes from the raw input columns, as the schema wrote them
            "derived": self.model.derived.to_dict(),
            "personas": [
                {
                    "persona_id": p.persona_id,
                    "name": self.renames.get(p.persona_id, p.name),
                    "description": p.description,
                    **({"model_name": p.name} if p.persona_id in self.renames else {}),
                }
                for p in unique.values()
            ],
            "training_metrics": self.training_metrics,
        }

    def score(self, batch: Batch) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """persona_id, persona_name, confidence, distance — with the names people gave."""
        persona_id, persona_name, confidence, distance = self._score(batch)
        names = self._names_by_id
        if names is not None and len(persona_id):
            persona_name = names[np.asarray(persona_id, dtype=np.int64)]
        return persona_id, persona_name, confidence, distance

    def _score(self, batch: Batch) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The model's own answer — fast path when the model compiled."""
        compiled, spec = self.compiled, self.spec
        if compiled is not None:
            # The request follows the model's feature list; the compiled model takes its own column
            # order and only the categoricals it uses (none when categorical_weight was 0).
            numeric = batch.numeric
            if compiled.numeric != spec.numeric:
                numeric = numeric[:, [spec.numeric.index(name) for name in compiled.numeric]]
            positions = [spec.categorical.index(n) for n in compiled.categorical]
            categorical = [batch.categorical[j] for j in positions]
            levels = [batch.levels[j] for j in positions] if batch.levels else ()
            scores = compiled.score(numeric, categorical, levels)
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


def spec_for_model(
    schema: DatasetSchema | None, max_rows: int, extra_columns: str = "reject"
) -> Callable[[PersonaModel], InputSpec]:
    """The request contract of a model: its own feature columns under the schema it was trained
    with (logged with it); ``schema`` serves models logged before they carried one (None: such
    a model cannot be served). A model with derived features takes the raw columns of its schema
    (dates as text) and computes them."""

    def build(model: PersonaModel) -> InputSpec:
        if model.schema:
            trained = schema_from_dict(model.schema, "model schema")
        elif schema is not None:
            trained = schema
        else:
            raise ModelUnavailableError("the model carries no schema, so no request contract")
        if model.derived:
            return InputSpec.from_schema(trained, max_rows, extra_columns=extra_columns)
        categorical = list(model.categorical)
        numeric = [f for f in model.features if f not in categorical]
        return InputSpec.from_schema(trained, max_rows, (numeric, categorical), extra_columns)

    return build


# (version or None for the alias) -> (the version found, a builder of its ServedModel);
# raises NoVersionYet when nothing holds the alias, UpstreamUnavailableError when the source
# (MLflow) does not answer. ``follow_alias`` builds one from a ModelSource.
Resolver = Callable[[str | None], tuple[str, Callable[[], ServedModel]]]


class ModelStore:
    """Holds the served model; ``refresh`` is safe to call from any thread.

    With ``peers`` (the other Gunicorn workers), a version this worker learns of becomes every
    worker's target, and a target another worker published is loaded within
    ``follow_seconds``; a swap is recorded only once no request still uses the old model.
    """

    def __init__(
        self,
        loader: Resolver,
        poll_seconds: float,
        max_backoff_seconds: float = 60.0,
        peers: Peers | None = None,
        follow_seconds: float = 0.2,
        drain_seconds: float = 30.0,
        renames: Callable[[], Mapping[int, str]] | None = None,
    ) -> None:
        self._resolve = loader
        self._renames = renames
        self.poll_seconds = poll_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.peers = peers
        self.follow_seconds = follow_seconds
        self.drain_seconds = drain_seconds
        self.current: ServedModel | None = None
        self.last_error: str | None = None
        self.last_success_at: float | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._told_no_version = False

    @contextlib.contextmanager
    def use(self) -> Iterator[ServedModel | None]:
        """The model for one request, held until the request is answered."""
        while True:
            served = self.current
            if served is None:
                yield None
                return
            with served.in_flight:
                if self.current is served:  # else a swap came between the read and the count
                    yield served
                    return

    def refresh(self, version: str | None = None) -> bool:
        """Check the alias (or load ``version``); swap when it differs. True when MLflow answered."""
        with self._lock:
            asked_at = time.time()
            try:
                found, build = self._resolve(version)
                renames = None if self._renames is None else dict(self._renames())
                if self.current is None or self.current.version != found:
                    self._swap(build, asked_at if version is None else None, renames)
                else:
                    if self.peers is not None:
                        self.peers.record(found)
                    self._follow_renames(renames)
            except PersonaError as exc:
                self._failed(exc)
                return False
            self.last_error = None
            self.last_success_at = time.time()
            return True

    def _follow_renames(self, renames: dict[int, str] | None) -> None:
        """Names people gave the personas are served from the next check on, same version."""
        current = self.current
        if renames is None or current is None or renames == dict(current.renames):
            return
        self.current = dataclasses.replace(current, renames=renames, in_flight=InFlight())
        logger.info("serving %s v%s with persona names %s", current.name, current.version, renames)

    def _swap(
        self,
        build: Callable[[], ServedModel],
        asked_at: float | None,
        renames: dict[int, str] | None = None,
    ) -> None:
        """Serve a new version; ``asked_at``: when the alias named it (None: a peer did)."""
        started = time.perf_counter()
        fresh = build()
        if renames:
            fresh = dataclasses.replace(fresh, renames=renames)
        previous = self.current
        self.current = fresh
        logger.info(
            "serving %s v%s (was %s), loaded in %.2fs",
            fresh.name,
            fresh.version,
            f"v{previous.version}" if previous else "nothing",
            time.perf_counter() - started,
        )
        if previous is not None and not previous.in_flight.wait_idle(self.drain_seconds):
            logger.warning("requests on v%s still running after the swap", previous.version)
        if self.peers is not None:
            self.peers.record(fresh.version)
            if asked_at is not None:
                self.peers.publish(fresh.version, learned_at=asked_at)

    def _failed(self, exc: PersonaError) -> None:
        self.last_error = str(exc)
        if not isinstance(exc, NoVersionYet):
            logger.warning("model check failed: %s", exc)
            self._told_no_version = False
        elif not self._told_no_version:  # expected until the first training: say it once
            logger.info("%s; serving 503 until one is promoted", exc)
            self._told_no_version = True

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

    def _follow_peers(self) -> None:
        target = self.peers.target() if self.peers is not None else None
        if target is not None and (self.current is None or self.current.version != target):
            self.refresh(target)

    def _run(self) -> None:
        backoff = 1.0
        next_poll = time.monotonic() + (self.poll_seconds if self.current is not None else 0.0)
        while not self._stopped.is_set():
            now = time.monotonic()
            if now >= next_poll or self._wake.is_set():
                self._wake.clear()
                if self.refresh():
                    backoff, wait = 1.0, self.poll_seconds
                else:
                    wait = min(backoff, self.max_backoff_seconds, max(self.poll_seconds, 1.0))
                    backoff *= 2
                next_poll = time.monotonic() + wait
            else:
                self._follow_peers()
            tick = next_poll - time.monotonic()
            if self.peers is not None:
                tick = min(tick, self.follow_seconds)
            self._wake.wait(max(tick, 0.0))


def follow_alias(
    source: ModelSource, alias: str, spec_for: Callable[[PersonaModel], InputSpec]
) -> Resolver:
    """The store's resolver over a model source: the version holding ``alias`` (or the version
    asked for), and a builder that loads and compiles it off the request path."""

    def resolve(wanted: str | None = None) -> tuple[str, Callable[[], ServedModel]]:
        found = source.version_holding(alias) if wanted is None else wanted
        if found is None:
            raise NoVersionYet(
                f"no version of {source.name} holds @{alias} yet: train one (make train) or "
                f"promote one (make promote VERSION=N)"
            )
        return found, lambda: served_model(source.name, alias, source.load(found, alias), spec_for)

    return resolve


def served_now(
    source: ModelSource, alias: str, spec_for: Callable[[PersonaModel], InputSpec]
) -> ServedModel:
    """The version holding ``alias`` now, loaded, compiled and named as a worker serves it, for
    a process that scores once (the in-process batch job) rather than following the alias."""
    _, build = follow_alias(source, alias, spec_for)(None)
    served = build()
    renames = source.persona_names()
    return dataclasses.replace(served, renames=renames) if renames else served


def served_model(
    name: str, alias: str, loaded: LoadedVersion, spec_for: Callable[[PersonaModel], InputSpec]
) -> ServedModel:
    """A loaded version as requests use it: compiled for the fast path when it can be."""
    try:
        compiled = CompiledModel.from_persona_model(loaded.model)
    except ModelUnavailableError as exc:
        logger.warning("no fast path for %s v%s (%s)", name, loaded.version, exc)
        compiled = None
    return ServedModel(
        name=name,
        version=loaded.version,
        run_id=loaded.run_id,
        alias=alias,
        promoted_at=loaded.promoted_at,
        promoted_by=loaded.promoted_by,
        model=loaded.model,
        compiled=compiled,
        spec=spec_for(loaded.model),
        training_metrics={
            k.removeprefix("winner_"): v
            for k, v in loaded.run_metrics.items()
            if k.startswith("winner_")
        },
    )
