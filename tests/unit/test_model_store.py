"""The alias-following logic of a scoring worker, with loaders that are plain functions."""

import time

import pytest

from persona.errors import UpstreamUnavailableError
from persona.serving.model_store import ModelStore


class Registry:
    """What the alias points at, and whether the registry answers."""

    def __init__(self):
        self.version, self.up, self.builds = "1", True, []

    def resolve(self):
        if not self.up:
            raise UpstreamUnavailableError("MLflow at http://registry did not answer")
        if self.version is None:
            return None
        version = self.version
        return version, lambda: self.build(version)

    def build(self, version):
        self.builds.append(version)
        return FakeServed(version)


class FakeServed:
    def __init__(self, version):
        self.version, self.name = version, "persona"


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
