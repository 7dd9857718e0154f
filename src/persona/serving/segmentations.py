"""Every segmentation's served model in one worker, found without a restart.

The default segmentation's ``ModelStore`` is built by the app factory as before. The others are
found through a ``SegmentationSource`` (the MLflow registry: registered models tagged with their
segmentation) every poll interval; each gets a ``ModelStore`` of its own that follows the
alias, so a new segmentation's first promotion is served within the poll interval.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

from persona.errors import PersonaError
from persona.segmentation import DEFAULT
from persona.serving.model_source import ModelSource
from persona.serving.model_store import ModelStore

logger = logging.getLogger(__name__)


class SegmentationSource(Protocol):
    """Which segmentations have a registered model, and a model source for each."""

    def segmentations(self) -> dict[str, str]:
        """Segmentation name -> its registered model's name (named segmentations only)."""
        ...

    def model_source(self, model_name: str) -> ModelSource: ...


class SegmentationStores:
    """The default store plus one store per segmentation the source names."""

    def __init__(
        self,
        default: ModelStore,
        source: SegmentationSource | None,
        build_store: Callable[[str, ModelSource], ModelStore],
        poll_seconds: float,
    ) -> None:
        self.default = default
        self.source = source
        self.build_store = build_store
        self.poll_seconds = poll_seconds
        self._named: dict[str, ModelStore] = {}
        self._models: dict[str, str] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self._start_stores = False

    def get(self, name: str) -> ModelStore | None:
        if name == DEFAULT:
            return self.default
        return self._named.get(name)

    def items(self) -> list[tuple[str, ModelStore]]:
        """(name, store) of every segmentation: the default first, then by name."""
        named = sorted(self._named.items())
        return [(DEFAULT, self.default), *named]

    def discover(self) -> bool:
        """Ask the source now; new segmentations get a store, removed ones are dropped."""
        if self.source is None:
            return True
        try:
            found = self.source.segmentations()
        except PersonaError as exc:
            self.last_error = str(exc)
            logger.warning("could not list segmentations: %s", exc)
            return False
        self.last_error = None
        with self._lock:
            for name in set(self._named) - set(found):
                logger.info("segmentation %s is gone from the registry; no longer served", name)
                self._named.pop(name).stop()
                self._models.pop(name, None)
            for name, model_name in sorted(found.items()):
                if self._models.get(name) == model_name:
                    continue
                if name in self._named:
                    self._named.pop(name).stop()
                store = self.build_store(name, self.source.model_source(model_name))
                store.refresh()
                if self._start_stores:
                    store.start()
                self._named[name] = store
                self._models[name] = model_name
                logger.info("serving segmentation %s (%s)", name, model_name)
        return True

    def refresh_all(self) -> bool:
        """Discover, then check every store's alias now (the admin reload)."""
        ok = self.discover()
        for name, store in self.items():
            if name != DEFAULT:
                ok = store.refresh() and ok
        return ok

    def start(self) -> None:
        """Poll the source in the background; the stores it makes poll their aliases."""
        self._start_stores = True
        for name, store in self.items():
            if name != DEFAULT:
                store.start()
        if self._thread is None and self.source is not None:
            self._thread = threading.Thread(target=self._run, name="segmentations", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        for name, store in self.items():
            if name != DEFAULT:
                store.stop()

    def _run(self) -> None:
        while not self._stopped.wait(self.poll_seconds):
            self.discover()
