"""Feature preprocessing for clustering: derived features, impute, scale, one-hot (weighted).

``model_inputs`` turns raw rows into the estimator's input columns (derived features computed
by ``persona.data.derived``); training, the pyfunc, promotion and monitoring all call it, so
they compute derived features with the same code.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, RobustScaler, StandardScaler

from persona.data.derived import DerivedFeatures
from persona.data.schema import DatasetSchema
from persona.model.params import PreprocessingParams


def build_preprocessor(schema: DatasetSchema, params: PreprocessingParams) -> ColumnTransformer:
    """Column roles come from the schema, so any dataset that has one can be clustered (the
    model inputs: derived features included, raw columns listed as inputs_only left out)."""
    schema = schema.model_schema
    scaler = StandardScaler() if params.scale == "standard" else RobustScaler()
    transformers = [
        (
            "numeric",
            Pipeline(
                [("impute", SimpleImputer(strategy=params.numeric_impute)), ("scale", scaler)]
            ),
            list(schema.numeric),
        )
    ]
    weights = {"numeric": 1.0}
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
