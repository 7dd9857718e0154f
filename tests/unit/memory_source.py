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

    def _answer(self) -> None:
        if not self.up:
            raise UpstreamUnavailableError(f"registry of {self.name} did not answer")
