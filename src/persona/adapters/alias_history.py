"""The alias history and the moves a kill cut short: where a rollback goes, who promoted what.

Every alias move of ours (``mlflow_registry._move_alias``) appends an entry to a short history
kept as a registered-model tag (``persona.alias_history.<alias>``), so a rollback still knows
where to go after someone moved the alias in the MLflow UI, and the API can tell who promoted
what it serves. The move also leaves its entry on the version (``persona.last_move``) before
the alias moves, and a registration starts with ``decision=pending``: when MLflow (or the
process) dies between the steps, ``find_cut_moves`` tells from these tags what was cut, and
reconciliation completes the history or marks the version abandoned (``CutRegistrations`` in
``mlflow_models``). Everything here but ``append_history`` is pure.
"""

from __future__ import annotations

import getpass
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

logger = logging.getLogger(__name__)

# One registered-model tag per alias: a JSON list of the last HISTORY_LENGTH moves we made.
HISTORY_TAG_PREFIX = "persona.alias_history."
HISTORY_LENGTH = 20
BY_PERSONA = "persona"
BY_OUTSIDE = "outside persona (e.g. the MLflow UI)"
REGISTER, PROMOTE, ROLLBACK, RETIRE = "register", "promote", "rollback", "retire"
# A version's decision while its registration runs, and once reconciliation gave it up.
PENDING, ABANDONED = "pending", "abandoned"
# The move being made, on the version it moves to: the history entry plus alias and owner.
LAST_MOVE_TAG = "persona.last_move"
OWNER_TAG = "persona.owner"  # persona.monitoring.owners.Owner of the process writing it
# The states a cut move leaves, as reconciliation reports them.
CUT_PENDING = "registered, no alias moved"
CUT_BEFORE_ALIAS = "tagged for @{alias}, alias not moved"
CUT_BEFORE_HISTORY = "holds @{alias}, history entry missing"


def alias_history(model: Any, alias: str) -> list[dict[str, Any]]:
    """Our recorded moves of ``alias`` (oldest first) from a RegisteredModel; [] if none."""
    raw = (getattr(model, "tags", None) or {}).get(HISTORY_TAG_PREFIX + alias)
    return parse_history(raw)


def parse_history(raw: str | None) -> list[dict[str, Any]]:
    """The history tag's JSON, tolerant of hand edits: entries without a version are dropped."""
    if not raw:
        return []
    try:
        entries = json.loads(raw)
    except ValueError:
        logger.warning("ignoring an alias history that is not JSON: %.80s", raw)
        return []
    if not isinstance(entries, list):
        return []
    return [
        {**entry, "version": str(entry["version"])}
        for entry in entries
        if isinstance(entry, dict) and entry.get("version") not in (None, "")
    ]


def alias_stack(history: list[dict[str, Any]]) -> list[str]:
    """Versions that held the alias, oldest first, with rolled-back ones popped off.

    A promotion pushes (after the version it replaced, when that was set outside persona); a
    rollback pops back to its target, so rolling back twice never returns to a bad version.
    """
    stack: list[str] = []
    for entry in history:
        version, replaced = entry["version"], entry.get("previous")
        if entry.get("action") == RETIRE:  # the alias was taken off: it never goes back there
            if stack and stack[-1] == version:
                stack.pop()
            continue
        replaced = str(replaced) if replaced not in (None, "") else None
        if entry.get("action") == ROLLBACK:
            if version in stack:
                del stack[len(stack) - stack[::-1].index(version) :]
                continue
            if replaced is not None and stack and stack[-1] == replaced:
                stack.pop()
        elif replaced is not None and (not stack or stack[-1] != replaced):
            stack.append(replaced)
        if not stack or stack[-1] != version:
            stack.append(version)
    return stack


def rollback_target(
    history: list[dict[str, Any]], current: str, tagged_previous: str | None
) -> str | None:
    """The version a rollback restores, or None when nothing earlier is known.

    If the alias was moved outside persona (the history does not end with the current version),
    undo that move: back to the last version we put there. Otherwise pop our own last move; the
    version's previous_<alias> tag covers registries older than the history.
    """
    if history and history[-1].get("action") == RETIRE:
        stack = alias_stack(history)  # the alias was set again outside persona after a retire
        return stack[-1] if stack and stack[-1] != current else None
    if history and history[-1]["version"] != current:
        return history[-1]["version"]
    stack = alias_stack(history)
    if len(stack) >= 2:
        return stack[-2]
    if tagged_previous and str(tagged_previous) != current:
        return str(tagged_previous)
    return None


def promotion_info_from(model: Any, alias: str, version: str | int) -> dict[str, str | None]:
    """When and by whom the version holding ``alias`` got it, from a RegisteredModel."""
    history = alias_history(model, alias)
    last = history[-1] if history else {}
    if last.get("version") == str(version) and last.get("action") != RETIRE:
        return {"promoted_at": last.get("at"), "promoted_by": BY_PERSONA}
    return {"promoted_at": None, "promoted_by": BY_OUTSIDE}


def history_entry(version: str, replaced: str | None, action: str, reason: str) -> dict[str, Any]:
    return {
        "version": str(version),
        "previous": replaced,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "by": BY_PERSONA,
        "user": _user(),
        "action": action,
        "reason": reason[:200],
    }


