"""Registrations and alias moves cut between their steps (MLflow or the run killed) are found
from the version's tags and repaired by reconciliation: a move that reached the alias gets its
history entry, a version no alias reached is marked abandoned, a live mover is left alone.

tests/chaos/test_mlflow_killed_during_registration.py does the same with a real server killed.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from persona.adapters import mlflow_registry as registry
from persona.adapters.alias_history import (
    ABANDONED,
    CUT_BEFORE_ALIAS,
    CUT_BEFORE_HISTORY,
    CUT_PENDING,
    HISTORY_TAG_PREFIX,
    LAST_MOVE_TAG,
    OWNER_TAG,
    PENDING,
    VersionState,
    find_cut_moves,
    history_entry,
    last_move_tag,
)
from persona.adapters.mlflow_models import CutRegistrations, MlflowModels
from persona.errors import UpstreamUnavailableError
from persona.flows.reconcile import Judge, reconcile
from persona.monitoring.owners import Owner

pytestmark = pytest.mark.unit

HERE = Owner("host-a", "boot-a", 1, 100)
GONE = "host-a:boot-a:42:7"  # a process of this host that no longer runs
ALIVE = "host-a:boot-a:43:8"


class Cut(Exception):
    """The registry went away at this call."""


class FakeRegistry:
    """The registry calls registration, moves and their repair make, in memory; ``fail_at``
    names the call that finds the server gone (once)."""

    def __init__(self) -> None:
        self.versions: dict[str, dict] = {}
        self.aliases: dict[str, str] = {}
        self.model_tags: dict[str, str] = {}
        self.fail_at: str | None = None

    def _call(self, name: str) -> None:
        if self.fail_at == name:
            self.fail_at = None
            raise Cut(name)

    def create_version(self, tags: dict[str, str]) -> str:
        version = str(len(self.versions) + 1)
        self.versions[version] = {"tags": dict(tags), "created": datetime.now(UTC)}
        return version

    def set_model_version_tag(self, name, version, key, value):
        self._call(f"set_model_version_tag:{key}")
        self.versions[str(version)]["tags"][key] = value

    def delete_model_version_tag(self, name, version, key):
        self.versions[str(version)]["tags"].pop(key, None)

    def set_registered_model_alias(self, name, alias, version):
        self._call("set_registered_model_alias")
        self.aliases[alias] = str(version)

    def get_registered_model(self, name):
        self._call("get_registered_model")
        return SimpleNamespace(tags=dict(self.model_tags), aliases=dict(self.aliases))

    def set_registered_model_tag(self, name, key, value):
        self.model_tags[key] = value

    def search_model_versions(self, filter_string):
        return [
            SimpleNamespace(
                version=v,
                aliases=[],  # as MLflow's search results: the registered model has them
                tags=dict(data["tags"]),
                creation_timestamp=int(data["created"].timestamp() * 1000),
            )
            for v, data in self.versions.items()
        ]

    def history(self, alias: str) -> list[dict]:
        return json.loads(self.model_tags.get(HISTORY_TAG_PREFIX + alias, "[]"))


def _register(client: FakeRegistry, owner: str, replaced: str | None = None) -> str:
    """What ``mlflow_registry.register`` does after the version is created: the promotion."""
    version = client.create_version({"decision": PENDING, OWNER_TAG: owner, "winner": "k5"})
    registry._move_alias(
        client,
        "m",
        "production",
        version,
        action="register",
        reason="better",
        replaced=replaced,
        previous=replaced,
        owner=owner,
    )
    return version


def _reconcile(client: FakeRegistry, alive: set[str] = frozenset()):
    models = MlflowModels("http://mlflow", None, "m")
    models._client = client
    probe = lambda owner: str(owner) in alive  # noqa: E731
    return reconcile(Judge(HERE, probe), None, [CutRegistrations(models)])


def test_a_move_cut_after_the_alias_gets_its_history_entry_as_the_mover_would_have():
    client = FakeRegistry()
    _register(client, GONE)
    client.fail_at = "get_registered_model"  # the history entry's read: MLflow is gone
    with pytest.raises(Cut):
        _register(client, GONE, replaced="1")
    assert client.aliases == {"production": "2"} and len(client.history("production")) == 1

    result = _reconcile(client)
    (closed,) = result.closed
    assert closed.kind == "model_version" and closed.run_id == "2"
    assert closed.state == CUT_BEFORE_HISTORY.format(alias="production")
    history = client.history("production")
    assert [e["version"] for e in history] == ["1", "2"]
    move = json.loads(client.versions["2"]["tags"][LAST_MOVE_TAG])
    assert history[-1] == {k: v for k, v in move.items() if k not in ("alias", "owner")}
    assert history[-1]["at"] == client.versions["2"]["tags"]["promoted_at"]
    assert client.versions["2"]["tags"]["decision"] == "production"
    assert _reconcile(client).closed == ()  # done once: nothing is cut any more


@pytest.mark.parametrize(
    "fail_at", ["set_model_version_tag:decision_reason", "set_registered_model_alias"]
)
def test_a_move_cut_before_the_alias_leaves_the_alias_and_marks_the_version_abandoned(fail_at):
    client = FakeRegistry()
    _register(client, GONE)
    client.fail_at = fail_at
    with pytest.raises(Cut):
        _register(client, GONE, replaced="1")

    (closed,) = _reconcile(client).closed
    assert closed.state == CUT_BEFORE_ALIAS.format(alias="production")
    tags = client.versions["2"]["tags"]
    assert tags["decision"] == ABANDONED and "abandoned_at" in tags
    assert "its move to @production was cut before the alias moved" in tags["decision_reason"]
    assert f"owner process 42 on {HERE.host} is gone" in tags["decision_reason"]
    assert client.aliases == {"production": "1"}
    assert [e["version"] for e in client.history("production")] == ["1"]


def test_a_rollback_cut_before_the_alias_does_not_say_the_old_version_never_served():
    client = FakeRegistry()
    _register(client, GONE)
    _register(client, GONE, replaced="1")
    client.fail_at = "set_registered_model_alias"
    with pytest.raises(Cut):  # make rollback to v1, cut as it moves the alias
        registry._move_alias(
            client,
            "m",
            "production",
            "1",
            action="rollback",
            reason="rollback from v2",
            replaced="2",
            previous="2",
            owner=GONE,
        )

    (closed,) = _reconcile(client).closed
    reason = client.versions["1"]["tags"]["decision_reason"]
    assert closed.run_id == "1" and client.aliases == {"production": "2"}
    assert reason.startswith("abandoned: its rollback to @production was cut before the alias")
    assert "@production stayed where it was; repeat the rollback" in reason
    assert "never served" not in reason


def test_a_version_registered_but_never_moved_is_abandoned_once_its_owner_is_gone():
    client = FakeRegistry()
    version = client.create_version({"decision": PENDING, OWNER_TAG: ALIVE})
    assert _reconcile(client, alive={ALIVE}).closed == ()  # its run is still at work
    assert client.versions[version]["tags"]["decision"] == PENDING

    (closed,) = _reconcile(client).closed
    assert closed.state == CUT_PENDING and closed.label == "m v1"
    reason = client.versions[version]["tags"]["decision_reason"]
    assert reason.startswith("abandoned: its registration was cut before any alias moved")
    assert "it never served" in reason
    assert _reconcile(client).closed == ()


def test_a_live_mover_is_left_alone_and_completes_its_own_entry_once():
    client = FakeRegistry()
    _register(client, ALIVE)
    client.fail_at = "get_registered_model"
    with pytest.raises(Cut):
        _register(client, ALIVE, replaced="1")
    result = _reconcile(client, alive={ALIVE})
    assert result.closed == () and result.still_open == 1
    # the repair and the mover both write the entry (a race): it is recorded once
    move = json.loads(client.versions["2"]["tags"][LAST_MOVE_TAG])
    entry = {k: v for k, v in move.items() if k not in ("alias", "owner")}
    for _ in range(2):
        registry.append_history(client, "m", "production", entry)
    assert [e["version"] for e in client.history("production")] == ["1", "2"]


def _state(version, aliases=(), **tags) -> VersionState:
    return VersionState(version, tuple(aliases), tags)


def _moved(version: str, alias: str, at: str, action: str = "register") -> dict:
    entry = {**history_entry(version, None, action, "r"), "at": at}
    return {LAST_MOVE_TAG: last_move_tag(alias, entry, GONE), "decision": alias}


def test_moves_recorded_superseded_or_not_ours_are_not_cut():
    at1, at2 = "2026-03-01T10:00:00+00:00", "2026-03-01T11:00:00+00:00"
    history = [{"version": "1", "at": at1, "action": "register"}]
    tags = {HISTORY_TAG_PREFIX + "production": json.dumps(history)}
    versions = [
        _state("1", ["production"], **_moved("1", "production", at1)),  # recorded
        _state("2", ["challenger"], decision="challenger"),  # an older release: no move tag
        _state("3", (), **{**_moved("3", "production", at2), "decision": ABANDONED}),
        _state("4", (), **_moved("4", "production", "2026-03-01T09:00:00+00:00")),  # superseded
        _state("5", (), **{LAST_MOVE_TAG: "not json", "decision": "production"}),
    ]
    assert find_cut_moves(tags, versions) == []
    # the same move with no history at all is cut (the first registration of a model)
    (cut,) = find_cut_moves({}, [_state("1", ["production"], **_moved("1", "production", at1))])
    assert cut.completes_history and cut.entry["version"] == "1"
    assert cut.heartbeat == datetime.fromisoformat(at1)
    assert cut.owner == GONE and cut.heartbeat < datetime.now(UTC) + timedelta(seconds=1)


def test_a_server_down_is_waited_for_once_per_reconciliation(monkeypatch):
    """The experiment's runs and the registry's cut moves live on one server: when it does
    not answer, reconciliation at a run's start waits for it once and says so once."""
    probes = []

    def down(uri, timeout_s):
        probes.append(uri)
        raise UpstreamUnavailableError(f"MLflow at {uri} did not answer (ConnectionError)")

    monkeypatch.setattr(registry, "connect", down)
    models = MlflowModels("http://mlflow", "experiment", "m")
    result = reconcile(Judge(HERE, lambda owner: None), None, [models, CutRegistrations(models)])
    assert probes == ["http://mlflow"]
    assert result.unreachable == ("MLflow at http://mlflow did not answer (ConnectionError)",)
