"""Feature preprocessing for clustering: derived features, impute, log-scale heavy tails, scale,
one-hot (weighted).

``model_inputs`` turns raw rows into the estimator's input columns (derived features computed
by ``persona.data.derived``); training, the pyfunc, promotion and monitoring all call it, so
they compute derived features with the same code. The choices below work on those inputs.

Two choices are made from the training rows, before anything is fitted, and frozen into a
``FeaturePlan`` (plain column lists, so the fitted preprocessor stays an sklearn-only object that
skops loads and the scoring API's fast path compiles):

* **log1p of heavy-tailed amounts.** When a few customers spend or visit ten times the typical
  amount, their squared deviations make up most of the column's variance: standard scaling then
  squeezes everyone else into a narrow band, and clusters chase the tail. A column is taken
  through ``log1p`` before scaling when the schema declares it non-negative (``min >= 0``), the
  training rows are non-negative and right-skewed (mean above median), and its most extreme 1%
  of rows carry at least ``log_tail_share`` of its variance (about 0.07 for a normal column).
  A column that is skewed only because one segment sits far from the rest (a mixture of
  compact groups) stays below that share and keeps its units.
* **leaving out columns without segment signal.** A column drawn alike for every segment adds
  the same variance to every distance and blurs every cluster. For each numeric column, KMeans
  clusters the *other* columns; if those clusters explain its variance no better than random
  groups would (one-way ANOVA F-test, p-value at least ``drop_uninformative_p``), the column is
  left out. The test is exact for a column independent of the rest, and a column that shares
  the structure, even only for one small segment, has a vanishing p-value.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.special import fdtrc
from sklearn.cluster import KMeans
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, RobustScaler, StandardScaler
from threadpoolctl import threadpool_limits

from persona.data.derived import DerivedFeatures
from persona.data.schema import DatasetSchema
from persona.model.params import PreprocessingParams

logger = logging.getLogger(__name__)

# Rows the column screening clusters on: enough for stable eta squared, bounded cost.
SCREEN_ROWS = 4000
# The extreme share of rows whose weight in a column's variance marks it heavy-tailed.
TAIL = 0.01


@dataclass(frozen=True)
class FeaturePlan:
    """Which numeric columns are log1p-scaled and which are left out, with the evidence."""

    log: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()
    tail_share: Mapping[str, float] = field(default_factory=dict)  # see heavy_tailed_columns
    # per numeric column: eta squared in clusters of the other columns, and its p-value
    explained: Mapping[str, float] = field(default_factory=dict)
    p_value: Mapping[str, float] = field(default_factory=dict)


def _numeric_pipeline(params: PreprocessingParams, log: bool) -> Pipeline:
    scaler = StandardScaler() if params.scale == "standard" else RobustScaler()
    steps = [("impute", SimpleImputer(strategy=params.numeric_impute))]
    if log:
        # np.log1p itself (not a lambda): skops stores it by name and the fast path compiles it
        steps.append(("log1p", FunctionTransformer(np.log1p, feature_names_out="one-to-one")))
    return Pipeline([*steps, ("scale", scaler)])


def build_preprocessor(
    schema: DatasetSchema, params: PreprocessingParams, plan: FeaturePlan | None = None
) -> ColumnTransformer:
    """Column roles come from the schema, so any dataset that has one can be clustered (the
    model inputs: derived features included, raw columns listed as inputs_only left out).

    Without a ``plan`` every numeric column is imputed and scaled as is.
    """
    schema = schema.model_schema
    plan = plan or FeaturePlan()
    kept = [name for name in schema.numeric if name not in plan.dropped]
    plain = [name for name in kept if name not in plan.log]
    logged = [name for name in kept if name in plan.log]
    transformers = []
    weights = {}
    if plain or not logged:
        transformers.append(("numeric", _numeric_pipeline(params, log=False), plain))
        weights["numeric"] = 1.0
    if logged:
        transformers.append(("log_numeric", _numeric_pipeline(params, log=True), logged))
        weights["log_numeric"] = 1.0
    if schema.categorical and params.one_hot and params.categorical_weight > 0:
        transformers.append(
            (
                "categorical",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy=params.categorical_impute)),
                        (
                            "one_hot",
                            OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                        ),
                    ]
                ),
                list(schema.categorical),
            )
        )
        weights["categorical"] = params.categorical_weight
    return ColumnTransformer(
        transformers, remainder="drop", transformer_weights=weights, verbose_feature_names_out=True
    )


def tail_share(values: np.ndarray, tail: float = TAIL) -> float:
    """Share of the variance (squared deviations from the mean) carried by the most extreme
    ``tail`` of the rows: about 0.07 for a normal column, far more for a heavy-tailed one."""
    deviations = np.sort((values - values.mean()) ** 2)
    total = float(deviations.sum())
    if not total > 0:
        return 0.0
    top = max(1, int(np.ceil(len(deviations) * tail)))
    return float(deviations[-top:].sum() / total)


def heavy_tailed_columns(
    features: pd.DataFrame, schema: DatasetSchema, threshold: float | None
) -> tuple[tuple[str, ...], dict[str, float]]:
    """Columns to log1p: declared (schema ``min >= 0``) and observed non-negative, right-skewed,
    and heavy-tailed (their most extreme 1% of rows carry at least ``threshold`` of the
    variance). Returns the columns and every numeric column's tail share."""
    shares: dict[str, float] = {}
    chosen = []
    for name, spec in schema.numeric.items():
        values = features[name].dropna().to_numpy(dtype=np.float64)
        if len(values) < 3:
            continue
        shares[name] = tail_share(values)
        declared = spec.min is not None and spec.min >= 0
        right_skewed = values.mean() > np.median(values)
        heavy = threshold is not None and shares[name] >= threshold
        if heavy and declared and values.min() >= 0 and right_skewed:
            chosen.append(name)
    return tuple(chosen), shares


