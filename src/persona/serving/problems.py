"""What the scoring API says about a request it cannot take as sent.

Two kinds of problem: a request-level one (malformed body, missing column, too many rows) is a
:class:`PayloadError` with details; a row-level one (a value that breaks a rule of the data
contract) is a :class:`RowProblem`, which the API either turns into a 400 (``on_invalid=reject``)
or reports on the rows it concerns (``on_invalid=flag``). Both say the field, the rule, the rows,
what was expected and what was got.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import numpy as np

from persona.errors import InvalidInputError

MAX_ROWS_REPORTED = 5  # row indexes listed per detail; "count" always has the total
MAX_DETAILS_IN_MESSAGE = 5
# When several kinds of row problem occur, the error's kind is the first of these present.
ROW_KINDS = ("invalid_type", "null_not_allowed", "invalid_value", "unscorable_value")
_TITLES = {
    "invalid_type": "invalid values",
    "null_not_allowed": "values may not be null",
    "invalid_value": "values break the data contract",
    "unscorable_value": "values the model cannot score",
}


class PayloadError(InvalidInputError):
    """A request the service refuses; ``to_dict`` is the JSON error body, ``status`` its code."""

    def __init__(
        self,
        kind: str,
        message: str,
        details: Sequence[dict[str, Any]] = (),
        status: int = 400,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.details = list(details)
        self.status = status

    def to_dict(self) -> dict[str, Any]:
        """The error body clients get: one kind to branch on, details to fix the batch."""
        return {"error": {"kind": self.kind, "message": self.message, "details": self.details}}


def detail(
    kind: str,
    field: str | None,
    rows: Iterable[int],
    count: int,
    expected: Any,
    got: Any,
    **extra: Any,
) -> dict[str, Any]:
    """One finding; ``rows`` is cut to the first few, ``count`` keeps the total.

    ``expected`` and ``got`` are always text, as the OpenAPI document declares them.
    """
    first = [int(i) for i in islice(rows, MAX_ROWS_REPORTED)]
    return {
        "kind": kind,
        "field": field,
        "rows": first,
        "count": int(count),
        "expected": str(expected),
        "got": str(got),
        **extra,
    }


def _describe(found: dict[str, Any]) -> str:
    where = f"{found['field']!r}" if found["field"] is not None else "batch"
    rows = ""
    if found["rows"]:
        more = ", ..." if found["count"] > len(found["rows"]) else ""
        noun = "row" if found["count"] == 1 else "rows"
        rows = f" ({found['count']} {noun}: {', '.join(map(str, found['rows']))}{more})"
    return f"{where}{rows}: expected {found['expected']}, got {found['got']}"


def fail(
    kind: str, title: str, details: Sequence[dict[str, Any]], status: int = 400
) -> PayloadError:
    shown = "; ".join(_describe(d) for d in details[:MAX_DETAILS_IN_MESSAGE])
    if len(details) > MAX_DETAILS_IN_MESSAGE:
        shown += f"; and {len(details) - MAX_DETAILS_IN_MESSAGE} more"
    return PayloadError(kind, f"{title}: {shown}" if shown else title, details, status)


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def example(value: Any) -> Any:
    """A JSON-safe, short sample of an offending value (containers are named, not echoed)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str):
        return value if len(value) <= 40 else value[:37] + "..."
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return json_type(value)


@dataclass(frozen=True, eq=False)
class RowProblem:
    """Some rows of one field break one rule; ``rows`` holds every one of them (0-based)."""

    kind: str  # one of ROW_KINDS
    field: str
    rows: np.ndarray
    expected: str
    got: str
    rule: str
    examples: list[Any] = field(default_factory=list)

    def detail(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"rule": self.rule}
        if self.examples:
            extra["example"] = example(self.examples[0])
        return detail(
            self.kind, self.field, self.rows, len(self.rows), self.expected, self.got, **extra
        )

    def for_row(self) -> dict[str, Any]:
        """How a flagged row names this problem."""
        return {"field": self.field, "rule": self.rule, "kind": self.kind}


def problem(
    kind: str, field: str, rows: Iterable[int], expected: str, got: str, rule: str, values: Any = ()
) -> RowProblem:
    """A RowProblem with a sample of the offending values (``values`` indexed by row)."""
    rows = np.asarray(list(rows) if not isinstance(rows, np.ndarray) else rows, dtype=np.intp)
    samples = [values[int(i)] for i in rows[:1]] if len(values) else []
    return RowProblem(kind, field, rows, expected, got, rule, samples)


def rejection(problems: Sequence[RowProblem]) -> PayloadError:
    """The 400 of ``on_invalid=reject``: one detail per field and rule, as a table validation."""
    present = {p.kind for p in problems}
    kind = next(k for k in ROW_KINDS if k in present)
    return fail(kind, _TITLES[kind], [p.detail() for p in problems])


def rows_with_problems(problems: Sequence[RowProblem], n: int) -> list[list[dict[str, Any]]]:
    """For ``on_invalid=flag``: per row, the problems it has (empty for a valid row)."""
    per_row: list[list[dict[str, Any]]] = [[] for _ in range(n)]
    for found in problems:
        named = found.for_row()
        for i in found.rows.tolist():
            per_row[i].append(named)
    return per_row
