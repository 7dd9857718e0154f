"""Synthetic monthly customer snapshots drawn from the persona catalogue.

Deterministic for a seed: a customer's id and persona come from the population seed alone,
so the same customer keeps the same persona across months; feature values are drawn per
month. Drift scenarios change the distribution in named, testable ways.

Each numeric feature is normal unless the catalogue says ``lognormal``; a lognormal feature is
drawn through the same normal draw (its log-scale parameters in place of mean and sd, then
``exp``), so a catalogue without lognormal features gives the same frame, byte for byte, as
before the distributions existed.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import replace

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from persona.data.catalogue import Catalogue, PersonaSpec
from persona.data.months import check_month
from persona.errors import ConfigurationError

logger = logging.getLogger(__name__)

SCENARIOS = ("none", "income_inflation", "mix_shift", "new_persona", "channel_shift")


def _month_seed(seed: int, month: str, scenario: str) -> int:
    digest = hashlib.sha256(f"{seed}|{month}|{scenario}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def scenario_personas(catalogue: Catalogue, scenario: str) -> list[PersonaSpec]:
    """The personas (with shares) that a scenario draws from."""
    if scenario not in SCENARIOS:
        raise ConfigurationError(f"unknown drift scenario {scenario!r}; choose from {SCENARIOS}")
    personas = list(catalogue.personas)
    if scenario == "none":
        return personas
    spec = catalogue.scenarios.get(scenario)
    if spec is None:
        raise ConfigurationError(f"scenario {scenario!r} is not defined in the catalogue")
    if scenario == "income_inflation":
        scale: Mapping[str, float] = spec["scale"]
        return [
            replace(
                p,
                numeric={
                    f: (m * scale.get(f, 1.0), s * scale.get(f, 1.0))
                    for f, (m, s) in p.numeric.items()
                },
            )
            for p in personas
        ]
    if scenario == "mix_shift":
        shares = spec["shares"]
        total = sum(shares.values())
        return [replace(p, share=shares.get(p.name, 0.0) / total) for p in personas]
    if scenario == "new_persona":
        new_share = float(spec["share"])
        newcomer = catalogue.parse_persona(spec["persona"], "new_persona")
        return [replace(p, share=p.share * (1 - new_share)) for p in personas] + [
            replace(newcomer, share=new_share)
        ]
    # channel_shift: every persona takes the scenario's categorical mix
    override = spec["categorical"]
    return [replace(p, categorical={**p.categorical, **override}) for p in personas]


def lognormal_parameters(mean: np.ndarray, sd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) of the log of a lognormal variable with this mean and sd (original units)."""
    sigma_sq = np.log1p((sd / mean) ** 2)
    return np.log(mean) - sigma_sq / 2, np.sqrt(sigma_sq)


def generate_snapshot(
    catalogue: Catalogue,
    n_rows: int,
    month: str = "2026-01",
    seed: int = 42,
    scenario: str = "none",
    missing_rate: float = 0.0,
    progress: bool | None = None,
) -> pd.DataFrame:
    """One month of customers; ``progress=None`` shows a bar only on a terminal."""
    if n_rows <= 0:
        raise ConfigurationError(f"n_rows must be positive, got {n_rows}")
    if not 0 <= missing_rate < 1:
        raise ConfigurationError(f"missing_rate must be in [0, 1), got {missing_rate}")
    month = check_month(month)
    schema = catalogue.schema
    personas = scenario_personas(catalogue, scenario)
    shares = np.array([p.share for p in personas])
    shares = shares / shares.sum()

    population = np.random.default_rng(seed)
    assignment = population.choice(len(personas), size=n_rows, p=shares)
    rng = np.random.default_rng(_month_seed(seed, month, scenario))

    numeric = np.empty((n_rows, len(schema.numeric)), dtype=np.float64)
    lognormal = np.array([catalogue.distributions.get(f) == "lognormal" for f in schema.numeric])
    categorical = {name: np.empty(n_rows, dtype=object) for name in schema.categorical}
    truth = np.empty(n_rows, dtype=object)
    disable = None if progress is None else not progress
    with tqdm(total=n_rows, desc=f"generate {month}", unit="rows", disable=disable) as bar:
        for index, persona in enumerate(personas):
            rows = np.flatnonzero(assignment == index)
            if rows.size == 0:
                continue
            means = np.array([persona.numeric[f][0] for f in schema.numeric])
            sds = np.array([persona.numeric[f][1] for f in schema.numeric])
            if lognormal.any():
                means[lognormal], sds[lognormal] = lognormal_parameters(
                    means[lognormal], sds[lognormal]
                )
            numeric[rows] = rng.normal(means, sds, size=(rows.size, means.size))
            if lognormal.any():
                numeric[np.ix_(rows, lognormal)] = np.exp(numeric[np.ix_(rows, lognormal)])
            for name in schema.categorical:
                levels = list(persona.categorical[name])
                probs = np.array([persona.categorical[name][level] for level in levels])
                categorical[name][rows] = np.array(levels, dtype=object)[
                    rng.choice(len(levels), size=rows.size, p=probs / probs.sum())
                ]
            truth[rows] = persona.name
            bar.update(rows.size)

    for column, spec in enumerate(schema.numeric.values()):
        values = numeric[:, column]
        lower = -np.inf if spec.min is None else spec.min
        upper = np.inf if spec.max is None else spec.max
        np.clip(values, lower, upper, out=values)
        if spec.integer:
            np.round(values, out=values)
        else:
            np.round(values, 2, out=values)

    frame = pd.DataFrame(numeric, columns=list(schema.numeric))
    for name, values in categorical.items():
        frame[name] = values
    if missing_rate > 0:
        for name in schema.features:
            mask = rng.random(n_rows) < missing_rate
            frame.loc[mask, name] = np.nan if name in schema.numeric else None
    ids = pd.Series(np.arange(n_rows)).astype(str).str.zfill(8)
    frame.insert(0, schema.id_column, "C" + ids)
    frame.insert(1, schema.month_column, month)
    if schema.truth_column:
        frame[schema.truth_column] = truth
    logger.info("generated %d rows for %s (scenario=%s, seed=%d)", n_rows, month, scenario, seed)
    return frame
