"""``make bench-ingest``: ingest throughput, one transaction per month vs one for the whole file.

The same synthetic months (default 300,000 rows: 4 months of 75,000) are upserted into a
fresh table of a throw-away PostgreSQL database, alternately in one transaction
(``per_month=False``, the former behaviour) and month by month (the default), a few rounds
each; the machines here are noisy, so the figure to read is the ratio within one run.
Generation happens before timing; the table is dropped before every round.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from typing import NoReturn

import pandas as pd
import sqlalchemy as sa

from persona.adapters import database
from persona.data.catalogue import load_catalogue
from persona.data.generator import generate_snapshot
from persona.data.schema import load_schema
from persona.entry import exit_entry
from persona.settings import Settings
from persona_tools.bench.common import throwaway_database

logger = logging.getLogger(__name__)

TABLE = "customers"


def main(argv: list[str] | None = None) -> NoReturn:
    parser = argparse.ArgumentParser(prog="bench-ingest", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000, help="rows in all")
    parser.add_argument("--months", type=int, default=4, help="months the rows span")
    parser.add_argument("--rounds", type=int, default=2, help="timings of each mode")
    parser.add_argument(
        "--postgres",
        default="postgresql+psycopg2://postgres@127.0.0.1:5432",
        help="PostgreSQL server for the throw-away customers database",
    )
    args = parser.parse_args(argv)
    exit_entry(lambda settings: _bench(args, settings), logger)


def _bench(args: argparse.Namespace, settings: Settings) -> None:
    schema = load_schema(settings.schema_path)
    catalogue = load_catalogue(settings.catalogue_path)
    per_month = args.rows // args.months
    frame = pd.concat(
        [
            generate_snapshot(catalogue, per_month, f"2026-{m + 1:02d}", seed=m, progress=False)
            for m in range(args.months)
        ],
        ignore_index=True,
    ).drop(columns=["true_persona"], errors="ignore")
    seconds: dict[str, list[float]] = {"one_transaction": [], "per_month": []}
    with throwaway_database(args.postgres, "persona_bench_ingest") as url:
        engine = database.make_engine(url)
        for _ in range(args.rounds):
            for mode in seconds:
                with engine.begin() as connection:
                    connection.execute(sa.text(f'DROP TABLE IF EXISTS "{TABLE}"'))
                start = time.perf_counter()
                database.upsert_frame(
                    engine, TABLE, frame, schema, progress=False, per_month=mode == "per_month"
                )
                seconds[mode].append(time.perf_counter() - start)
                assert database.count_rows(engine, TABLE) == len(frame)
        engine.dispose()
    best = {mode: min(times) for mode, times in seconds.items()}
    result = {
        "rows": len(frame),
        "months": args.months,
        "rows_per_s": {mode: round(len(frame) / s) for mode, s in best.items()},
        "median_s": {mode: round(statistics.median(t), 2) for mode, t in seconds.items()},
        "per_month_vs_one_transaction": round(best["per_month"] / best["one_transaction"], 3),
    }
    sys.stdout.write(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