def eta_squared(values: np.ndarray, labels: np.ndarray) -> float:
    """Share of the variance of ``values`` explained by the group means of ``labels``."""
    total = float(np.var(values))
    if not total > 0:
        return 0.0
    groups, inverse = np.unique(labels, return_inverse=True)
    means = np.bincount(inverse, weights=values) / np.bincount(inverse)
    return float(np.var(means[inverse]) / total)


def independence_p_value(eta_sq: float, k: int, n: int) -> float:
    """One-way ANOVA p-value of ``eta_sq`` for ``k`` groups of ``n`` rows in total: how likely
    groups that have nothing to do with the column explain that much of its variance."""
    if n <= k or k < 2:
        return 1.0
    if eta_sq >= 1.0:
        return 0.0
    f_stat = (eta_sq / (k - 1)) / ((1.0 - eta_sq) / (n - k))
    return float(fdtrc(k - 1, n - k, f_stat))  # the F distribution's survival function


def uninformative_columns(
    features: pd.DataFrame,
    schema: DatasetSchema,
    params: PreprocessingParams,
    log: tuple[str, ...],
    k: int,
    seed: int,
) -> tuple[tuple[str, ...], dict[str, float], dict[str, float]]:
    """Numeric columns that clusters of the other columns explain no better than chance.

    For each numeric column, KMeans (``k`` = the largest candidate k) clusters every *other*
    prepared column, and eta squared measures how much of this column's variance (on the rows
    where it was observed) those clusters explain. A column independent of the rest of the
    data is exactly the case of clusters drawn at random for it, so a one-way ANOVA F-test is
    exact there: the column is left out when its p-value is at least
    ``drop_uninformative_p``. A column that shares the segment structure, even weakly or only
    for one small segment, has a vanishing p-value and stays. Returns the columns, and each
    numeric column's eta squared and p-value.
    """
    alpha = params.drop_uninformative_p
    numeric = list(schema.numeric)
    rows = features
    if len(rows) > SCREEN_ROWS:
        rows = rows.sample(n=SCREEN_ROWS, random_state=seed)
    if alpha <= 0 or len(numeric) < 2 or k < 2 or len(rows) <= k:
        return (), {}, {}
    preprocessor = build_preprocessor(schema, params, FeaturePlan(log=log)).fit(rows)
    X = preprocessor.transform(rows)
    position = {name: i for i, name in enumerate(preprocessor.get_feature_names_out())}
    explained: dict[str, float] = {}
    p_values: dict[str, float] = {}
    with threadpool_limits(limits=1):
        for name in numeric:
            column = position.get(f"log_numeric__{name}", position.get(f"numeric__{name}"))
            observed = rows[name].notna().to_numpy()
            if column is None or observed.sum() <= k:
                continue  # (nearly) all missing: nothing to judge it on
            others = np.delete(X, column, axis=1)
            labels = KMeans(n_clusters=k, n_init=2, random_state=seed).fit_predict(others)
            explained[name] = eta_squared(X[observed, column], labels[observed])
            groups = len(np.unique(labels[observed]))
            p_values[name] = independence_p_value(explained[name], groups, int(observed.sum()))
    dropped = tuple(name for name, p in p_values.items() if p >= alpha)
    if len(dropped) == len(numeric):
        logger.warning("every numeric column looks independent of the others; keeping them all")
        dropped = ()
    return dropped, explained, p_values


