"""Alias history: where a rollback goes, who promoted the served version, the bounded tag.

The pure parts of the registry's promotion bookkeeping; tests/integration/test_registry.py
runs the same paths on a real MLflow server.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from mlflow.exceptions import MlflowException

from persona.adapters import mlflow_registry as registry
from persona.adapters.mlflow_registry import (
    BY_OUTSIDE,
    BY_PERSONA,
    HISTORY_LENGTH,
    HISTORY_TAG_PREFIX,
    alias_stack,
    parse_history,
    promotion_info,
    promotion_info_from,
    rollback_target,
)


def moves(*steps: tuple[str, str | None, str]) -> list[dict]:
    """History entries from (version, replaced, action) triples."""
    return [
        {"version": v, "previous": p, "action": a, "at": f"2026-01-0{i + 1}T00:00:00+00:00"}
        for i, (v, p, a) in enumerate(steps)
    ]


def test_promotions_push_and_rollbacks_pop():
    history = moves(("1", None, "register"), ("2", "1", "register"), ("3", "2", "promote"))
    assert alias_stack(history) == ["1", "2", "3"]
    assert rollback_target(history, "3", "2") == "2"
    # after a rollback to 2, the next rollback goes to 1, never back to the rolled-back 3
    history += moves(("2", "3", "rollback"))
    assert alias_stack(history) == ["1", "2"]
    assert rollback_target(history, "2", None) == "1"
    history += moves(("1", "2", "rollback"))
    assert alias_stack(history) == ["1"] and rollback_target(history, "1", None) is None


def test_alias_moved_outside_persona_rolls_back_to_our_last_move():
    history = moves(("1", None, "register"), ("2", "1", "promote"))
    assert rollback_target(history, "7", None) == "2"  # a version we never recorded
    assert rollback_target(history, "1", None) == "2"  # one we recorded earlier
    # a later promotion of ours records what it replaced, so the outside version is kept
    history += moves(("4", "7", "promote"))
    assert alias_stack(history) == ["1", "2", "7", "4"]
    assert rollback_target(history, "4", None) == "7"


def test_without_history_the_previous_tag_decides_or_nothing_is_known():
    assert rollback_target([], "3", "2") == "2"
    assert rollback_target([], "3", None) is None
    assert rollback_target([], "3", "3") is None
    # a history started after older versions: our one move, then the legacy tag
    assert rollback_target(moves(("3", "2", "register")), "3", "2") == "2"


def test_rollback_to_a_version_not_in_the_history_replaces_the_current_one():
    history = moves(("1", None, "register"), ("3", "1", "promote"), ("5", "3", "rollback"))
    assert alias_stack(history) == ["1", "5"]


def test_parse_history_tolerates_hand_edits():
    assert parse_history(None) == [] and parse_history("") == []
    assert parse_history("not json") == [] and parse_history('{"version": 1}') == []
    parsed = parse_history(json.dumps([{"version": 2}, {"at": "x"}, "junk", {"version": ""}]))
    assert parsed == [{"version": "2"}]


def _model(alias: str, history: list[dict] | None) -> SimpleNamespace:
    tags = {} if history is None else {HISTORY_TAG_PREFIX + alias: json.dumps(history)}
    return SimpleNamespace(tags=tags)


@pytest.mark.parametrize("alias", ["production", "staging"])
def test_promotion_info_says_who_moved_the_alias(alias):
    history = moves(("1", None, "register"), ("2", "1", "promote"))
    model = _model(alias, history)
    assert promotion_info_from(model, alias, "2") == {
        "promoted_at": history[-1]["at"],
        "promoted_by": BY_PERSONA,
    }
    assert promotion_info_from(model, alias, 1) == {"promoted_at": None, "promoted_by": BY_OUTSIDE}
    assert promotion_info_from(_model(alias, None), alias, "2")["promoted_by"] == BY_OUTSIDE
    other = "challenger" if alias != "challenger" else "production"
    assert promotion_info_from(model, other, "2")["promoted_by"] == BY_OUTSIDE


def test_promotion_info_never_raises_on_registry_errors():
    class Failing:
        def get_registered_model(self, name):
            raise MlflowException("RESOURCE_DOES_NOT_EXIST: gone")

    assert promotion_info(Failing(), "m", "production", "1") == {
        "promoted_at": None,
        "promoted_by": None,
    }


class FakeClient:
    """Just the registry calls _move_alias makes, in memory."""

    def __init__(self) -> None:
        self.version_tags: dict[str, dict[str, str]] = {}
        self.aliases: dict[str, str] = {}
        self.model_tags: dict[str, str] = {}

    def set_model_version_tag(self, name, version, key, value):
        self.version_tags.setdefault(str(version), {})[key] = value

    def delete_model_version_tag(self, name, version, key):
        self.version_tags.get(str(version), {}).pop(key, None)

    def set_registered_model_alias(self, name, alias, version):
        self.aliases[alias] = str(version)

    def get_registered_model(self, name):
        return SimpleNamespace(tags=dict(self.model_tags), aliases=dict(self.aliases))

    def set_registered_model_tag(self, name, key, value):
        self.model_tags[key] = value


def test_every_move_is_tagged_and_the_history_stays_bounded():
    client = FakeClient()
    for i in range(1, HISTORY_LENGTH + 6):
        registry._move_alias(
            client,
            "m",
            "staging",
            str(i),
            action="promote",
            reason="x" * 500,
            replaced=str(i - 1) if i > 1 else None,
            previous=str(i - 1) if i > 1 else None,
        )
    stored = json.loads(client.model_tags[HISTORY_TAG_PREFIX + "staging"])
    assert len(stored) == HISTORY_LENGTH and stored[-1]["version"] == str(HISTORY_LENGTH + 5)
    assert len(client.model_tags[HISTORY_TAG_PREFIX + "staging"]) < 10_000
    last = client.version_tags[str(HISTORY_LENGTH + 5)]
    assert last["decision"] == "staging" and last["previous_staging"] == str(HISTORY_LENGTH + 4)
    assert last["promoted_at"] == stored[-1]["at"] and stored[-1]["by"] == BY_PERSONA
    assert client.aliases == {"staging": str(HISTORY_LENGTH + 5)}


def test_a_challenger_is_recorded_but_not_promoted_and_stale_previous_tags_go():
    client = FakeClient()
    client.version_tags["4"] = {"previous_production": "1"}
    registry._move_alias(
        client, "m", "production", "4", action="promote", reason="r", replaced=None, previous=None
    )
    assert "previous_production" not in client.version_tags["4"]
    registry._move_alias(
        client,
        "m",
        "challenger",
        "5",
        action="register",
        reason="worse",
        replaced=None,
        previous=None,
        promotion=False,
    )
    assert "promoted_at" not in client.version_tags["5"]
    assert client.version_tags["5"]["decision"] == "challenger"
    assert HISTORY_TAG_PREFIX + "challenger" in client.model_tags


def test_a_retired_version_is_recorded_and_never_rolled_back_to():
    client = FakeClient()
    client.delete_registered_model_alias = lambda name, alias: client.aliases.pop(alias)
    for version, replaced in (("1", None), ("2", "1")):
        registry._move_alias(
            client,
            "m",
            "live",
            version,
            action="promote",
            reason="r",
            replaced=replaced,
            previous=replaced,
        )
    registry.retire(client, "m", "live", "2", "its files are gone")
    history = json.loads(client.model_tags[HISTORY_TAG_PREFIX + "live"])
    assert history[-1]["action"] == "retire" and "live" not in client.aliases
    assert client.version_tags["2"]["retired_reason"] == "its files are gone"
    assert alias_stack(history) == ["1"]
    # someone sets the alias again in the MLflow UI: a rollback goes to 1, never to retired 2
    assert rollback_target(parse_history(json.dumps(history)), "5", None) == "1"
    model = SimpleNamespace(tags=dict(client.model_tags))
    assert promotion_info_from(model, "live", "2")["promoted_by"] == BY_OUTSIDE