def _user() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for the uid (some containers)
        return None


def append_history(client: Any, name: str, alias: str, entry: Mapping[str, Any]) -> bool:
    """Append ``entry`` to the alias's history tag; False when it is there already (the mover
    and reconciliation may both complete one move: it is recorded once)."""
    history = alias_history(client.get_registered_model(name), alias)
    if _recorded(history, entry):
        return False
    history = [*history, dict(entry)][-HISTORY_LENGTH:]
    client.set_registered_model_tag(
        name, HISTORY_TAG_PREFIX + alias, json.dumps(history, separators=(",", ":"))
    )
    return True


def _recorded(history: list[dict[str, Any]], entry: Mapping[str, Any]) -> bool:
    """The entry is in the history: the same version, time and action (a retire may follow a
    promotion of the same version within the second)."""
    key = ("version", "at", "action")
    wanted = tuple(str(entry.get(k)) for k in key)
    return any(tuple(str(old.get(k)) for k in key) == wanted for old in history)


# ---------------------------------------------------------------- moves a kill cut short


def last_move_tag(alias: str, entry: Mapping[str, Any], owner: str | None) -> str:
    """The ``persona.last_move`` tag of a move: its history entry, the alias and the mover."""
    return json.dumps({**entry, "alias": alias, "owner": owner}, separators=(",", ":"))


def parse_last_move(raw: str | None) -> dict[str, Any] | None:
    """The move a version's tag records; None when absent or not ours (hand edits)."""
    try:
        move = json.loads(raw) if raw else None
    except ValueError:
        return None
    if not isinstance(move, dict) or not move.get("alias") or not move.get("at"):
        return None
    return move


@dataclass(frozen=True)
class VersionState:
    """What the registry says of one version: the aliases it holds and its tags."""

    version: str
    aliases: tuple[str, ...]
    tags: Mapping[str, str]
    created: datetime | None = None


@dataclass(frozen=True)
class CutMove:
    """A registration or alias move that stopped between its steps.

    ``state`` is one of CUT_PENDING, CUT_BEFORE_ALIAS, CUT_BEFORE_HISTORY (alias filled in);
    ``entry`` the history entry to complete (CUT_BEFORE_HISTORY only); ``owner`` and
    ``heartbeat`` (ISO or a datetime) tell reconciliation whether the mover is gone.
    """

    version: str
    alias: str | None
    state: str
    owner: str | None
    heartbeat: datetime | None
    entry: dict[str, Any] | None = None
    action: str | None = None  # REGISTER, PROMOTE, ROLLBACK of the move (None: a registration)

    @property
    def completes_history(self) -> bool:
        return self.entry is not None


def find_cut_moves(
    model_tags: Mapping[str, str], versions: Iterable[VersionState]
) -> list[CutMove]:
    """The versions whose registration or last move of ours was cut short, by their tags.

    - ``decision=pending``: registered, but the run stopped before any alias moved.
    - ``persona.last_move`` names alias A and ``decision=A``, newer than A's last history
      entry and not in the history: the alias moved but the entry was not written
      (CUT_BEFORE_HISTORY) when the version holds A, else the move stopped before the alias
      (CUT_BEFORE_ALIAS). A move older than the history's last entry was superseded.
    """
    cut = []
    for state in versions:
        tags = state.tags
        if tags.get("decision") == PENDING:
            cut.append(
                CutMove(state.version, None, CUT_PENDING, tags.get(OWNER_TAG), state.created)
            )
            continue
        move = parse_last_move(tags.get(LAST_MOVE_TAG))
        if move is None or tags.get("decision") != move["alias"]:
            continue
        alias = move["alias"]
        entry = {k: v for k, v in move.items() if k not in ("alias", "owner")}
        entry["version"] = state.version
        history = parse_history(model_tags.get(HISTORY_TAG_PREFIX + alias))
        if _recorded(history, entry):
            continue
        if history and str(history[-1].get("at", "")) > str(move["at"]):
            continue  # a later move of ours was recorded: this one was superseded
        reached = alias in state.aliases
        cut.append(
            CutMove(
                state.version,
                alias,
                (CUT_BEFORE_HISTORY if reached else CUT_BEFORE_ALIAS).format(alias=alias),
                move.get("owner"),
                _parse_time(move["at"]),
                entry if reached else None,
                move.get("action"),
            )
        )
    return cut


def abandoned_reason(cut: CutMove, why: str) -> str:
    """The decision_reason of a version reconciliation gave up, for a person reading it."""
    if cut.alias is None:
        what = "its registration was cut before any alias moved"
    elif cut.action in (None, REGISTER):
        what = f"its move to @{cut.alias} was cut before the alias moved"
    else:  # a promote or rollback of a version that may have served before
        return (
            f"abandoned: its {cut.action} to @{cut.alias} was cut before the alias moved "
            f"({why}); @{cut.alias} stayed where it was; repeat the {cut.action} if it is "
            "still wanted"
        )
    return f"abandoned: {what} ({why}); it never served; a rerun registers a new version"


def _parse_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
