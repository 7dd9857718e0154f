"""``make bench-search``: does the model search beat one KMeans with the true k?

On the demo catalogue a single KMeans with the true k already finds the personas, so that data
cannot show whether the search, its preprocessing and the selection rule add anything. This
benchmark uses the hard setting instead: ``00_create_data/personas_hard.yaml`` (overlapping
personas of unequal sizes, heavy-tailed amounts, columns without persona signal) drawn with
``MISSING_RATE`` missing values. Per seed it runs

* the default search: ``run_search`` + ``select_winner`` with the params file
  (``PERSONA_PARAMS``, 01_model/params.yaml), as ``train_in_memory`` runs them, on all rows;
* plain KMeans: the true number of personas, the search's KMeans ``n_init`` and seed, on the
  standardized raw features (the preprocessing without the feature plan: no log, no column
  left out),

and reports the ARI of each against the true persona and the k the search chose. A third
figure separates the two halves of the search: the same plain KMeans(true k) on the features
as the search prepared them (its feature plan), i.e. what the preprocessing alone buys when k
is given. Quality, not
speed, is the point; the wall time per seed is printed so a run can be sized.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from threadpoolctl import threadpool_limits

from persona.data.catalogue import Catalogue, load_catalogue
from persona.data.generator import generate_snapshot
from persona.entry import exit_entry
from persona.errors import ConfigurationError
from persona.model.params import SearchParams, load_params
from persona.model.preprocess import FeaturePlan, build_preprocessor, prepare_features
from persona.model.search import run_search
from persona.model.selection import select_winner
from persona.settings import Settings
from persona_tools import REPO_ROOT

logger = logging.getLogger(__name__)

HARD_CATALOGUE = REPO_ROOT / "00_create_data" / "personas_hard.yaml"
MISSING_RATE = 0.03  # share of missing values per feature in the hard setting
DEFAULT_ROWS = 3_000
DEFAULT_SEEDS = (1, 2, 3, 4, 5)


@dataclass(frozen=True)
class SeedResult:
    seed: int
    rows: int
    true_k: int
    ari_default: float  # the default search's winner vs the true persona
    k_chosen: int
    winner: str
    ari_plain_kmeans: float  # KMeans(true k) on standardized raw features
    ari_kmeans_planned: float  # KMeans(true k) on the search's prepared features
    logged: tuple[str, ...]  # columns the search took through log1p
    dropped: tuple[str, ...]  # columns the search left out as uninformative
    seconds: float  # wall time of the search

    def to_dict(self) -> dict:
        return asdict(self)


def hard_snapshot(catalogue: Catalogue, rows: int, seed: int) -> pd.DataFrame:
    """One month of the hard setting (missing values included)."""
    return generate_snapshot(catalogue, rows, seed=seed, missing_rate=MISSING_RATE, progress=False)


def plain_kmeans_labels(
    frame: pd.DataFrame, catalogue: Catalogue, params: SearchParams, plan: FeaturePlan | None = None
) -> np.ndarray:
    """The baseline: KMeans with the true k on the standardized raw features (or, given a
    ``plan``, on the features as the search prepared them)."""
    features = prepare_features(frame, catalogue.schema)
    X = build_preprocessor(catalogue.schema, params.preprocessing, plan).fit_transform(features)
    n_init = int(params.candidates.get("kmeans", {}).get("n_init", 4))
    k = len(catalogue.personas)
    with threadpool_limits(limits=1):
        return KMeans(n_clusters=k, n_init=n_init, random_state=params.seed).fit_predict(X)


def run_seed(catalogue: Catalogue, params: SearchParams, rows: int, seed: int) -> SeedResult:
    """Default search vs plain KMeans(true k) on one draw of the hard setting."""
    frame = hard_snapshot(catalogue, rows, seed)
    truth = frame[catalogue.schema.truth_column].to_numpy()
    started = time.perf_counter()
    result = run_search(frame, catalogue.schema, params, progress=False)
    winner = select_winner(result.candidates, params)
    seconds = time.perf_counter() - started
    labels = winner.estimator.predict(prepare_features(frame, catalogue.schema))
    plain = plain_kmeans_labels(frame, catalogue, params)
    planned = plain_kmeans_labels(frame, catalogue, params, result.plan)
    outcome = SeedResult(
        seed=seed,
        rows=rows,
        true_k=len(catalogue.personas),
        ari_default=float(adjusted_rand_score(truth, labels)),
        k_chosen=winner.k,
        winner=winner.name,
        ari_plain_kmeans=float(adjusted_rand_score(truth, plain)),
        ari_kmeans_planned=float(adjusted_rand_score(truth, planned)),
        logged=result.plan.log,
        dropped=result.plan.dropped,
        seconds=seconds,
    )
    logger.info(
        "seed %d: default %s ARI %.3f, plain KMeans ARI %.3f (%.1fs)",
        seed,
        winner.name,
        outcome.ari_default,
        outcome.ari_plain_kmeans,
        seconds,
    )
    return outcome


def render_table(results: list[SeedResult]) -> str:
    header = (
        f"{'seed':>4} {'ARI default':>11} {'k chosen':>8} {'ARI plain KMeans':>16} "
        f"{'ARI KMeans on prepared':>22}  winner"
    )
    lines = [header, "-" * (len(header) + 18)]
    for r in results:
        lines.append(
            f"{r.seed:>4} {r.ari_default:>11.3f} {r.k_chosen:>8} {r.ari_plain_kmeans:>16.3f} "
            f"{r.ari_kmeans_planned:>22.3f}  {r.winner} ({r.seconds:.0f}s)"
        )
    if results:
        hits = f"{sum(r.k_chosen == r.true_k for r in results)}/{len(results)}"
        lines.append(
            f"{'mean':>4} {np.mean([r.ari_default for r in results]):>11.3f} {hits:>8} "
            f"{np.mean([r.ari_plain_kmeans for r in results]):>16.3f} "
            f"{np.mean([r.ari_kmeans_planned for r in results]):>22.3f}"
            f"  (true k = {results[0].true_k}, {results[0].rows:,} rows per seed)"
        )
        lines.append(f"log1p: {', '.join(results[0].logged) or '-'}")
        lines.append(f"left out: {', '.join(results[0].dropped) or '-'}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="persona_tools.bench.search", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="rows per seed")
    parser.add_argument(
        "--seeds",
        default=",".join(str(s) for s in DEFAULT_SEEDS),
        help="comma-separated data seeds (default: %(default)s)",
    )
    parser.add_argument("--catalogue", type=Path, default=HARD_CATALOGUE)
    parser.add_argument("--params", type=Path, help="params file (default: PERSONA_PARAMS)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> NoReturn:
    args = parse_args(argv)
    exit_entry(lambda settings: _bench(args, settings), logger)


def _bench(args: argparse.Namespace, settings: Settings) -> None:
    try:
        seeds = [int(seed) for seed in args.seeds.split(",") if seed.strip()]
    except ValueError as exc:
        raise ConfigurationError(f"--seeds: {exc}") from None
    if args.rows < 10:
        raise ConfigurationError(f"--rows must be at least 10, got {args.rows}")
    params_path = args.params or settings.params_path
    params = load_params(params_path)
    catalogue = load_catalogue(args.catalogue)
    results = [run_seed(catalogue, params, args.rows, seed) for seed in seeds]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    out = settings.home / "bench" / f"search-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "catalogue": str(args.catalogue),
                "params": str(params_path),
                "missing_rate": MISSING_RATE,
                "results": [r.to_dict() for r in results],
            },
            indent=2,
        )
    )
    sys.stdout.write(render_table(results) + f"\n\nsaved {out}\n")


if __name__ == "__main__":
    main()
