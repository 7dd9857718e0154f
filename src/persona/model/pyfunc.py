"""The logged model: one MLflow pyfunc returning persona_id, persona_name, confidence, distance.

The fitted sklearn pipeline is stored with skops (no pickle of the estimator) and the persona
table as JSON beside it. The table carries the dataset schema the model was trained under; when
that schema has derived features (``persona.data.derived``), the model takes the raw columns and
computes them itself before the estimator, with the reference date frozen at training.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import skops.io

from persona.data.derived import DerivedFeatures
from persona.data.schema import schema_from_dict
from persona.errors import ModelUnavailableError
from persona.model.naming import Persona
from persona.model.preprocess import model_inputs
from persona.model.scoring import assign

OUTPUT_COLUMNS = ["persona_id", "persona_name", "confidence", "distance"]
TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.", "builtins.")


def save_estimator(estimator, path: Path) -> Path:
    skops.io.dump(estimator, path)
    return path


def load_estimator(path: Path):
    """Load our own skops file, trusting only sklearn/numpy/scipy types it contains."""
    untrusted = skops.io.get_untrusted_types(file=path)
    foreign = [t for t in untrusted if not t.startswith(TRUSTED_PREFIXES)]
    if foreign:
        raise ModelUnavailableError(f"model artifact {path} contains unexpected types: {foreign}")
    return skops.io.load(path, trusted=untrusted)


class PersonaModel(mlflow.pyfunc.PythonModel):
    """Pyfunc wrapper; also usable directly (``from_parts``) in tests and the trainer."""

    def load_context(self, context) -> None:
        self._setup(
            load_estimator(Path(context.artifacts["estimator"])),
            json.loads(Path(context.artifacts["personas"]).read_text()),
        )

    def _setup(self, estimator, persona_table: dict) -> None:
        self.estimator = estimator
        self.features: list[str] = persona_table["features"]
        self.categorical: list[str] = persona_table["categorical"]
        # The dataset schema the model was trained under: its data contract, where it has one.
        self.schema: dict | None = persona_table.get("schema")
        # Derived features the model computes from raw columns (empty for most models), and the
        # raw columns it then reads; without derived features, the estimator's own columns.
        self.derived = DerivedFeatures()
        if self.schema and self.schema.get("derived"):
            self.derived = schema_from_dict(self.schema, "model schema").derived
        self.inputs: list[str] = persona_table.get("inputs", self.features)
        personas = {int(k): Persona.from_dict(v) for k, v in persona_table["clusters"].items()}
        size = max(personas) + 1
        self.persona_ids = np.array([personas[i].persona_id for i in range(size)])
        self.persona_names = np.array([personas[i].name for i in range(size)], dtype=object)
        self.personas = personas

    @classmethod
    def from_parts(cls, estimator, persona_table: dict) -> PersonaModel:
        model = cls()
        model._setup(estimator, persona_table)
        return model

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        features = model_inputs(model_input, self.features, self.categorical, self.derived)
        result = assign(self.estimator, features)
        return pd.DataFrame(
            {
                "persona_id": self.persona_ids[result.labels],
                "persona_name": self.persona_names[result.labels],
                "confidence": result.confidence,
                "distance": result.distance,
            },
            index=model_input.index,
        )


def persona_table(
    mapping: dict[int, Persona],
    features: list[str],
    categorical: list[str],
    schema: dict,
    inputs: list[str] | None = None,
) -> dict:
    """JSON-able table stored with the model: cluster label -> persona, column roles (the
    estimator's ``features``, and the raw ``inputs`` when they differ) and the schema (ranges,
    levels, derived features) it was trained under, which the scoring API enforces."""
    return {
        "features": features,
        "categorical": categorical,
        **({"inputs": inputs} if inputs is not None and inputs != features else {}),
        "clusters": {str(label): persona.to_dict() for label, persona in mapping.items()},
        "schema": schema,
    }
