"""Typed view of 01_model/params.yaml; bad values fail naming the key."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from persona.config_files import read_yaml
from persona.errors import ConfigurationError

FAMILIES = ("kmeans", "minibatch_kmeans", "gaussian_mixture")
# The clustering metrics selection.metric and promotion.metric accept, and their direction.
HIGHER_IS_BETTER = {"silhouette": True, "calinski_harabasz": True, "davies_bouldin": False}


@dataclass(frozen=True)
class PreprocessingParams:
    numeric_impute: str = "median"
    scale: str = "standard"
    categorical_impute: str = "most_frequent"
    one_hot: bool = True
    categorical_weight: float = 0.5
    # log1p for non-negative, right-skewed numeric columns whose most extreme 1% of rows carry
    # at least this share of their variance (None: never); see persona.model.preprocess
    log_tail_share: float | None = None
    # leave out numeric columns that clusters of the other columns explain no better than
    # chance: F-test p-value at least this (0: keep every column); see persona.model.preprocess
    drop_uninformative_p: float = 0.0


@dataclass(frozen=True)
class SearchParams:
    seed: int = 42
    n_jobs: int = -1
    preprocessing: PreprocessingParams = field(default_factory=PreprocessingParams)
    holdout_fraction: float = 0.2
    max_fit_rows: int = 200_000
    candidates: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    silhouette_sample: int = 4000
    stability_resamples: int = 4
    stability_sample: int = 4000
    selection_metric: str = "silhouette"
    min_stability: float = 0.85
    stability_reference_rows: int = 4000
    tie_tolerance: float = 0.005
    max_match_distance: float = 1.5
    new_name_prefix: str = "Emerging Segment"
    promotion_metric: str = "silhouette"
    promotion_margin: float = 0.01
    # retrains only: how much worse than the served model the challenger may score on the
    # reference period's held-out customers and still be promoted (metric units)
    promotion_max_reference_loss: float = 0.05

    def to_flat_dict(self) -> dict[str, Any]:
        """Flat key/values for MLflow params."""
        flat: dict[str, Any] = {}
        for key, value in vars(self).items():
            if key == "preprocessing":
                flat.update({f"pre.{k}": v for k, v in vars(value).items()})
            elif key == "candidates":
                for family, spec in value.items():
                    flat.update({f"{family}.{k}": v for k, v in spec.items()})
            else:
                flat[key] = value
        return flat


def params_from_dict(raw: Mapping[str, Any], source: str = "params") -> SearchParams:
    def section(name: str) -> Mapping[str, Any]:
        value = raw.get(name) or {}
        if not isinstance(value, Mapping):
            raise ConfigurationError(f"{source}: '{name}' must be a mapping")
        return value

    try:
        preprocessing = PreprocessingParams(**section("preprocessing"))
    except TypeError as exc:
        raise ConfigurationError(f"{source}: preprocessing: {exc}") from None
    if preprocessing.numeric_impute not in {"median", "mean"}:
        raise ConfigurationError(f"{source}: preprocessing.numeric_impute must be median|mean")
    if preprocessing.scale not in {"standard", "robust"}:
        raise ConfigurationError(f"{source}: preprocessing.scale must be standard|robust")
    tail = preprocessing.log_tail_share
    if tail is not None and (
        isinstance(tail, bool) or not isinstance(tail, int | float) or not 0 < tail <= 1
    ):
        raise ConfigurationError(
            f"{source}: preprocessing.log_tail_share must be in (0, 1] or null, got {tail!r}"
        )
    drop = preprocessing.drop_uninformative_p
    if isinstance(drop, bool) or not isinstance(drop, int | float) or not 0 <= drop < 1:
        raise ConfigurationError(
            f"{source}: preprocessing.drop_uninformative_p must be in [0, 1), got {drop!r}"
        )
    candidates = dict(section("candidates"))
    unknown = set(candidates) - set(FAMILIES)
    if unknown or not candidates:
        raise ConfigurationError(
            f"{source}: candidates must name some of {FAMILIES}, got {sorted(candidates)}"
        )
    for family, spec in candidates.items():
        ks = spec.get("k") or []
        if not ks or any(int(k) < 2 for k in ks):
            raise ConfigurationError(f"{source}: candidates.{family}.k must list integers >= 2")
    split, metrics = section("split"), section("metrics")
    selection, naming, promotion = section("selection"), section("naming"), section("promotion")
    params = SearchParams(
        seed=int(raw.get("seed", 42)),
        n_jobs=int(raw.get("n_jobs", -1)),
        preprocessing=preprocessing,
        holdout_fraction=float(split.get("holdout_fraction", 0.2)),
        max_fit_rows=int(split.get("max_fit_rows", 200_000)),
        candidates=candidates,
        silhouette_sample=int(metrics.get("silhouette_sample", 4000)),
        stability_resamples=int(metrics.get("stability_resamples", 4)),
        stability_sample=int(metrics.get("stability_sample", 4000)),
        selection_metric=str(selection.get("metric", "silhouette")),
        min_stability=float(selection.get("min_stability", 0.85)),
        stability_reference_rows=int(selection.get("stability_reference_rows", 4000)),
        tie_tolerance=float(selection.get("tie_tolerance", 0.005)),
        max_match_distance=float(naming.get("max_match_distance", 1.5)),
        new_name_prefix=str(naming.get("new_name_prefix", "Emerging Segment")),
        promotion_metric=str(promotion.get("metric", "silhouette")),
        promotion_margin=float(promotion.get("margin", 0.01)),
        promotion_max_reference_loss=_non_negative(
            promotion.get("max_reference_loss", 0.05), f"{source}: promotion.max_reference_loss"
        ),
    )
    if params.stability_reference_rows < 1:
        raise ConfigurationError(f"{source}: selection.stability_reference_rows must be >= 1")
    if not 0 < params.holdout_fraction < 0.9:
        raise ConfigurationError(f"{source}: split.holdout_fraction must be in (0, 0.9)")
    for key, value in (
        ("selection.metric", params.selection_metric),
        ("promotion.metric", params.promotion_metric),
    ):
        if value not in HIGHER_IS_BETTER:
            raise ConfigurationError(
                f"{source}: {key} {value!r} unknown; choose one of {', '.join(HIGHER_IS_BETTER)}"
            )
    return params


def _non_negative(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigurationError(f"{key} must be a number >= 0, got {value!r}")
    return float(value)


def load_params(path: Path) -> SearchParams:
    raw = read_yaml(path, "params file")
    return params_from_dict(raw or {}, source=str(path))
