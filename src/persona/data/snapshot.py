"""Which month a file's rows belong to: the file's month column, or one month for all of them.

A customer export is often one snapshot with no month column. Validation, ingest and training
key rows by (id, month), so such a file is labelled with the month a person gives, else the
current month; the label and where it came from are reported, never silently assumed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import pandas as pd

from persona.data.months import check_month

CURRENT_MONTH = "default (current month)"


@dataclass(frozen=True)
class MonthLabel:
    """The months of a frame and where they came from (an option, the default, a column)."""

    months: tuple[str, ...]
    source: str
    labelled: bool  # True: every row got ``months[0]``; False: the file's own column

    def to_dict(self) -> dict[str, Any]:
        if self.labelled:
            return {"month": self.months[0], "month_from": self.source}
        return {"months": list(self.months), "month_from": self.source}


def current_month(today: date) -> str:
    """``today``'s month as YYYY-MM (the entry point passes the date: this stays pure)."""
    return f"{today.year:04d}-{today.month:02d}"


def label_months(
    frame: pd.DataFrame,
    month_column: str,
    month: str | None,
    today: date,
    given_as: str = "--month",
) -> tuple[pd.DataFrame, MonthLabel]:
    """The frame with its month column, and where the months came from.

    A given ``month`` labels every row (also when the file has the column: that is what
    ``--month`` has always done); otherwise a file with the column keeps it, and a file without
    it is one snapshot of the current month.
    """
    if month:
        label = MonthLabel((check_month(month, given_as),), given_as, True)
    elif month_column in frame.columns:
        months = tuple(sorted(frame[month_column].dropna().astype(str).unique()))
        return frame, MonthLabel(months, f"column {month_column!r}", False)
    else:
        label = MonthLabel((current_month(today),), CURRENT_MONTH, True)
    labelled = frame.copy()
    labelled[month_column] = label.months[0]
    return labelled, label
