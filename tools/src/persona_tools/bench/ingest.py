"""``make bench-ingest``: PostgreSQL bulk I/O, COPY against the row-by-row baseline, in one run.

The same synthetic months (default 1,000,000 rows: 4 months of 250,000; ``ROWS=`` changes it)
are written into fresh tables of a throw-away PostgreSQL database, month by month as
``persona data ingest`` writes them:

- ``ingest rows``: the former path, row-by-row ``INSERT … ON CONFLICT`` through executemany
  (``--baseline-rows`` times it on fewer rows: at ~4,000 rows/s a million take ~4 minutes);
- ``ingest copy``: ``COPY`` into a staging table, one merge per month (``pg_bulk``);
- ``re-ingest copy``: the same rows again, every key already there (the row count must not move);

then read back: ``read_sql`` (``pd.read_sql``, the former read) and ``read copy`` (``COPY …
TO STDOUT`` parsed by Arrow), all months and one month; both reads must give equal frames.
Rates are rows/s, ratios against the baseline measured in the same run (the machines here are
noisy, so the ratio is the figure to read), peak RSS growth is sampled during each step.
The table is printed and saved with the JSON under ``PERSONA_HOME/bench``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

import pandas as pd
import psutil
import sqlalchemy as sa

from persona.adapters import database
from persona.data.catalogue import load_catalogue
from persona.data.generator import generate_snapshot
from persona.data.schema import load_schema
from persona.entry import exit_entry
from persona.settings import Settings
from persona_tools.bench.common import add_postgres_argument, throwaway_database

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Step:
    name: str
    rows: int
    seconds: float
    peak_rss_mib: float  # growth of this process's RSS over the step, sampled

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds


def timed(name: str, rows: int, action: Callable[[], Any]) -> tuple[Step, Any]:
    """Run ``action``, timing it and sampling this process's RSS every 20 ms."""
    process = psutil.Process()
    start_rss = peak = process.memory_info().rss
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.02):
            peak = max(peak, process.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    try:
        result = action()
    finally:
        seconds = time.perf_counter() - start
        done.set()
        sampler.join()
    step = Step(name, rows, seconds, (max(peak, process.memory_info().rss) - start_rss) / 2**20)
    logger.info("%s: %d rows in %.2f s (%.0f rows/s)", name, rows, seconds, step.rows_per_s)
    return step, result


def main(argv: list[str] | None = None) -> NoReturn:
    parser = argparse.ArgumentParser(prog="bench-ingest", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in all")
    parser.add_argument("--months", type=int, default=4, help="months the rows span")
    parser.add_argument(
        "--baseline-rows",
        type=int,
        help="rows the row-by-row baseline writes (default: all; its rate is flat in the rows)",
    )
    add_postgres_argument(parser, "customers database")
    args = parser.parse_args(argv)
    exit_entry(lambda settings: _bench(args, settings), logger)


def _frame(settings: Settings, rows: int, months: int) -> pd.DataFrame:
    catalogue = load_catalogue(settings.catalogue_path)
    per_month = rows // months
    return pd.concat(
        [
            generate_snapshot(catalogue, per_month, f"2026-{m + 1:02d}", seed=m, progress=False)
            for m in range(months)
        ],
        ignore_index=True,
    ).drop(columns=["true_persona"], errors="ignore")


def _bench(args: argparse.Namespace, settings: Settings) -> None:
    schema = load_schema(settings.schema_path)
    frame = _frame(settings, args.rows, args.months)
    month = str(frame[schema.month_column].iloc[0])
    month_rows = int((frame[schema.month_column] == month).sum())
    baseline = frame if not args.baseline_rows else frame.iloc[: args.baseline_rows]
    steps: list[Step] = []
    with throwaway_database(args.postgres, "persona_bench_ingest") as url:
        engine = database.make_engine(url)

        def write(table: str, rows: pd.DataFrame, copy: bool) -> None:
            database.upsert_frame(engine, table, rows, schema, progress=False, copy=copy)
            assert database.count_rows(engine, table) == len(rows), "the row count moved"

        def read(months: list[str] | None, copy: bool) -> pd.DataFrame:
            return database.read_months(engine, "by_copy", schema, months, copy=copy)

        steps.append(
            timed("ingest rows", len(baseline), lambda: write("by_rows", baseline, False))[0]
        )
        steps.append(timed("ingest copy", len(frame), lambda: write("by_copy", frame, True))[0])
        steps.append(timed("re-ingest copy", len(frame), lambda: write("by_copy", frame, True))[0])
        # the reads see a settled table (the re-ingest left a dead version of every row)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(sa.text('VACUUM ANALYZE "by_copy"'))
        results = {}
        for name, months, rows in (("all", None, len(frame)), ("one month", [month], month_rows)):
            for copy in (False, True):
                label = f"read {'copy' if copy else 'read_sql'} ({name})"
                step, results[copy] = timed(label, rows, lambda m=months, c=copy: read(m, c))
                steps.append(step)
            pd.testing.assert_frame_equal(results[True], results[False])  # the same frame
        engine.dispose()
    summary = _summary(steps)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = settings.home / "bench" / f"ingest-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"steps": [asdict(s) for s in steps], "summary": summary}, indent=2))
    sys.stdout.write(render(steps) + "\n\n" + json.dumps(summary, indent=2) + f"\n\nsaved {out}\n")


def _summary(steps: list[Step]) -> dict[str, Any]:
    rate = {s.name: s.rows_per_s for s in steps}
    return {
        "rows_per_s": {name: round(r) for name, r in rate.items()},
        "ingest_copy_vs_rows": round(rate["ingest copy"] / rate["ingest rows"], 1),
        "reingest_copy_vs_rows": round(rate["re-ingest copy"] / rate["ingest rows"], 1),
        "read_copy_vs_read_sql_all": round(
            rate["read copy (all)"] / rate["read read_sql (all)"], 1
        ),
        "read_copy_vs_read_sql_one_month": round(
            rate["read copy (one month)"] / rate["read read_sql (one month)"], 1
        ),
    }


def render(steps: list[Step]) -> str:
    lines = [f"{'step':<26} {'rows':>10} {'seconds':>8} {'rows/s':>11} {'peak RSS +MiB':>14}"]
    lines.append("-" * len(lines[0]))
    for s in steps:
        lines.append(
            f"{s.name:<26} {s.rows:>10,} {s.seconds:>8.2f} {s.rows_per_s:>11,.0f} "
            f"{s.peak_rss_mib:>14.0f}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
