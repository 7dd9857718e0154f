"""Clients posting one batch in a loop to a real API, for tests that change things under load
(a promotion, a reload, a database restart) and then ask what every client got back."""

from __future__ import annotations

import threading
import time

import requests


class Load:
    """``clients`` threads posting the same JSON batch until the block ends.

    Each complete answer (200, one prediction per row sent) is kept as (sent, received,
    model version); anything else is a failure, kept as text.
    """

    def __init__(
        self, url: str, rows: list[dict], headers: dict[str, str], clients: int = 4
    ) -> None:
        self.url, self.rows, self.headers = url, rows, headers
        self.seen: list[tuple[float, float, str]] = []
        self.failures: list[str] = []
        self._lock, self._stop = threading.Lock(), threading.Event()
        self._threads = [threading.Thread(target=self._post) for _ in range(clients)]

    def _post(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            sent = time.monotonic()
            try:
                response = session.post(self.url, json=self.rows, headers=self.headers, timeout=30)
            except requests.RequestException as exc:
                with self._lock:
                    self.failures.append(repr(exc))
                continue
            with self._lock:
                if response.ok and response.json()["n_rows"] == len(self.rows):
                    version = response.json()["model"]["version"]
                    self.seen.append((sent, time.monotonic(), version))
                else:
                    self.failures.append(f"{response.status_code} {response.text[:200]}")

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def answers_after(self, moment: float) -> int:
        """Complete answers to requests sent after ``moment`` (time.monotonic())."""
        with self._lock:
            return sum(1 for sent, _, _ in self.seen if sent > moment)

    def wait_for_answers_after(self, moment: float, count: int, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while self.answers_after(moment) < count and time.monotonic() < deadline:
            time.sleep(0.05)

    @property
    def answered_rows(self) -> int:
        with self._lock:
            return len(self.seen) * len(self.rows)

    def mixed_window(self, since: float, old: str, new: str) -> float:
        """Seconds between the first answer from ``new`` and the last from ``old`` (received)."""
        first_new = min(r for s, r, v in self.seen if v == new and s > since)
        last_old = max((r for s, r, v in self.seen if v == old and s > since), default=first_new)
        return max(0.0, last_old - first_new)
