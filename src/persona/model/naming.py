"""Persona names that survive retraining.

Clusters are matched to reference personas (the catalogue, or the production model's own
personas) by Hungarian matching on centroids in the new model's standardized feature space.
A cluster farther than ``max_distance`` from every reference gets a new name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from persona.data.catalogue import Catalogue
from persona.data.schema import DatasetSchema


@dataclass(frozen=True)
class Persona:
    persona_id: int
    name: str
    description: str
    numeric: dict[str, float]
    categorical: dict[str, str]
    share: float = 0.0
    matched_distance: float | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> Persona:
        return cls(**raw)


def catalogue_personas(catalogue: Catalogue) -> list[Persona]:
    """Reference personas from the catalogue: mean of each numeric, most likely level."""
    return [
        Persona(
            persona_id=index,
            name=spec.name,
            description=spec.description,
            numeric={f: mean for f, (mean, _sd) in spec.numeric.items()},
            categorical={f: max(p, key=p.get) for f, p in spec.categorical.items()},
            share=spec.share,
        )
        for index, spec in enumerate(catalogue.personas)
    ]


def cluster_profiles(
    frame: pd.DataFrame, labels: np.ndarray, schema: DatasetSchema
) -> pd.DataFrame:
    """Per-cluster centroid in original units: numeric means, categorical modes, share."""
    grouped = frame.assign(_cluster=labels).groupby("_cluster")
    profile = grouped[list(schema.numeric)].mean()
    for name in schema.categorical:
        profile[name] = grouped[name].agg(
            lambda s: s.mode().iloc[0] if not s.mode().empty else None
        )
    profile["share"] = grouped.size() / len(frame)
    return profile.sort_index()


def _as_rows(
    numeric: Sequence[dict], categorical: Sequence[dict], schema: DatasetSchema
) -> pd.DataFrame:
    rows = pd.DataFrame([{**n, **c} for n, c in zip(numeric, categorical, strict=True)])
    for name in schema.features:
        if name not in rows.columns:
            rows[name] = np.nan
    frame = rows[schema.features].copy()
    for name in schema.categorical:
        frame[name] = frame[name].astype(object)
    return frame


def match_personas(
    profiles: pd.DataFrame,
    references: Sequence[Persona],
    preprocessor,
    schema: DatasetSchema,
    max_distance: float,
    new_name_prefix: str,
) -> dict[int, Persona]:
    """Map each cluster label to a Persona (reference name, or a new one when nothing is close)."""
    clusters = list(profiles.index)
    cluster_rows = _as_rows(
        [profiles.loc[c, list(schema.numeric)].to_dict() for c in clusters],
        [profiles.loc[c, list(schema.categorical)].to_dict() for c in clusters],
        schema,
    )
    Z_clusters = preprocessor.transform(cluster_rows)
    mapping: dict[int, Persona] = {}
    assigned: dict[int, tuple[Persona, float]] = {}
    if references:
        ref_rows = _as_rows(
            [r.numeric for r in references], [r.categorical for r in references], schema
        )
        Z_refs = preprocessor.transform(ref_rows)
        cost = np.linalg.norm(Z_clusters[:, None, :] - Z_refs[None, :, :], axis=2)
        for row, col in zip(*linear_sum_assignment(cost), strict=True):
            if cost[row, col] <= max_distance:
                assigned[row] = (references[col], float(cost[row, col]))
    next_id = max((r.persona_id for r in references), default=-1) + 1
    new_count = sum(1 for r in references if r.name.startswith(new_name_prefix))
    for row, cluster in enumerate(clusters):
        numeric = {k: float(v) for k, v in profiles.loc[cluster, list(schema.numeric)].items()}
        categorical = {
            k: str(v) for k, v in profiles.loc[cluster, list(schema.categorical)].items()
        }
        share = float(profiles.loc[cluster, "share"])
        if row in assigned:
            ref, distance = assigned[row]
            persona = Persona(
                ref.persona_id, ref.name, ref.description, numeric, categorical, share, distance
            )
        else:
            new_count += 1
            persona = Persona(
                next_id,
                f"{new_name_prefix} {new_count}",
                "A segment that matches no known persona; review its profile and name it.",
                numeric,
                categorical,
                share,
                None,
            )
            next_id += 1
        mapping[int(cluster)] = persona
    return mapping
