"""Champion/challenger comparison on the same held-out rows, in one feature space."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score

from persona.data.schema import DatasetSchema
from persona.errors import ConfigurationError
from persona.model.params import HIGHER_IS_BETTER, SearchParams
from persona.model.preprocess import prepare_features


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    alias: str  # the served alias when promoted, else the challenger alias
    reason: str
    challenger_score: float
    production_score: float | None


def holdout_score(space, labels: np.ndarray, params: SearchParams) -> float:
    """``params.promotion_metric`` of a labelling in ``space`` (NaN for one cluster).

    As in the search: silhouette on a fixed sample of ``silhouette_sample`` rows (it is
    quadratic), Calinski-Harabasz and Davies-Bouldin on every row (they are linear).
    """
    metric = params.promotion_metric
    if metric not in HIGHER_IS_BETTER:
        raise ConfigurationError(
            f"promotion.metric {metric!r} unknown; choose one of {', '.join(HIGHER_IS_BETTER)}"
        )
    labels = np.asarray(labels)
    if metric == "silhouette":
        rng = np.random.default_rng(params.seed + 2)
        sample = rng.choice(
            len(space), size=min(params.silhouette_sample, len(space)), replace=False
        )
        space, labels = space[sample], labels[sample]
    if len(np.unique(labels)) < 2:
        return float("nan")
    return float(_SCORERS[metric](space, labels))


_SCORERS = {
    "silhouette": silhouette_score,
    "calinski_harabasz": calinski_harabasz_score,
    "davies_bouldin": davies_bouldin_score,
}


def decide_promotion(
    challenger_estimator,
    challenger_labels: np.ndarray,
    production_labels: np.ndarray | None,
    holdout: pd.DataFrame,
    schema: DatasetSchema,
    params: SearchParams,
    *,
    alias: str,
) -> PromotionDecision:
    """Promote to ``alias`` when nothing holds it or the challenger wins by the margin.

    Both labellings are scored in the challenger's preprocessed space, so the comparison is
    about the partitions, not about which preprocessing was used. The margin is in the units
    of ``promotion.metric``; for a lower-is-better metric (davies_bouldin) the challenger must
    be below production minus the margin.
    """
    space = challenger_estimator[:-1].transform(prepare_features(holdout, schema))
    challenger = holdout_score(space, challenger_labels, params)
    if production_labels is None:
        return PromotionDecision(True, alias, "no model in production", challenger, None)
    production = holdout_score(space, np.asarray(production_labels), params)
    metric, margin = params.promotion_metric, params.promotion_margin
    if HIGHER_IS_BETTER[metric]:
        wins = challenger >= production + margin
        rule = (">=" if wins else "<") + f" production {production:.4f} + margin {margin}"
    else:
        wins = challenger <= production - margin
        rule = (
            "<=" if wins else ">"
        ) + f" production {production:.4f} - margin {margin} (lower is better)"
    if np.isnan(production):
        wins, rule = True, "beats production, whose labelling has one cluster (no score)"
    reason = f"challenger {metric} {challenger:.4f} {rule}"
    return PromotionDecision(
        bool(wins), alias if wins else "challenger", reason, challenger, production
    )
