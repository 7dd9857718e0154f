"""The documented selection rule, as a pure function over this session's candidates."""

from __future__ import annotations

import math
from collections.abc import Sequence

from persona.errors import PersonaError
from persona.model.params import HIGHER_IS_BETTER, SearchParams
from persona.model.search import FAMILY_ORDER, Candidate


def _usable(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


def select_winner(candidates: Sequence[Candidate], params: SearchParams) -> Candidate:
    """Best metric among stable candidates; near-ties go to fewer clusters, then simpler family.

    Only the candidates passed in are considered: earlier sessions never compete here
    (that comparison is the champion/challenger step on held-out data).
    """
    metric = params.selection_metric
    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
    scored = [c for c in candidates if _usable(c.metrics.get(metric))]
    if not scored:
        raise PersonaError("no candidate produced a usable clustering (all metrics are NaN)")
    stable = [c for c in scored if (c.metrics.get("stability") or 0.0) >= params.min_stability]
    pool = stable or scored
    best = max(sign * c.metrics[metric] for c in pool)
    tied = [c for c in pool if sign * c.metrics[metric] >= best - params.tie_tolerance]
    return min(tied, key=lambda c: (c.k, FAMILY_ORDER.get(c.family, 99), c.name))
