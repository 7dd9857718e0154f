"""Numbers as people read them in alerts, summaries and reports: one format for every message."""

from __future__ import annotations

import math


def percent(share: float | None, digits: int = 0) -> str:
    """A share in percent: 0.312 -> "31%" (``digits=1``: "31.2%"; a trailing ".0" is dropped,
    so 0.05 reads "5%"); "n/a" for nothing to show (None, NaN, infinity)."""
    if share is None or not math.isfinite(share):
        return "n/a"
    text = f"{share * 100:.{digits}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return f"{text}%"
