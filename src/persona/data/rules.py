"""The row-level rules of a dataset schema, as vectorised checks on plain arrays.

One definition serves both places that enforce the data contract: validation of a table before
it trains (through pandera, ``persona.data.validation``) and the scoring API on every request
(``persona.serving.contract``). A rule's ``name`` is what both report, so a person sees the same
words whether a file or a request broke it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

from persona.data.derived import date_format_text, parse_dates
from persona.data.schema import DatasetSchema

MAX_TEXT_CHARS = 256  # ids and free-text levels: longer is an error, not something to echo


@dataclass(frozen=True)
class Rule:
    """One check of a column; ``broken`` marks the values that break it (missing never does)."""

    name: str
    expected: str  # the rule in words, for error details

    def broken(self, values: np.ndarray | list) -> np.ndarray:
        """One flag per value; ``values`` is an array, or a list (ids as sent)."""
        raise NotImplementedError


@dataclass(frozen=True)
class AtLeast(Rule):
    bound: float = 0.0

    def broken(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values, dtype=np.float64) < self.bound  # NaN compares False


@dataclass(frozen=True)
class AtMost(Rule):
    bound: float = 0.0

    def broken(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values, dtype=np.float64) > self.bound


@dataclass(frozen=True)
class IntegerValued(Rule):
    def broken(self, values: np.ndarray) -> np.ndarray:
        array = np.asarray(values, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            return np.isfinite(array) & (array != np.trunc(array))


@dataclass(frozen=True)
class OneOf(Rule):
    levels: frozenset[str] = frozenset()

    def broken(self, values: np.ndarray) -> np.ndarray:
        levels = self.levels
        present = [v for v in set(_as_list(values)) if not _missing(v)]
        if all(v in levels for v in present):  # the common case: one pass over a set
            return np.zeros(len(values), dtype=bool)
        return np.fromiter(
            (not _missing(v) and v not in levels for v in values), dtype=bool, count=len(values)
        )


@dataclass(frozen=True)
class NonEmpty(Rule):
    def broken(self, values: np.ndarray) -> np.ndarray:
        if "" not in _as_list(values):  # the common case, at C speed
            return np.zeros(len(values), dtype=bool)
        return np.fromiter((v == "" for v in values), dtype=bool, count=len(values))


@dataclass(frozen=True)
class MaxLength(Rule):
    limit: int = MAX_TEXT_CHARS

    def broken(self, values: np.ndarray) -> np.ndarray:
        limit = self.limit
        texts = _as_list(values)
        if set(map(type, texts)) != {str}:
            texts = [v for v in texts if type(v) is str]
        if max(map(len, texts), default=0) <= limit:  # the common case, at C speed
            return np.zeros(len(values), dtype=bool)
        return np.fromiter(
            (isinstance(v, str) and len(v) > limit for v in values), dtype=bool, count=len(values)
        )


@dataclass(frozen=True)
class ValidDate(Rule):
    """Text in the date column's format (or ISO YYYY-MM-DD), or a datetime value."""

    format: str | None = None

    def broken(self, values: np.ndarray | list) -> np.ndarray:
        return parse_dates(values, self.format)[1]


def _as_list(values: np.ndarray | list) -> list:
    """Python values, for the set and ``in`` checks that run at C speed on a list."""
    return values if isinstance(values, list) else values.tolist()


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def numeric_rules(schema: DatasetSchema, name: str) -> tuple[Rule, ...]:
    spec = schema.numeric[name]
    rules: list[Rule] = []
    if spec.min is not None:
        rules.append(AtLeast(f">= {spec.min}", f"a number >= {spec.min}", float(spec.min)))
    if spec.max is not None:
        rules.append(AtMost(f"<= {spec.max}", f"a number <= {spec.max}", float(spec.max)))
    if spec.integer:
        rules.append(IntegerValued("integer-valued", "a whole number"))
    return tuple(rules)


def level_rule(levels: Collection[str]) -> OneOf:
    shown = list(levels)
    return OneOf(f"one of {shown}", f"one of {shown}", frozenset(shown))


def categorical_rules(schema: DatasetSchema, name: str) -> tuple[Rule, ...]:
    levels = schema.categorical[name]
    text = MaxLength(
        f"at most {MAX_TEXT_CHARS} characters", f"text of at most {MAX_TEXT_CHARS} characters"
    )
    return (level_rule(levels),) if levels else (text,)


def date_rules(schema: DatasetSchema, name: str) -> tuple[Rule, ...]:
    fmt = schema.date_columns[name].format
    shown = date_format_text(fmt)
    return (ValidDate(f"date {shown}", f"a date as {shown}", fmt),)


def id_rules() -> tuple[Rule, ...]:
    return (
        NonEmpty("non-empty", "a non-empty id"),
        MaxLength(
            f"at most {MAX_TEXT_CHARS} characters", f"an id of at most {MAX_TEXT_CHARS} characters"
        ),
    )
