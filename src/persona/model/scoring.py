"""Assigning customers to clusters with a confidence and a distance, for every model family."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.pipeline import Pipeline


@dataclass(frozen=True)
class Assignment:
    labels: np.ndarray
    confidence: np.ndarray
    distance: np.ndarray


def _softmax_of_negative_sq(distances: np.ndarray) -> np.ndarray:
    logits = -0.5 * distances**2
    logits -= logits.max(axis=1, keepdims=True)
    weights = np.exp(logits)
    return weights / weights.sum(axis=1, keepdims=True)


def centers_of(model) -> np.ndarray:
    return model.cluster_centers_ if hasattr(model, "cluster_centers_") else model.means_


def assign_transformed(model, X: np.ndarray) -> Assignment:
    """Labels, confidence in [0, 1] and Euclidean distance to the assigned centre."""
    centers = centers_of(model)
    sq = (X * X).sum(axis=1)[:, None] - 2 * X @ centers.T + (centers * centers).sum(axis=1)[None, :]
    distances = np.sqrt(np.maximum(sq, 0.0))
    if hasattr(model, "predict_proba"):
        proba = model.predict_proba(X)
    else:
        proba = _softmax_of_negative_sq(distances)
    labels = proba.argmax(axis=1) if hasattr(model, "predict_proba") else distances.argmin(axis=1)
    rows = np.arange(len(X))
    return Assignment(
        labels=labels, confidence=proba[rows, labels], distance=distances[rows, labels]
    )


def assign(estimator: Pipeline, features) -> Assignment:
    return assign_transformed(estimator[-1], estimator[:-1].transform(features))
