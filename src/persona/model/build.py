"""From a chosen estimator to the served model: name its clusters and wrap it as a pyfunc."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from persona.data.schema import DatasetSchema
from persona.model.naming import Persona, cluster_profiles, match_personas, segment_evidence
from persona.model.params import SearchParams
from persona.model.preprocess import prepare_features
from persona.model.pyfunc import PersonaModel, persona_table
from persona.model.search import run_search
from persona.model.selection import select_winner


@dataclass(frozen=True)
class BuiltModel:
    model: PersonaModel
    table: dict
    names: np.ndarray  # persona name per training row
    features: pd.DataFrame = field(repr=False)  # the training rows as model inputs


def build_persona_model(
    estimator,
    train: pd.DataFrame,
    schema: DatasetSchema,
    params: SearchParams,
    references: Sequence[Persona],
) -> BuiltModel:
    """Name the clusters of a fitted estimator and wrap it with its persona table.

    Profiles and names are in the model's inputs (derived features included); the table keeps
    the schema, whose reference date must already be frozen (``with_reference_date``).
    """
    inputs = schema.model_schema
    features = prepare_features(train, schema)
    labels = estimator.predict(features)
    mapping = match_personas(
        cluster_profiles(features, labels, inputs),
        references,
        estimator[:-1],
        inputs,
        params.max_match_distance,
        params.new_name_prefix,
        evidence=segment_evidence(train, labels, schema),
    )
    table = persona_table(
        mapping,
        inputs.features,
        list(inputs.categorical),
        schema.to_dict(),
        inputs=schema.features,
    )
    names = np.array([mapping[int(label)].name for label in labels], dtype=object)
    return BuiltModel(PersonaModel.from_parts(estimator, table), table, names, features)


def train_in_memory(
    train: pd.DataFrame, schema: DatasetSchema, params: SearchParams, references: Sequence[Persona]
) -> tuple[BuiltModel, str]:
    """Search, select and name without any tracking: for tests, notebooks and benchmarks.

    Date functions of derived features count to today, frozen into the model (unless the
    schema fixes a reference date)."""
    schema = schema.with_reference_date(datetime.now(UTC).date())
    result = run_search(train, schema, params, progress=False)
    winner = select_winner(result.candidates, params)
    return build_persona_model(winner.estimator, train, schema, params, references), winner.name
