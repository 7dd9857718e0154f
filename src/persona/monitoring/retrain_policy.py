"""When a drifted month retrains: on the first one (the default), or only when k of the last n
checked months of the same model version drifted (hysteresis against one noisy month).

A month counts as drifted when the month-vs-reference check or the slow-drift check flagged it.
The months are those :func:`persona.monitoring.slow_drift.consecutive_months` keeps, this one
included; a new model version starts a new count, since its reference is new.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from persona.config_files import config_section
from persona.errors import ConfigurationError

POLICY_KEYS = ("drifted_months", "of_last_months")


@dataclass(frozen=True)
class RetrainPolicy:
    """The ``retrain_policy:`` section of drift.yaml: retrain when ``drifted_months`` of the
    last ``of_last_months`` checked months drifted (1 of 1 = the first drifted month)."""

    drifted_months: int = 1
    of_last_months: int = 1

    @property
    def immediate(self) -> bool:
        return self.drifted_months == 1


def retrain_policy_from_dict(raw: Any, source: str = "drift config") -> RetrainPolicy:
    """Parse the ``retrain_policy:`` section; errors name the key, the value and the rule."""
    raw = config_section(raw, "retrain_policy", POLICY_KEYS, source)
    values = {}
    for key in POLICY_KEYS:
        value = raw.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigurationError(
                f"{source}: retrain_policy.{key} must be an integer >= 1, got {value!r}"
            )
        values[key] = value
    if values["drifted_months"] > values["of_last_months"]:
        raise ConfigurationError(
            f"{source}: retrain_policy.drifted_months ({values['drifted_months']}) must be <= "
            f"retrain_policy.of_last_months ({values['of_last_months']})"
        )
    return RetrainPolicy(**values)


@dataclass(frozen=True)
class PolicyVerdict:
    """What the policy said about a drifted month, and the rule, as stored with the run."""

    retrain: bool
    drifted: int  # drifted months among the last ``window`` (this one included)
    window: int  # months looked at: of_last_months, or fewer when the history is shorter
    needed: int
    rule: str


def apply_policy(policy: RetrainPolicy, drifted: Sequence[bool]) -> PolicyVerdict:
    """``drifted``: each checked month's verdict, oldest first, this month last."""
    recent = list(drifted)[-policy.of_last_months :]
    count = sum(bool(d) for d in recent)
    retrain = bool(recent and recent[-1]) and count >= policy.drifted_months
    if policy.immediate:
        rule = "the policy retrains on the first drifted month"
    else:
        months = "month" if len(recent) == 1 else "months"
        rule = (
            f"{count} of the last {len(recent)} {months} drifted, "
            f"the policy needs {policy.drifted_months}"
        )
        if len(recent) < policy.of_last_months:
            rule += f" of {policy.of_last_months}"
    return PolicyVerdict(retrain, count, len(recent), policy.drifted_months, rule)
