"""``make bench-train``: per-stage wall time of the training path at several data sizes.

Stages, as the pipeline runs them: generate (synthetic snapshot), validate (the pandera
contract), search (every candidate of the params file, logged as nested MLflow runs) and
register (name personas, log the pyfunc, champion/challenger on the holdout, register, alias).
A throw-away MLflow server (PostgreSQL registry, local artifacts) is started unless
``--tracking-uri`` points at one. Machines here are noisy, so each size also times a baseline
in the same run, one single-threaded KMeans fit (k = personas, n_init=1) on the same rows, and
reports the search as a multiple of it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import NoReturn

from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits

from persona import composition
from persona.data.generator import generate_snapshot
from persona.entry import exit_entry
from persona.errors import ConfigurationError
from persona.flows import train
from persona.model.preprocess import build_preprocessor, prepare_features
from persona.model.search import fit_sample
from persona.settings import Settings
from persona_tools.bench.common import add_server_arguments, tracking_server

logger = logging.getLogger(__name__)

DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
STAGES = ("generate", "validate", "search", "register")


@dataclass(frozen=True)
class SizeTiming:
    rows: int
    fit_rows: int
    candidates: int
    generate: float
    validate: float
    search: float
    register: float
    baseline_kmeans: float

    @property
    def total(self) -> float:
        return sum(getattr(self, stage) for stage in STAGES)

    @property
    def dominant(self) -> str:
        return max(STAGES, key=lambda stage: getattr(self, stage))

    def to_dict(self) -> dict:
        return {**asdict(self), "total": self.total, "dominant": self.dominant}


def _timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started


def baseline_fit_seconds(frame, context: train.TrainingContext, k: int) -> float:
    """One KMeans fit on the rows the search fits on: the yardstick for this machine, now."""
    rows = fit_sample(frame, context.params)
    features = prepare_features(rows, context.schema)
    X = build_preprocessor(context.schema, context.params.preprocessing).fit_transform(features)
    with threadpool_limits(limits=1):
        _, seconds = _timed(KMeans(n_clusters=k, n_init=1, random_state=0).fit, X)
    return seconds


def time_size(context: train.TrainingContext, rows: int, seed: int) -> SizeTiming:
    catalogue = context.catalogue
    frame, generate_s = _timed(generate_snapshot, catalogue, rows, "2026-01", seed, progress=False)
    _, validate_s = _timed(train.validate_step, frame, context.schema)
    split = train.split_step(context, frame)
    search, search_s = _timed(train.search_step, context, split, False)

    def register():
        champion = train.load_champion(context)
        selection = train.select_step(context, search, split, champion)
        return train.register_step(context, selection, split, champion)

    registration, register_s = _timed(register)
    baseline_s = baseline_fit_seconds(frame, context, len(catalogue.personas))
    logger.info(
        "%d rows: generate %.2fs validate %.2fs search %.2fs register %.2fs -> version %s (%s)",
        rows,
        generate_s,
        validate_s,
        search_s,
        register_s,
        registration.registration.version,
        registration.registration.alias,
    )
    return SizeTiming(
        rows=rows,
        fit_rows=min(search.n_train, context.params.max_fit_rows),
        candidates=len(search.candidates),
        generate=generate_s,
        validate=validate_s,
        search=search_s,
        register=register_s,
        baseline_kmeans=baseline_s,
    )


def render_table(timings: list[SizeTiming]) -> str:
    header = (
        f"{'rows':>10} {'fit rows':>9} {'cands':>5} {'generate':>9} {'validate':>9} "
        f"{'search':>8} {'register':>9} {'total':>8} {'search/baseline':>16}  dominant"
    )
    lines = [header, "-" * len(header)]
    for t in timings:
        lines.append(
            f"{t.rows:>10,} {t.fit_rows:>9,} {t.candidates:>5} {t.generate:>8.2f}s "
            f"{t.validate:>8.2f}s {t.search:>7.2f}s {t.register:>8.2f}s {t.total:>7.2f}s "
            f"{t.search / t.baseline_kmeans:>15.1f}x  {t.dominant}"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="persona_tools.bench.train", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--sizes",
        default=",".join(str(n) for n in DEFAULT_SIZES),
        help="comma-separated row counts (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=42)
    add_server_arguments(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> NoReturn:
    args = parse_args(argv)
    exit_entry(lambda settings: _bench(args, settings), logger)


def _bench(args: argparse.Namespace, settings: Settings) -> None:
    try:
        sizes = [int(size) for size in args.sizes.split(",") if size.strip()]
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        with tracking_server(args) as tracking_uri:
            bench_settings = settings.with_overrides(
                mlflow_tracking_uri=tracking_uri,
                mlflow_experiment=f"bench-train-{stamp}",
                model_name=f"bench-train-{stamp}",
            )
            context = composition.training_context(bench_settings, seed=args.seed)
            if context.catalogue is None:
                raise ConfigurationError(f"no persona catalogue at {settings.catalogue_path}")
            # Untimed warm-up: worker pool start, imports and the first MLflow round-trips
            # would otherwise be charged to the first size.
            time_size(context, 2_000, args.seed)
            timings = [time_size(context, rows, args.seed) for rows in sizes]
    except ValueError as exc:  # e.g. --sizes that are not integers: a configuration error
        raise ConfigurationError(str(exc)) from None
    out = settings.home / "bench" / f"train-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {"params": str(settings.params_path), "timings": [t.to_dict() for t in timings]},
            indent=2,
        )
    )
    sys.stdout.write(render_table(timings) + f"\n\nsaved {out}\n")


if __name__ == "__main__":
    main()
