"""The port through which a scoring worker reaches its models.

A worker needs two things of a model registry: which version holds an alias now, and a version
loaded. ``persona.adapters.mlflow_serving.RegistryModelSource`` answers them from MLflow; the
app factory (``persona.serving.app.create_app``) injects it, and tests hand in models held in
memory instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from persona.model.pyfunc import PersonaModel


@dataclass(frozen=True)
class LoadedVersion:
    """One registered version, ready to serve."""

    version: str
    model: PersonaModel
    run_id: str = ""
    run_metrics: Mapping[str, float] = field(default_factory=dict)  # of the training run
    promoted_at: str | None = None  # when it got the alias, if persona moved it there
    promoted_by: str | None = None  # "persona", or "outside persona" (e.g. the MLflow UI)


class ModelSource(Protocol):
    """Where the served model comes from. Failures are persona errors: a source that cannot be
    reached raises ``UpstreamUnavailableError``, a version that cannot be loaded
    ``ModelUnavailableError``."""

    @property
    def name(self) -> str:
        """The registered model's name."""
        ...

    def version_holding(self, alias: str) -> str | None:
        """The version ``alias`` points at now; None when no version holds it."""
        ...

    def load(self, version: str, alias: str) -> LoadedVersion:
        """Version ``version``, with who gave it ``alias`` and when."""
        ...

    def persona_names(self) -> dict[int, str]:
        """persona_id -> the name a person gave it, served over the model's own names."""
        ...
