"""A marketing-campaign customer table built in the tests, and a model with derived features.

Raw columns as such exports carry them (Year_Birth, Income, Kidhome, Dt_Customer as dd-mm-yyyy
text, Mnt* amounts, Education), under ``00_create_data/schema_marketing.yaml``, whose derived
features (age, tenure_days, total_spend, log_income) are the model's inputs. Three latent
segments make the clustering meaningful. Shared by the unit, route and integration tests.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from persona.data.schema import DatasetSchema, load_schema
from persona.model.build import build_persona_model
from persona.model.params import PreprocessingParams, SearchParams
from persona.model.preprocess import build_preprocessor, prepare_features
from persona.model.pyfunc import PersonaModel
from persona.model.search import make_estimator

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_PATH = ROOT / "00_create_data/schema_marketing.yaml"
REFERENCE_DATE = "2026-01-01"
# (birth year, income, kids, wines, meat, fruits, first day as customer, education mix)
_SEGMENTS = (
    (1955, 80_000, 0.2, 900, 500, 60, "2012-08-01", (0.0, 0.05, 0.35, 0.3, 0.3)),
    (1975, 45_000, 1.2, 250, 120, 20, "2013-06-01", (0.05, 0.15, 0.6, 0.15, 0.05)),
    (1992, 22_000, 0.8, 40, 30, 10, "2014-03-01", (0.3, 0.3, 0.35, 0.05, 0.0)),
)
_EDUCATION = ["Basic", "2n Cycle", "Graduation", "Master", "PhD"]


def marketing_schema(reference_date: str | None = REFERENCE_DATE) -> DatasetSchema:
    """The example schema; with a fixed reference date unless None (the training date)."""
    schema = load_schema(SCHEMA_PATH)
    return schema if reference_date is None else schema.with_reference_date(reference_date)


def marketing_frame(
    rows: int, seed: int, month: str = "2026-01", born_shift: int = 0, missing_income: int = 0
) -> pd.DataFrame:
    """Raw customer rows; ``born_shift`` moves every birth year (a drifted population)."""
    rng = np.random.default_rng(seed)
    segment = rng.choice(len(_SEGMENTS), size=rows, p=(0.3, 0.4, 0.3))
    columns: dict[str, list] = {name: [] for name in ("born", "income", "kids", "w", "m", "f")}
    first_days, education = [], []
    for s in segment:
        born, income, kids, wines, meat, fruits, first, mix = _SEGMENTS[s]
        columns["born"].append(min(int(rng.normal(born, 6)), 2008) + born_shift)
        columns["income"].append(max(rng.normal(income, income * 0.15), 1000.0))
        columns["kids"].append(min(int(rng.poisson(kids)), 5))
        columns["w"].append(round(rng.gamma(4, wines / 4), 0))
        columns["m"].append(round(rng.gamma(4, meat / 4), 0))
        columns["f"].append(round(rng.gamma(4, fruits / 4), 0))
        first_days.append(pd.Timestamp(first) + pd.Timedelta(days=int(rng.integers(0, 300))))
        education.append(_EDUCATION[rng.choice(5, p=mix)])
    frame = pd.DataFrame(
        {
            "ID": [f"M{seed}-{i:05d}" for i in range(rows)],
            "snapshot_month": month,
            "Year_Birth": columns["born"],
            "Income": columns["income"],
            "Kidhome": columns["kids"],
            "MntWines": columns["w"],
            "MntFruits": columns["f"],
            "MntMeatProducts": columns["m"],
            "Dt_Customer": [day.strftime("%d-%m-%Y") for day in first_days],
            "Education": education,
        }
    )
    if missing_income:
        frame.loc[frame.index[:missing_income], "Income"] = np.nan
    return frame


@cache
def marketing_model(k: int = 3, seed: int = 0, family: str = "kmeans") -> PersonaModel:
    """A model with derived features, fitted and named by the project's own build code."""
    schema = marketing_schema()
    frame = marketing_frame(400, seed, missing_income=5)
    kwargs = {"n_init": 1} if family != "gaussian_mixture" else {"covariance_type": "diag"}
    estimator = Pipeline(
        [
            ("preprocess", build_preprocessor(schema, PreprocessingParams())),
            ("cluster", make_estimator(family, k, kwargs, seed)),
        ]
    ).fit(prepare_features(frame, schema))
    return build_persona_model(estimator, frame, schema, SearchParams(), []).model
