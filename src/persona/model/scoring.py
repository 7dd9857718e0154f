"""Assigning customers to clusters with a confidence and a distance, for every model family.

The maths from the feature space on lives here once. Both scoring paths call it: the pyfunc
(``assign``) with the preprocessed feature matrix, and the scoring API's fast path
(``persona.serving.fastpath``) with the same quantities built without materialising the one-hot
columns. They differ only in how they get ``||x||²``, ``x·c`` and a mixture's log-likelihoods.

A value far beyond the training range (an income of 1e200) overflows the squared distances: the
row's confidence and distance come out non-finite, never a made-up persona, and the API answers
such a row as an ``unscorable_value``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.pipeline import Pipeline


@dataclass(frozen=True)
class Assignment:
    labels: np.ndarray  # cluster label per row (int)
    confidence: np.ndarray  # in [0, 1]; non-finite when the row overflowed
    distance: np.ndarray  # Euclidean, to the assigned centre (feature space)


def centers_of(model) -> np.ndarray:
    """K-means centres or mixture means, one row per cluster."""
    return model.cluster_centers_ if hasattr(model, "cluster_centers_") else model.means_


def is_mixture(model) -> bool:
    """A model that assigns by posterior probability (Gaussian mixtures), not by distance."""
    return hasattr(model, "predict_proba")


def squared_distances(x_sq: np.ndarray, dots: np.ndarray, centers_sq: np.ndarray) -> np.ndarray:
    """``||x - c||²`` of every row and centre, from ``||x||²`` (n,), ``x·c`` (n, k), ``||c||²`` (k,)."""
    return x_sq[:, None] - 2 * dots + centers_sq[None, :]


def nearest_centre(sq: np.ndarray) -> Assignment:
    """K-means families: the nearest centre, with the softmax of ``-d²/2`` there as confidence."""
    sq = np.maximum(sq, 0.0)  # rounding can take a tiny distance below zero
    labels = sq.argmin(axis=1)
    logits = -0.5 * sq
    logits -= logits.max(axis=1, keepdims=True)
    weights = np.exp(logits)
    rows = np.arange(len(sq))
    return Assignment(
        labels=labels,
        confidence=weights[rows, labels] / weights.sum(axis=1),
        distance=np.sqrt(sq[rows, labels]),
    )


def most_probable_component(sq: np.ndarray, weighted_log_prob: np.ndarray) -> Assignment:
    """Gaussian mixtures: the component of highest posterior, that posterior as confidence, and
    the Euclidean distance to its mean. ``weighted_log_prob``: log p(x | k) + log weight_k."""
    top = weighted_log_prob.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(weighted_log_prob - top).sum(axis=1, keepdims=True)) + top
    with np.errstate(under="ignore"):
        proba = np.exp(weighted_log_prob - log_norm)
    labels = proba.argmax(axis=1)
    rows = np.arange(len(sq))
    return Assignment(
        labels=labels,
        confidence=proba[rows, labels],
        distance=np.sqrt(np.maximum(sq[rows, labels], 0.0)),
    )


def assign_transformed(model, X: np.ndarray) -> Assignment:
    """Labels, confidence in [0, 1] and Euclidean distance to the assigned centre."""
    centers = centers_of(model)
    sq = squared_distances(
        np.einsum("ij,ij->i", X, X), X @ centers.T, np.einsum("ij,ij->i", centers, centers)
    )
    if is_mixture(model):
        # what predict_proba normalises (sklearn's own formula, kept as the reference the fast
        # path is tested against); normalised here as the fast path normalises it
        return most_probable_component(sq, model._estimate_weighted_log_prob(X))
    return nearest_centre(sq)


def assign(estimator: Pipeline, features) -> Assignment:
    return assign_transformed(estimator[-1], estimator[:-1].transform(features))
