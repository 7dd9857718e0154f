"""The month of a snapshot, ``YYYY-MM``: its one pattern, its check and its arithmetic.

Every place that accepts a month (the data contract, the generator, the demo's MONTHS, the
monthly monitor schedule) calls this module, so "what a month looks like" is written once.
"""

from __future__ import annotations

import re
from datetime import date

from persona.errors import ConfigurationError

# Anchored, so pandera's ``str_matches`` (a ``re.match``) checks the whole value too.
MONTH_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"
_MONTH = re.compile(MONTH_PATTERN)


def is_month(text: object) -> bool:
    """Whether ``text`` is a string of the form YYYY-MM with a month 01..12, and nothing else."""
    return isinstance(text, str) and _MONTH.fullmatch(text) is not None


def check_month(month: object, name: str = "month") -> str:
    """``month`` itself when it is a YYYY-MM month; otherwise a ConfigurationError naming it."""
    if not is_month(month):
        raise ConfigurationError(f"{name} must look like YYYY-MM, got {month!r}")
    return month  # type: ignore[return-value]  # is_month proved it is a str


def next_month(month: str) -> str:
    """The month after a YYYY-MM month (December rolls over into January)."""
    year, number = int(month[:4]), int(month[5:])
    return f"{year + number // 12:04d}-{number % 12 + 1:02d}"


def previous_month(today: date) -> str:
    """The month that has just ended: what a schedule on the 2nd of a month should check."""
    year, month = (today.year, today.month - 1) if today.month > 1 else (today.year - 1, 12)
    return f"{year:04d}-{month:02d}"
