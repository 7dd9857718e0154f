"""Feature preprocessing for clustering: impute, scale, one-hot (weighted)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, RobustScaler, StandardScaler

from persona.data.schema import DatasetSchema
from persona.model.params import PreprocessingParams


def build_preprocessor(schema: DatasetSchema, params: PreprocessingParams) -> ColumnTransformer:
    """Column roles come from the schema, so any dataset that has one can be clustered."""
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


def prepare_features(frame, schema: DatasetSchema):
    """Feature columns only, with categoricals as plain Python objects (faster one-hot)."""
    features = frame[schema.features].copy()
    for name in schema.categorical:
        features[name] = categorical_values(features[name])
    for name in schema.numeric:
        features[name] = features[name].astype("float64")
    return features
