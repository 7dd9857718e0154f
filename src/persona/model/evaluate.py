"""Champion/challenger comparison on the same held-out rows, in one feature space."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import silhouette_score

from persona.data.schema import DatasetSchema
from persona.model.params import SearchParams
from persona.model.preprocess import prepare_features


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    alias: str  # the served alias when promoted, else the challenger alias
    reason: str
    challenger_score: float
    production_score: float | None


def holdout_score(space, labels: np.ndarray, params: SearchParams) -> float:
    """Silhouette of a labelling in ``space`` on a fixed sample (NaN for one cluster)."""
    rng = np.random.default_rng(params.seed + 2)
    sample = rng.choice(len(space), size=min(params.silhouette_sample, len(space)), replace=False)
    if len(np.unique(labels[sample])) < 2:
        return float("nan")
    return float(silhouette_score(space[sample], labels[sample]))


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
    about the partitions, not about which preprocessing was used.
    """
    space = challenger_estimator[:-1].transform(prepare_features(holdout, schema))
    challenger = holdout_score(space, challenger_labels, params)
    if production_labels is None:
        return PromotionDecision(True, alias, "no model in production", challenger, None)
    production = holdout_score(space, np.asarray(production_labels), params)
    margin = params.promotion_margin
    if np.isnan(production) or challenger >= production + margin:
        reason = (
            f"challenger {params.promotion_metric} {challenger:.4f} >= production "
            f"{production:.4f} + margin {margin}"
        )
        return PromotionDecision(True, alias, reason, challenger, production)
    reason = (
        f"challenger {params.promotion_metric} {challenger:.4f} < production {production:.4f} "
        f"+ margin {margin}"
    )
    return PromotionDecision(False, "challenger", reason, challenger, production)
