"""From a chosen estimator to the served model: name its clusters and wrap it as a pyfunc."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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


def build_persona_model(
    estimator,
    train: pd.DataFrame,
    schema: DatasetSchema,
    params: SearchParams,
    references: Sequence[Persona],
) -> BuiltModel:
    labels = estimator.predict(prepare_features(train, schema))
    mapping = match_personas(
        cluster_profiles(train, labels, schema),
        references,
        estimator[:-1],
        schema,
        params.max_match_distance,
        params.new_name_prefix,
        evidence=segment_evidence(train, labels, schema),
    )
    table = persona_table(mapping, schema.features, list(schema.categorical), schema.to_dict())
    names = np.array([mapping[int(label)].name for label in labels], dtype=object)
    return BuiltModel(PersonaModel.from_parts(estimator, table), table, names)


def train_in_memory(
    train: pd.DataFrame, schema: DatasetSchema, params: SearchParams, references: Sequence[Persona]
) -> tuple[BuiltModel, str]:
    """Search, select and name without any tracking: for tests, notebooks and benchmarks."""
    result = run_search(train, schema, params, progress=False)
    winner = select_winner(result.candidates, params)
    return build_persona_model(winner.estimator, train, schema, params, references), winner.name
