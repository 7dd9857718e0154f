"""Scoring without pandas: the fitted pipeline compiled once into plain numpy arrays.

The service scores small batches, where building a DataFrame and sklearn's per-call input
validation cost far more than the arithmetic. ``CompiledModel`` reads the fitted parameters of
the ``preprocess`` + ``cluster`` pipeline once and reproduces ``PersonaModel.predict`` (labels,
persona, confidence, distance) with a handful of vectorised numpy operations per batch: it builds
the feature-space quantities (``||x||²``, ``x·c``, a mixture's log-likelihoods) and hands them to
``persona.model.scoring``, which assigns clusters for the pyfunc too.

Numeric columns may be split over several blocks of the ColumnTransformer (e.g. a block that
takes skewed amounts through ``FunctionTransformer(np.log1p)`` before scaling): each block's ops
run on its own columns and the results sit side by side, as the transformer lays them out.

One-hot columns are never materialised: a categorical column contributes one gathered row of a
precomputed table (its level's offset in the feature space), and an unknown level gathers the
trailing all-zero row, which is exactly ``handle_unknown="ignore"``.

A model with derived features takes raw columns: ``score`` computes the derived ones on the
arrays first (``persona.data.derived``, the code the pyfunc runs), then the compiled maths.

Anything the compiler does not recognise raises ``ModelUnavailableError`` naming it, so the
caller can fall back to the pyfunc instead of serving different numbers.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.mixture import GaussianMixture
from sklearn.pipeline import Pipeline

from persona.data.derived import DerivedFeatures
from persona.data.schema import schema_from_dict
from persona.errors import ConfigurationError, InvalidInputError, ModelUnavailableError
from persona.model.naming import Persona
from persona.model.scoring import most_probable_component, nearest_centre, squared_distances
from persona.serving.fastpath_layout import (
    UNKNOWN,
    Layout,
    compile_preprocessor,
    frozen,
    unsupported,
    with_zero_row,
)

if TYPE_CHECKING:  # the service imports mlflow anyway; scoring itself does not need it
    from persona.model.pyfunc import PersonaModel

logger = logging.getLogger(__name__)

_LOG_2PI = math.log(2 * math.pi)
_COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


@dataclass(frozen=True)
class FastScores:
    labels: np.ndarray  # cluster label per row (int)
    persona_id: np.ndarray  # int
    persona_name: np.ndarray  # object (str)
    confidence: np.ndarray  # float64
    distance: np.ndarray  # float64


def _persona_arrays(persona_table: dict) -> tuple[np.ndarray, np.ndarray]:
    """label -> persona_id / persona_name, built as ``PersonaModel`` builds them."""
    try:
        personas = {int(k): Persona.from_dict(v) for k, v in persona_table["clusters"].items()}
        size = max(personas) + 1
        ordered = [personas[i] for i in range(size)]
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelUnavailableError(f"persona table is malformed: {exc!r}") from None
    ids = np.array([p.persona_id for p in ordered])
    names = np.array([p.name for p in ordered], dtype=object)
    return ids, names


def _derived_of(persona_table: dict) -> DerivedFeatures:
    schema = persona_table.get("schema") or {}
    if not schema.get("derived"):
        return DerivedFeatures()
    try:
        return schema_from_dict(schema, "model schema").derived
    except ConfigurationError as exc:
        raise ModelUnavailableError(f"persona table is malformed: {exc}") from None


def _numeric_array(numeric: Any, width: int, copy: bool) -> np.ndarray:
    """The numeric inputs as an (n, ``width``) float64 array, or an InvalidInputError naming
    what is wrong (not numbers, the wrong shape, infinity)."""
    try:
        X = (
            np.array(numeric, dtype=np.float64, copy=True)
            if copy
            else np.asarray(numeric, dtype=np.float64)
        )
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"numeric features must be numbers: {exc}") from None
    if X.ndim != 2 or X.shape[1] != width:
        raise InvalidInputError(f"numeric must have shape (n, {width}), got {X.shape}")
    if np.isinf(X).any():
        raise InvalidInputError("numeric features contain infinity")
    return X


def _apply(X: np.ndarray, ops: tuple[tuple[str, Any], ...]) -> np.ndarray:
    """A numeric block's ops on its own (writable) float64 columns."""
    for op, value in ops:
        if op == "fill":
            missing = np.isnan(X)
            if missing.any():
                np.copyto(X, value, where=missing)
        elif op == "sub":
            X -= value
        elif op == "div":
            X /= value
        elif op == "mul":
            X *= value
        elif op == "log1p":
            # below -1 is NaN (-1: -inf), as in the pyfunc: such a row scores non-finite
            with np.errstate(invalid="ignore", divide="ignore"):
                np.log1p(X, out=X)
        else:  # keep
            X = X[:, value]
    return X


