"""The scoring workers of one Gunicorn server, agreeing on the version they serve.

Each worker polls the registry on its own, so without help a promotion reaches them at different
times, and ``/admin/reload`` would switch only the worker that answered it. Through a folder the
Gunicorn master creates (``PERSONA_WORKERS_DIR``), a worker that learns of a new version
publishes it as the *target*; every worker checks the target a few times a second (a ``stat``)
and loads it, then records the version it serves in a file of its own. ``/admin/reload`` waits
until every live worker records the target before it answers.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

logger = logging.getLogger(__name__)

WORKERS_DIR_ENV = "PERSONA_WORKERS_DIR"  # set by the Gunicorn config, not by users
TARGET = "target.json"
WORKER_PREFIX = "worker-"


class Peers:
    """This worker's view of the shared folder; every method is safe to call from any thread."""

    def __init__(self, folder: Path, pid: int | None = None) -> None:
        self.folder = folder
        self.pid = os.getpid() if pid is None else pid
        self._seen: tuple[float, int] | None = None  # (mtime, size) of the target last read
        self._target: str | None = None
        self._target_at = 0.0
        folder.mkdir(parents=True, exist_ok=True)

    def publish(self, version: str, learned_at: float | None = None) -> None:
        """Make ``version`` the target of every worker (atomic: write, then rename).

        ``learned_at`` is when this worker asked the registry: news older than the current
        target (a worker that was still booting while another moved on) is not published.
        """
        if self.target() == version:
            return
        if learned_at is not None and learned_at < self._target_at:
            return
        scratch = self.folder / f".{TARGET}.{self.pid}"
        at = time.time() if learned_at is None else learned_at
        scratch.write_text(json.dumps({"version": version, "by": self.pid, "at": at}))
        scratch.replace(self.folder / TARGET)
        logger.info("asked every worker to serve v%s", version)

    def target(self) -> str | None:
        """The version every worker should serve (None before any was published)."""
        try:
            stat = (self.folder / TARGET).stat()
        except FileNotFoundError:
            return None
        key = (stat.st_mtime, stat.st_size)
        if key != self._seen:
            try:
                published = json.loads((self.folder / TARGET).read_text())
                self._target, self._target_at = str(published["version"]), float(published["at"])
            except (OSError, ValueError, KeyError, TypeError):
                return self._target  # mid-replace: the previous answer stands
            self._seen = key
        return self._target

    def record(self, version: str) -> None:
        """Say which version this worker serves now."""
        path = self.folder / f"{WORKER_PREFIX}{self.pid}"
        scratch = self.folder / f".{WORKER_PREFIX}{self.pid}"
        scratch.write_text(version)
        scratch.replace(path)

    def forget(self, pid: int) -> None:
        """A worker has exited (called by the Gunicorn master)."""
        (self.folder / f"{WORKER_PREFIX}{pid}").unlink(missing_ok=True)

    def serving(self) -> dict[int, str]:
        """Live worker pid -> the version it serves."""
        out = {}
        for path in self.folder.glob(f"{WORKER_PREFIX}*"):
            pid = int(path.name.removeprefix(WORKER_PREFIX))
            if not _alive(pid):
                continue
            try:
                out[pid] = path.read_text()
            except FileNotFoundError:
                continue
        return out

    def wait_for(self, version: str, workers: int, timeout_s: float) -> dict[int, str]:
        """Wait until ``workers`` live workers all serve ``version`` (a worker still booting
        has not said anything yet); returns what each serves then."""
        deadline = time.monotonic() + timeout_s
        while True:
            serving = self.serving()
            done = len(serving) >= workers and all(v == version for v in serving.values())
            if done or time.monotonic() > deadline:
                return serving
            time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
