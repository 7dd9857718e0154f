"""The documented selection rule, as a pure function over this session's candidates."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

from persona.errors import PersonaError
from persona.model.params import HIGHER_IS_BETTER, SearchParams
from persona.model.search import FAMILY_ORDER, Candidate

logger = logging.getLogger(__name__)


def _usable(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


def stability_cut(min_stability: float, rows: float | None, reference_rows: int) -> float:
    """The stability a candidate needs when its bootstrap refits had ``rows`` rows.

    ``min_stability`` is calibrated for refits of ``reference_rows`` rows. A right clustering
    loses agreement between refits only at its borders, where customers follow centroids
    estimated from ``rows`` rows: the disagreement (1 - stability) shrinks like
    1 / sqrt(rows). So on smaller refits the allowed disagreement widens by
    sqrt(reference_rows / rows): 1 - cut = (1 - min_stability) * sqrt(reference_rows / rows).
    A wrong k (a segment split in two, two merged) stays unstable however many rows there
    are, which is what the cut is for. Never stricter than ``min_stability``; with ``rows``
    unknown (candidates from before the metric was recorded) it is ``min_stability``.
    """
    if not rows or rows >= reference_rows:
        return min_stability
    return max(0.0, 1.0 - (1.0 - min_stability) * math.sqrt(reference_rows / rows))


def select_winner(candidates: Sequence[Candidate], params: SearchParams) -> Candidate:
    """Best metric among stable candidates; near-ties go to fewer clusters, then simpler family.

    "Stable" is measured against a sample-size-aware cut (``stability_cut``): on a table of a
    few hundred rows every bootstrap refit is small and noisy, and an absolute cut would drop
    the best candidate for that alone. Only the candidates passed in are considered: earlier
    sessions never compete here (that comparison is the champion/challenger step on held-out
    data).
    """
    metric = params.selection_metric
    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
    scored = [c for c in candidates if _usable(c.metrics.get(metric))]
    if not scored:
        raise PersonaError("no candidate produced a usable clustering (all metrics are NaN)")
    stable = []
    for c in scored:
        cut = stability_cut(
            params.min_stability, c.metrics.get("stability_rows"), params.stability_reference_rows
        )
        if (c.metrics.get("stability") or 0.0) >= cut:
            stable.append(c)
        else:
            logger.debug(
                "%s: stability %s below the cut %.3f", c.name, c.metrics.get("stability"), cut
            )
    pool = stable or scored
    best = max(sign * c.metrics[metric] for c in pool)
    tied = [c for c in pool if sign * c.metrics[metric] >= best - params.tie_tolerance]
    return min(tied, key=lambda c: (c.k, FAMILY_ORDER.get(c.family, 99), c.name))
