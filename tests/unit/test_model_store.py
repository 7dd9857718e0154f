"""The alias-following logic of a scoring worker, with loaders that are plain functions."""

import os
import threading
import time

import pytest

from persona.errors import UpstreamUnavailableError
from persona.serving.model_store import InFlight, ModelStore, NoVersionYet


class Registry:
    """What the alias points at, and whether the registry answers."""

    def __init__(self):
        self.version, self.up, self.builds = "1", True, []

    def resolve(self, wanted=None):
        if not self.up:
            raise UpstreamUnavailableError("MLflow at http://registry did not answer")
        if self.version is None:
            raise NoVersionYet("no version holds the alias yet")
        version = self.version if wanted is None else wanted
        return version, lambda: self.build(version)

    def build(self, version):
        self.builds.append(version)
        return FakeServed(version)


class FakeServed:
    def __init__(self, version):
        self.version, self.name, self.in_flight = version, "persona", InFlight()


@pytest.fixture
def registry():
    return Registry()


def test_loads_once_and_swaps_only_when_the_alias_moves(registry):
    store = ModelStore(registry.resolve, poll_seconds=60)
    assert store.refresh() and store.current.version == "1"
    first = store.current
    assert store.refresh() and store.current is first and registry.builds == ["1"]
    registry.version = "2"
    assert store.refresh() and store.current.version == "2"
    assert first.version == "1"  # a request holding the old model keeps it intact


def test_registry_down_keeps_the_model_and_reports_staleness(registry):
    store = ModelStore(registry.resolve, poll_seconds=60)
    store.refresh()
    registry.up = False
    time.sleep(0.05)
    assert store.refresh() is False
    assert store.current.version == "1"
    assert "did not answer" in store.last_error
    assert store.staleness_seconds() >= 0.05
    registry.up = True
    assert store.refresh() and store.last_error is None


def test_nothing_in_production_is_a_named_reason(registry):
    registry.version = None
    store = ModelStore(registry.resolve, poll_seconds=60)
    assert store.refresh() is False
    assert store.current is None and "no version holds the alias" in store.last_error


def test_poller_thread_picks_up_a_promotion(registry):
    store = ModelStore(registry.resolve, poll_seconds=0.05)
    store.start()
    try:
        deadline = time.monotonic() + 5
        while store.current is None and time.monotonic() < deadline:
            time.sleep(0.01)
        registry.version = "3"
        while store.current.version != "3" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert store.current.version == "3"
    finally:
        store.stop()


def test_workers_follow_a_version_another_worker_learned_of(registry, tmp_path):
    """What /admin/reload relies on: one worker's new version becomes every worker's."""
    from persona.serving.peers import Peers

    first = ModelStore(registry.resolve, poll_seconds=3600, peers=Peers(tmp_path, pid=os.getpid()))
    second = ModelStore(
        registry.resolve,
        poll_seconds=3600,
        peers=Peers(tmp_path, pid=os.getppid()),
        follow_seconds=0.02,
    )
    assert first.refresh() and second.refresh()
    second.start()
    try:
        registry.version = "2"
        assert first.refresh() and first.current.version == "2"  # e.g. the reload's worker
        serving = first.peers.wait_for("2", workers=2, timeout_s=10)
        assert serving == {os.getpid(): "2", os.getppid(): "2"}
        assert second.current.version == "2"  # it never asked the alias: it followed
    finally:
        second.stop()


def test_a_swap_waits_for_requests_still_using_the_old_model(registry):
    store = ModelStore(registry.resolve, poll_seconds=3600, drain_seconds=10)
    assert store.refresh()
    held, swapped = threading.Event(), threading.Event()

    def request() -> None:
        with store.use() as served:
            held.set()
            assert not swapped.wait(0.3)  # the swap cannot finish while this request runs
            assert served.version == "1"

    worker = threading.Thread(target=request)
    worker.start()
    held.wait(5)
    registry.version = "2"
    assert store.refresh()
    swapped.set()
    worker.join()
    with store.use() as served:
        assert served.version == "2"


def test_no_model_yet_is_said_once_not_every_poll(registry, caplog):
    registry.version = None
    store = ModelStore(registry.resolve, poll_seconds=3600)
    with caplog.at_level("INFO", logger="persona.serving.model_store"):
        for _ in range(5):
            assert not store.refresh()
    said = [r for r in caplog.records if "no version holds the alias" in r.getMessage()]
    assert len(said) == 1 and said[0].levelname == "INFO"
    assert store.last_error == "no version holds the alias yet"