def _gathered(column: Any, coded: Any) -> np.ndarray:
    """A column's feature-space codes from its ``Levels``: each distinct value looked up once.

    The same codes as the per-row lookup: a missing value takes the code of a learned None
    level, else the imputer's (``column.missing``), else none.
    """
    lookup = column.lookup
    per_value = np.fromiter(
        map(lookup.get, coded.values, repeat(UNKNOWN)), dtype=np.intp, count=len(coded.values)
    )
    if column.missing != UNKNOWN:  # a None among the values: as the per-row lookup does
        absent = np.fromiter((v is None for v in coded.values), bool, len(coded.values))
        per_value[absent & (per_value == UNKNOWN)] = column.missing
    missing = lookup.get(None, UNKNOWN)
    if missing == UNKNOWN:
        missing = column.missing
    return coded.per_row(per_value, missing)


class CompiledModel:
    """A fitted persona pipeline reduced to numpy arrays; ``score`` matches the pyfunc."""

    numeric: tuple[str, ...]  # input columns, in the order `score` expects them
    categorical: tuple[str, ...]  # text input columns: the derived features' dates first
    family: str  # e.g. "kmeans", "gaussian_mixture[diag]" (for logs)

    def __init__(
        self,
        estimator: Any,
        persona_ids: np.ndarray,
        persona_names: np.ndarray,
        derived: DerivedFeatures | None = None,
    ) -> None:
        """Prefer ``from_pipeline`` / ``from_persona_model``."""
        if type(estimator) is not Pipeline or len(estimator.steps) != 2:
            raise unsupported(f"estimator {type(estimator).__name__} (need preprocess + cluster)")
        self._persona_ids = np.array(persona_ids)
        self._persona_names = np.array(persona_names, dtype=object)
        self._persona_ids.setflags(write=False)
        self._persona_names.setflags(write=False)
        try:
            layout = compile_preprocessor(estimator.steps[0][1])
            self._layout_numeric, self._layout_categorical = layout.numeric, layout.categorical
            self._derive_inputs(derived or DerivedFeatures())
            self._blocks = layout.numeric_blocks
            self._columns = layout.categorical_columns
            self._compile_model(estimator.steps[1][1], layout)
        except (AttributeError, TypeError, ValueError, IndexError) as exc:
            # e.g. an unfitted step or attributes another sklearn version names differently:
            # the caller falls back to the pyfunc rather than failing to load the model
            raise ModelUnavailableError(f"fast path could not compile the model: {exc!r}") from exc
        logger.debug(
            "compiled %s: %d numeric, %d categorical inputs, %d features, %d clusters",
            self.family,
            len(self.numeric),
            len(self.categorical),
            layout.n_dims,
            self._n_clusters,
        )

    @classmethod
    def from_pipeline(cls, estimator: Any, persona_table: dict) -> CompiledModel:
        """Compile a fitted ``Pipeline([preprocess, cluster])`` and its persona table."""
        ids, names = _persona_arrays(persona_table)
        return cls(estimator, ids, names, _derived_of(persona_table))

    @classmethod
    def from_persona_model(cls, model: PersonaModel) -> CompiledModel:
        """Compile a loaded pyfunc, reusing its label -> persona mapping."""
        try:
            estimator, ids, names = model.estimator, model.persona_ids, model.persona_names
            derived = model.derived
        except AttributeError:
            raise ModelUnavailableError("PersonaModel has not been loaded") from None
        return cls(estimator, ids, names, derived)

    # -- compile -----------------------------------------------------------------------------

    def _derive_inputs(self, derived: DerivedFeatures) -> None:
        """The raw columns ``score`` takes: the estimator's own, or for derived features the
        raw numeric columns they and the estimator read, and their date columns as text."""
        self._derived = derived
        if not derived:
            self.numeric, self.categorical = self._layout_numeric, self._layout_categorical
            return
        computed = set(derived.names)
        raw = [n for n in self._layout_numeric if n not in computed]
        self.numeric = tuple(dict.fromkeys([*raw, *derived.numeric_columns]))
        self.categorical = (*derived.date_columns, *self._layout_categorical)

    def _compile_model(self, model: Any, layout: Layout) -> None:
        kind = type(model)
        if kind in (KMeans, MiniBatchKMeans):
            centers = getattr(model, "cluster_centers_", None)
            self.family = "kmeans" if kind is KMeans else "minibatch_kmeans"
        elif kind is GaussianMixture:
            centers = getattr(model, "means_", None)
            self.family = f"gaussian_mixture[{model.covariance_type}]"
        else:
            raise unsupported(f"clustering model {kind.__name__}")
        if centers is None:
            raise ModelUnavailableError(f"{kind.__name__} is not fitted")
        centers = np.asarray(centers, dtype=np.float64)
        if centers.ndim != 2 or centers.shape[1] != layout.n_dims:
            raise unsupported(f"{kind.__name__} fitted on {centers.shape[-1]} features")
        self._n_clusters = len(centers)
        if self._n_clusters > len(self._persona_ids):
            logger.warning(
                "%d clusters but %d personas: rows in the others will fail like the pyfunc",
                self._n_clusters,
                len(self._persona_ids),
            )
        weights, dims = layout.weights, layout.numeric_dims
        # Distances: ||x||^2 - 2 x.c + ||c||^2, with the one-hot part of x gathered.
        self._centers_num_t = frozen(centers[:, dims].T)
        self._centers_cat = with_zero_row((centers * weights).T)  # (D+1, k)
        self._weights_sq = with_zero_row(weights**2)  # (D+1,)
        self._centers_sq = frozen((centers * centers).sum(axis=1))
        self._mixture: str | None = None
        if kind is GaussianMixture:
            self._compile_mixture(model, centers, weights, dims)

    def _compile_mixture(
        self, model: GaussianMixture, means: np.ndarray, weights: np.ndarray, dims: np.ndarray
    ) -> None:
        """Tables for ``_estimate_log_gaussian_prob`` per covariance type (sklearn's formulas)."""
        cov = model.covariance_type
        if cov not in _COVARIANCE_TYPES:
            raise unsupported(f"GaussianMixture covariance_type {cov!r}")
        chol = np.asarray(model.precisions_cholesky_, dtype=np.float64)
        k, n_dims = means.shape
        if cov == "full":
            log_det = np.log(chol.reshape(k, -1)[:, :: n_dims + 1]).sum(axis=1)
            # all components side by side: X @ L_all gives every X @ L_k at once
            stacked = chol.transpose(1, 0, 2).reshape(n_dims, k * n_dims)
            self._chol_num = frozen(stacked[dims])
            self._chol_cat = with_zero_row(stacked * weights[:, None])
            self._means_chol = frozen(np.einsum("kd,kde->ke", means, chol).reshape(-1))
        elif cov == "tied":
            log_det = np.full(k, np.log(np.diag(chol)).sum())
            self._chol_num = frozen(chol[dims])
            self._chol_cat = with_zero_row(chol * weights[:, None])
            self._means_chol = frozen(means @ chol)
        elif cov == "diag":
            log_det = np.log(chol).sum(axis=1)
            precisions = chol**2
            scaled = means * precisions
            self._diag_const = frozen((means**2 * precisions).sum(axis=1))
            self._diag_lin_t = frozen(scaled[:, dims].T)
            self._diag_quad_t = frozen(precisions[:, dims].T)
            self._diag_cat = with_zero_row((-2.0 * scaled * weights + precisions * weights**2).T)
        else:
            log_det = n_dims * np.log(chol)
            self._spherical = frozen(chol**2)
        self._log_det = frozen(log_det)
        self._log_weights = frozen(np.log(model.weights_))
        self._n_dims_log_2pi = n_dims * _LOG_2PI
        self._mixture = cov

    # -- score -------------------------------------------------------------------------------

    def _preprocess_numeric(self, numeric: np.ndarray) -> np.ndarray:
        X = _numeric_array(numeric, len(self._layout_numeric), copy=True)
        if len(self._blocks) == 1:  # the common layout: no gathering, ops in place
            return _apply(X, self._blocks[0].ops)
        parts = [_apply(X[:, block.inputs], block.ops) for block in self._blocks]
        return np.concatenate(parts, axis=1) if parts else X

    def _codes(
        self, categorical: Sequence[np.ndarray], n: int, levels: Sequence[Any] = ()
    ) -> list[np.ndarray]:
        """Feature-space column per row and categorical column (-1: contributes nothing).

        A column given with its ``Levels`` (``persona.serving.contract``) is looked up once per
        distinct value, then gathered per row.
        """
        if len(categorical) != len(self._layout_categorical):
            raise InvalidInputError(
                f"expected {len(self._layout_categorical)} categorical arrays "
                f"{list(self._layout_categorical)}, got {len(categorical)}"
            )
        codes = []
        for column in self._columns:
            values = categorical[column.position]
            if len(values) != n:
                raise InvalidInputError(
                    f"categorical {self._layout_categorical[column.position]!r} has {len(values)} "
                    f"values for {n} rows"
                )
            coded = levels[column.position] if levels else None
            if coded is not None:
                codes.append(_gathered(column, coded))
                continue
            try:
                code = np.fromiter(
                    map(column.lookup.get, values, repeat(UNKNOWN)), dtype=np.intp, count=n
                )
            except TypeError as exc:
                raise InvalidInputError(f"categorical values must be hashable: {exc}") from None
            if column.missing != UNKNOWN:
                unmatched = np.flatnonzero(code == UNKNOWN)
                if unmatched.size:
                    array = values if isinstance(values, np.ndarray) else np.asarray(values, object)
                    subset = array[unmatched]
                    # None and NaN are what the imputer replaces (see prepare_features)
                    missing = np.fromiter((v is None or v != v for v in subset), bool, subset.size)
                    code[unmatched[missing]] = column.missing
            codes.append(code)
        return codes

    def score(
        self,
        numeric: np.ndarray,
        categorical: Sequence[np.ndarray],
        levels: Sequence[Any] = (),
    ) -> FastScores:
        """numeric: (n, len(self.numeric)) float64, NaN = missing. categorical: one array per
        categorical column (object dtype of str, None = missing).

        Missing values are treated exactly as the pyfunc treats them: NaN (numeric or
        categorical) is imputed with the fitted statistic, while None reaches the encoder as a
        level of its own, learned when the training data had None gaps, otherwise unknown (all
        zeros). Raises ``InvalidInputError`` on wrong shapes or infinite values, or on a date
        that cannot be read (the API's contract refuses such rows before they get here).
        ``levels``: per categorical column, its ``Levels`` when the caller has them (or None).
        """
        if self._derived:
            numeric, categorical = self._compute_derived(numeric, categorical)
            levels = levels[len(self._derived.date_columns) :] if levels else ()
        Z = self._preprocess_numeric(numeric)
        n = Z.shape[0]
        codes = self._codes(categorical, n, levels)

        dots = Z @ self._centers_num_t
        x_sq = np.einsum("ij,ij->i", Z, Z)
        for code in codes:
            dots += self._centers_cat[code]
            x_sq += self._weights_sq[code]
        sq = squared_distances(x_sq, dots, self._centers_sq)
        if self._mixture is None:
            assigned = nearest_centre(sq)
        else:
            assigned = most_probable_component(sq, self._weighted_log_prob(Z, codes, sq, n))
        labels = assigned.labels
        if n and labels.max() >= len(self._persona_ids):
            raise ModelUnavailableError(
                f"cluster {int(labels.max())} has no persona in the persona table"
            )
        return FastScores(
            labels=labels,
            persona_id=self._persona_ids[labels],
            persona_name=self._persona_names[labels],
            confidence=assigned.confidence,
            distance=assigned.distance,
        )

    def _compute_derived(
        self, numeric: np.ndarray, categorical: Sequence[np.ndarray]
    ) -> tuple[np.ndarray, Sequence[np.ndarray]]:
        """The estimator's inputs from the raw ones: derived columns computed on the arrays."""
        raw = _numeric_array(numeric, len(self.numeric), copy=False)
        if len(categorical) != len(self.categorical):
            raise InvalidInputError(
                f"expected {len(self.categorical)} text arrays {list(self.categorical)}, "
                f"got {len(categorical)}"
            )
        columns: dict[str, Any] = {name: raw[:, j] for j, name in enumerate(self.numeric)}
        columns.update(zip(self.categorical, categorical, strict=True))
        values = self._derived.evaluate(columns)
        n = raw.shape[0]
        model_numeric = np.empty((n, len(self._layout_numeric)), dtype=np.float64)
        for j, name in enumerate(self._layout_numeric):
            model_numeric[:, j] = values[name] if name in values else columns[name]
        return model_numeric, categorical[len(self._derived.date_columns) :]

    def _weighted_log_prob(
        self, Z: np.ndarray, codes: list[np.ndarray], sq: np.ndarray, n: int
    ) -> np.ndarray:
        """sklearn's ``_estimate_weighted_log_prob`` (log p(x | k) + log weight_k), shape (n, k),
        with the one-hot part of x gathered."""
        mahalanobis = self._mahalanobis_sq(Z, codes, sq, n)
        weighted = -0.5 * (self._n_dims_log_2pi + mahalanobis) + self._log_det
        weighted += self._log_weights
        return weighted

    def _mahalanobis_sq(
        self, Z: np.ndarray, codes: list[np.ndarray], sq: np.ndarray, n: int
    ) -> np.ndarray:
        """Squared Mahalanobis term of ``_estimate_log_gaussian_prob``, shape (n, k)."""
        k = self._n_clusters
        if self._mixture == "spherical":
            return sq * self._spherical
        if self._mixture == "diag":
            log_prob = -2.0 * (Z @ self._diag_lin_t) + (Z * Z) @ self._diag_quad_t
            for code in codes:
                log_prob += self._diag_cat[code]
            return log_prob + self._diag_const
        XL = Z @ self._chol_num
        for code in codes:
            XL += self._chol_cat[code]
        if self._mixture == "full":
            y = (XL - self._means_chol).reshape(n, k, -1)
        else:  # tied
            y = XL[:, None, :] - self._means_chol[None, :, :]
        return np.einsum("nkd,nkd->nk", y, y)
