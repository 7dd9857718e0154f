"""Models held in memory as a ``ModelSource`` (persona.serving.model_source), and a tiny model
fitted by the project's own build code: the model store and the API routes without MLflow."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from sklearn.pipeline import Pipeline

from persona.data.catalogue import load_catalogue
from persona.data.generator import generate_snapshot
from persona.errors import ModelUnavailableError, UpstreamUnavailableError
from persona.model.build import build_persona_model
from persona.model.naming import catalogue_personas
from persona.model.params import PreprocessingParams, SearchParams
from persona.model.preprocess import build_preprocessor, prepare_features
from persona.model.pyfunc import PersonaModel
from persona.model.search import make_estimator
from persona.serving.model_source import LoadedVersion

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = load_catalogue(ROOT / "00_create_data/personas.yaml")


@cache
def tiny_model(k: int = 3, seed: int = 0) -> PersonaModel:
    """KMeans on a few hundred synthetic customers, named against the catalogue."""
    frame = generate_snapshot(CATALOGUE, 300, seed=seed, progress=False)
    schema = CATALOGUE.schema
    estimator = Pipeline(
        [
            ("preprocess", build_preprocessor(schema, PreprocessingParams())),
            ("cluster", make_estimator("kmeans", k, {"n_init": 1}, seed)),
        ]
    ).fit(prepare_features(frame, schema))
    built = build_persona_model(
        estimator, frame, schema, SearchParams(), catalogue_personas(CATALOGUE)
    )
    return built.model


class MemorySource:
    """Versions numbered 1, 2, ... as they are added; ``up = False`` is a registry outage."""

    def __init__(self, name: str = "persona-test") -> None:
        self.name = name
        self.versions: dict[str, LoadedVersion] = {}
        self.aliases: dict[str, str] = {}
        self.up = True
        self.loaded: list[str] = []  # every version load() was asked for, in order
        self.renames: dict[int, str] = {}

    def add(self, model: PersonaModel, alias: str | None = None, **details) -> str:
        version = str(len(self.versions) + 1)
        self.versions[version] = LoadedVersion(version, model, **details)
        if alias is not None:
            self.aliases[alias] = version
        return version

    def version_holding(self, alias: str) -> str | None:
        self._answer()
        return self.aliases.get(alias)

    def load(self, version: str, alias: str) -> LoadedVersion:
        self._answer()
        self.loaded.append(version)
        try:
            return self.versions[version]
        except KeyError:
            raise ModelUnavailableError(f"{self.name} has no version {version!r}") from None

    def persona_names(self) -> dict[int, str]:
        self._answer()
        return dict(self.renames)

    def _answer(self) -> None:
        if not self.up:
            raise UpstreamUnavailableError(f"registry of {self.name} did not answer")


MARKETING_SCHEMA = {
    "id_column": "ID",
    "numeric_features": {
        "Income": {"min": 0},
        "Kidhome": {"min": 0, "integer": True},
        "MntWines": {"min": 0},
    },
    "categorical_features": {"Education": ["Basic", "Graduation", "PhD"]},
    "min_rows": 10,
}


def marketing_frame(n: int = 200, seed: int = 0):
    """A small table of another shape than the synthetic one (other columns, other id)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    group = rng.integers(0, 2, n)
    return pd.DataFrame(
        {
            "ID": [f"M{i}" for i in range(n)],
            "snapshot_month": "2026-11",
            "Income": np.where(group == 0, 30_000, 80_000) + rng.normal(0, 3_000, n),
            "Kidhome": np.where(group == 0, 2, 0),
            "MntWines": np.where(group == 0, 20, 700) + rng.normal(0, 10, n).clip(-15),
            "Education": np.where(group == 0, "Basic", "PhD"),
        }
    )


@cache
def marketing_model() -> PersonaModel:
    """KMeans(2) on the marketing-like table, with no catalogue: named from its profiles."""
    from persona.data.schema import schema_from_dict

    schema = schema_from_dict(MARKETING_SCHEMA)
    frame = marketing_frame()
    estimator = Pipeline(
        [
            ("preprocess", build_preprocessor(schema, PreprocessingParams())),
            ("cluster", make_estimator("kmeans", 2, {"n_init": 1}, 0)),
        ]
    ).fit(prepare_features(frame, schema))
    return build_persona_model(estimator, frame, schema, SearchParams(), []).model


class MemorySegmentations:
    """The ``SegmentationSource`` port in memory: segmentation name -> its MemorySource."""

    def __init__(self) -> None:
        self.sources: dict[str, MemorySource] = {}

    def segmentations(self) -> dict[str, str]:
        return {name: source.name for name, source in self.sources.items()}

    def model_source(self, model_name: str) -> MemorySource:
        return next(s for s in self.sources.values() if s.name == model_name)
