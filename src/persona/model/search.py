"""Candidate search: fit every configured clustering, score it, keep everything comparable.

Cost is bounded on purpose: candidates fit on at most ``max_fit_rows`` rows, silhouette runs
on a fixed sample, and stability refits on small bootstrap samples.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.metrics import (
    adjusted_rand_score,
    calinski_harabasz_score,
    davies_bouldin_score,
    silhouette_score,
)
from sklearn.mixture import GaussianMixture
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from persona.data.schema import DatasetSchema
from persona.model.params import SearchParams
from persona.model.preprocess import (
    FeaturePlan,
    build_preprocessor,
    plan_features,
    prepare_features,
)

logger = logging.getLogger(__name__)

FAMILY_ORDER = {"kmeans": 0, "minibatch_kmeans": 1, "gaussian_mixture": 2}


@dataclass(frozen=True)
class Candidate:
    name: str
    family: str
    k: int
    params: dict[str, Any]
    metrics: dict[str, float]
    estimator: Pipeline = field(repr=False)


@dataclass(frozen=True)
class SearchResult:
    candidates: list[Candidate]
    n_fit_rows: int
    seconds: float
    plan: FeaturePlan = field(default_factory=FeaturePlan)  # log-scaled and dropped columns

    def table(self) -> pd.DataFrame:
        rows = [
            {"candidate": c.name, "family": c.family, "k": c.k, **c.metrics}
            for c in self.candidates
        ]
        return pd.DataFrame(rows)


def candidate_grid(params: SearchParams) -> Iterator[tuple[str, str, int, dict[str, Any]]]:
    """(name, family, k, estimator kwargs) for every configured candidate."""
    for family, spec in params.candidates.items():
        for k in spec["k"]:
            if family == "gaussian_mixture":
                for cov in spec.get("covariance_type", ["full"]):
                    kwargs = {
                        "covariance_type": cov,
                        "n_init": int(spec.get("n_init", 1)),
                        "max_iter": int(spec.get("max_iter", 200)),
                    }
                    yield f"gmm_{cov}_k{k}", family, int(k), kwargs
            else:
                kwargs = {"n_init": int(spec.get("n_init", 3))}
                if family == "minibatch_kmeans":
                    kwargs["batch_size"] = int(spec.get("batch_size", 4096))
                yield f"{family}_k{k}", family, int(k), kwargs


def make_estimator(family: str, k: int, kwargs: dict[str, Any], seed: int):
    if family == "kmeans":
        return KMeans(n_clusters=k, random_state=seed, **kwargs)
    if family == "minibatch_kmeans":
        return MiniBatchKMeans(n_clusters=k, random_state=seed, **kwargs)
    return GaussianMixture(n_components=k, random_state=seed, **kwargs)


def stability_rows(n_rows: int, params: SearchParams) -> int:
    """Rows in each bootstrap refit: the selection rule scales its stability cut by this."""
    return min(params.stability_sample, n_rows)


def _stability(
    model, X: np.ndarray, eval_X: np.ndarray, eval_labels: np.ndarray, params: SearchParams
) -> float:
    """Mean ARI between the candidate and refits on bootstrap resamples, on a fixed sample."""
    rng = np.random.default_rng(params.seed + 1)
    scores = []
    for _ in range(params.stability_resamples):
        rows = rng.integers(0, len(X), size=stability_rows(len(X), params))
        refit = clone(model).fit(X[rows])
        scores.append(adjusted_rand_score(eval_labels, refit.predict(eval_X)))
    return float(np.mean(scores)) if scores else float("nan")


def score_labels(X: np.ndarray, labels: np.ndarray, sample: np.ndarray) -> dict[str, float]:
    """Internal validity metrics; NaN when the labelling is degenerate (one cluster)."""
    if len(np.unique(labels)) < 2 or len(np.unique(labels[sample])) < 2:
        return {
            "silhouette": float("nan"),
            "davies_bouldin": float("nan"),
            "calinski_harabasz": float("nan"),
        }
    return {
        "silhouette": float(silhouette_score(X[sample], labels[sample])),
        "davies_bouldin": float(davies_bouldin_score(X, labels)),
        "calinski_harabasz": float(calinski_harabasz_score(X, labels)),
    }


def _evaluate(spec, X: np.ndarray, sample: np.ndarray, truth, params: SearchParams):
    """Fit one candidate and compute its metrics (runs in a worker process)."""
    _name, family, k, kwargs = spec
    with threadpool_limits(limits=1):
        t0 = time.perf_counter()
        model = make_estimator(family, k, kwargs, params.seed).fit(X)
        labels = model.predict(X)
        fit_seconds = time.perf_counter() - t0
        metrics = score_labels(X, labels, sample)
        metrics["stability"] = _stability(model, X, X[sample], labels[sample], params)
    metrics["stability_rows"] = float(stability_rows(len(X), params))
    metrics["n_clusters_used"] = float(len(np.unique(labels)))
    metrics["fit_seconds"] = fit_seconds
    if truth is not None:
        metrics["ari_truth"] = float(adjusted_rand_score(truth, labels))
    return model, metrics


def fit_sample(frame: pd.DataFrame, params: SearchParams) -> pd.DataFrame:
    if len(frame) <= params.max_fit_rows:
        return frame
    return frame.sample(n=params.max_fit_rows, random_state=params.seed)


def run_search(
    frame: pd.DataFrame,
    schema: DatasetSchema,
    params: SearchParams,
    progress: bool | None = None,
) -> SearchResult:
    """Fit and score every candidate on ``frame`` (training rows only, holdout already removed)."""
    started = time.perf_counter()
    rows = fit_sample(frame, params)
    features = prepare_features(rows, schema)
    grid = [spec for spec in candidate_grid(params) if spec[2] < len(features)]
    # the column screening clusters as finely as the search goes
    finest = max((spec[2] for spec in grid), default=0)
    plan = plan_features(features, schema, params.preprocessing, finest, params.seed)
    preprocessor = build_preprocessor(schema, params.preprocessing, plan).fit(features)
    X = preprocessor.transform(features)
    rng = np.random.default_rng(params.seed)
    sample = rng.choice(len(X), size=min(params.silhouette_sample, len(X)), replace=False)
    truth = None
    if schema.truth_column and schema.truth_column in rows.columns:
        truth = rows[schema.truth_column].to_numpy()

    disable = None if progress is None else not progress
    # One process per core, one BLAS/OpenMP thread each: on small matrices this beats
    # threaded BLAS, and it keeps OpenMP from spinning on the other core.
    jobs = Parallel(n_jobs=params.n_jobs, return_as="generator")(
        delayed(_evaluate)(spec, X, sample, truth, params) for spec in grid
    )
    candidates = []
    for (name, family, k, kwargs), (model, metrics) in tqdm(
        zip(grid, jobs, strict=True), total=len(grid), desc="candidates", disable=disable
    ):
        estimator = Pipeline([("preprocess", preprocessor), ("cluster", model)])
        candidates.append(Candidate(name, family, k, {"k": k, **kwargs}, metrics, estimator))
        logger.debug("%s: %s", name, metrics)
    seconds = time.perf_counter() - started
    logger.info("searched %d candidates on %d rows in %.1fs", len(candidates), len(X), seconds)
    return SearchResult(candidates=candidates, n_fit_rows=len(X), seconds=seconds, plan=plan)