def plan_features(
    features: pd.DataFrame,
    schema: DatasetSchema,
    params: PreprocessingParams,
    k: int,
    seed: int,
) -> FeaturePlan:
    """Decide, from the training rows, which columns are log-scaled and which are left out.

    ``k``: the number of clusters the screening uses (the search passes its largest k).
    """
    schema = schema.model_schema  # the columns the estimator sees
    log, shares = heavy_tailed_columns(features, schema, params.log_tail_share)
    dropped, explained, p_values = uninformative_columns(features, schema, params, log, k, seed)
    if log or dropped:
        logger.info("feature plan: log1p %s; left out %s", list(log), list(dropped))
    return FeaturePlan(
        log=log, dropped=dropped, tail_share=shares, explained=explained, p_value=p_values
    )


def categorical_values(series: pd.Series) -> pd.Series:
    """Plain objects, with None and NaN both as NaN: the imputer only replaces NaN and would
    otherwise learn None as a category of its own."""
    values = series.astype(object)
    return values.where(values.notna(), np.nan)


def model_inputs(
    frame: pd.DataFrame,
    features: list[str],
    categorical: list[str],
    derived: DerivedFeatures | None = None,
) -> pd.DataFrame:
    """The estimator's input columns of raw rows, in ``features`` order: derived features
    computed from the raw columns, categoricals as plain objects (faster one-hot)."""
    values = derived.evaluate(frame) if derived else {}
    features_frame = frame[[name for name in features if name not in values]].copy()
    if values:
        features_frame = features_frame.assign(**values)[features]
    for name in categorical:
        features_frame[name] = categorical_values(features_frame[name])
    return features_frame


def prepare_features(frame: pd.DataFrame, schema: DatasetSchema) -> pd.DataFrame:
    """Model inputs of raw rows (see ``model_inputs``), numeric ones as float64."""
    inputs = schema.model_schema
    features = model_inputs(frame, inputs.features, list(inputs.categorical), schema.derived)
    for name in inputs.numeric:
        features[name] = features[name].astype("float64")
    return features


def raw_inputs(frame: pd.DataFrame, schema: DatasetSchema) -> pd.DataFrame:
    """The raw columns a model takes, as a client sends them: numbers as float64, categories
    and dates as text (what the logged model's input example and signature describe)."""
    if not schema.derived:
        return prepare_features(frame, schema)
    raw = frame[schema.features].copy()
    for name in schema.numeric:
        raw[name] = raw[name].astype("float64")
    for name in schema.input_dates:
        if pd.api.types.is_datetime64_any_dtype(raw[name]):
            raw[name] = raw[name].dt.strftime("%Y-%m-%d")
        raw[name] = categorical_values(raw[name])
    for name in schema.categorical:
        raw[name] = categorical_values(raw[name])
    return raw
