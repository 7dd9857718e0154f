"""``make bench-scale``: every path for big batches in one run, each as a share of the in-process
fast path measured in that same run (these machines are noisy: only ratios of one run compare).

It runs the repo's own benchmarks one after the other and reads the JSON each saves:
``bench.stream`` (the fast path on arrays — the baseline —, ``score --engine local`` Parquet to
Parquet and from a PostgreSQL table into the scores table, and ``score --engine spark`` on
local[2] and on a 1-worker standalone cluster, cold and warm), ``bench.serve`` (Arrow, Parquet and JSON bodies over HTTP under Gunicorn, 4 clients),
``bench.ingest`` (PostgreSQL COPY ingest and streamed reads) and ``bench.monitor --engines``
(the drift verdict's seconds, pandas/Evidently vs Spark sketches). Spark figures are also given
per executor core, the unit ``docs/SCALING.md`` projects from. The table is printed and saved
(Markdown and JSON) under PERSONA_HOME/bench.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from persona.entry import exit_entry
from persona.settings import Settings

logger = logging.getLogger(__name__)

DEFAULT_SIZES = (1_000_000, 10_000_000)
SERVE_ROWS = 100_000  # rows per HTTP request: a big batch the API accepts (PERSONA_MAX_BATCH_ROWS)
SAVED = re.compile(r"^saved (\S+)$", re.MULTILINE)
# executor cores behind each Spark engine the stream benchmark times
SPARK_CORES = {"local[2]": 2, "cluster": 1}


@dataclass(frozen=True)
class Row:
    path: str
    rows: int
    rows_per_s: float | None
    ratio: float | None  # rows/s over the fast path's at the same size, this run
    per_core: float | None = None  # Spark: rows/s per executor core
    seconds: float | None = None
    note: str = ""


def _run_bench(module: str, *args: str) -> dict[str, Any]:
    """Run ``persona_tools.bench.<module>`` in this environment; its saved JSON."""
    command = [sys.executable, "-m", f"persona_tools.bench.{module}", *args]
    logger.info("running %s", " ".join(command[2:]))
    started = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    sys.stdout.write(done.stdout)
    if done.returncode != 0:
        raise RuntimeError(f"bench {module} failed with exit {done.returncode}")
    found = SAVED.findall(done.stdout)
    if not found:
        raise RuntimeError(f"bench {module} saved no result (no 'saved PATH' line)")
    logger.info("%s took %.0fs", module, time.perf_counter() - started)
    return json.loads(Path(found[-1]).read_text())


def _ratio(rate: float | None, base: float | None) -> float | None:
    return round(rate / base, 3) if rate and base else None


def stream_rows(record: dict[str, Any]) -> tuple[list[Row], dict[int, float]]:
    """Rows of the stream benchmark, and the fast path's rows/s per size (the baseline)."""
    baseline = {
        run["rows"]: run["rows_per_s"]
        for run in record["runs"]
        if run["path"].startswith("fast-path")
    }
    rows = []
    for run in record["runs"]:
        rate, size = run["rows_per_s"], run["rows"]
        per_core, note = None, ""
        if run["path"].startswith("spark "):
            engine = run["path"].split()[1]
            cores = SPARK_CORES.get(engine)
            per_core = round(rate / cores) if cores else None
            note = f"{cores} executor core(s)" if cores else ""
        elif run["path"].startswith("stream"):
            note = f"peak RSS {run['peak_rss_mib']:.0f} MiB"
        rows.append(
            Row(
                run["path"],
                size,
                round(rate),
                _ratio(rate, baseline.get(size)),
                per_core,
                round(run["seconds"], 2),
                note,
            )
        )
    return rows, baseline


def serve_rows(record: dict[str, Any], baseline: float | None) -> list[Row]:
    """The API at SERVE_ROWS rows per request, 4 clients, per body format."""
    rows = []
    for m in record["measurements"]:
        if m["path"] == "service" and m["clients"] == 4 and m["rows"] == SERVE_ROWS:
            rows.append(
                Row(
                    f"HTTP /predict {m['payload']} ({SERVE_ROWS // 1000}k-row requests)",
                    m["rows"],
                    round(m["rows_per_s"]),
                    _ratio(m["rows_per_s"], baseline),
                    note=f"p50 {m['p50_ms']:.0f} ms",
                )
            )
    return rows


def ingest_rows(record: dict[str, Any], baseline: float | None) -> list[Row]:
    picked = (
        "ingest copy",
        "re-ingest copy",
        "read copy (all)",
        "ingest rows",
        "read read_sql (all)",
    )
    rows = []
    for step in record["steps"]:
        if step["name"] in picked:
            rate = step["rows"] / step["seconds"]
            rows.append(
                Row(f"PostgreSQL {step['name']}", step["rows"], round(rate), _ratio(rate, baseline))
            )
    return rows


def drift_rows(record: list[dict[str, Any]]) -> list[Row]:
    return [
        Row(
            f"drift verdict, {t['engine']}",
            t["rows"],
            round(t["rows"] / t["seconds"]) if t["seconds"] else None,
            None,
            seconds=t["seconds"],
            note=(
                "skipped" if t["seconds"] is None else f"drifted: {', '.join(t['drifted']) or '-'}"
            ),
        )
        for t in record
    ]


def render(rows: list[Row]) -> str:
    def num(value: float | None, digits: int = 0) -> str:
        return "-" if value is None else f"{value:,.{digits}f}"

    lines = [
        "| path | rows | rows/s | × fast path | rows/s per core | seconds | note |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.path} | {row.rows:,} | {num(row.rows_per_s)} | {num(row.ratio, 3)} | "
            f"{num(row.per_core)} | {num(row.seconds, 1)} | {row.note} |"
        )
    return "\n".join(lines)


def _bench(args: argparse.Namespace, settings: Settings) -> None:
    sizes = sorted(int(s) for s in args.sizes.split(",") if s.strip())
    listed = ",".join(map(str, sizes))
    stream = _run_bench("stream", "--sizes", listed, "--no-csv", "--table", "--spark", args.spark)
    rows, baseline = stream_rows(stream)
    if not args.no_serve:
        serve = _run_bench("serve", "--sizes", str(SERVE_ROWS), "--rounds", "1")
        rows += serve_rows(serve, baseline.get(sizes[0]))
    for size in sizes:
        ingest = _run_bench(
            "ingest", "--rows", str(size), "--baseline-rows", str(min(size, args.baseline_rows))
        )
        rows += ingest_rows(ingest, baseline.get(size))
    drift = _run_bench(
        "monitor", "--engines", "--sizes", listed, "--pandas-max-rows", str(sizes[-1])
    )
    rows += drift_rows(drift)
    table = render(rows)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = settings.home / "bench" / f"scale-{stamp}"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps([asdict(r) for r in rows], indent=2))
    out.with_suffix(".md").write_text(table + "\n")
    sys.stdout.write(f"\n{table}\n\nsaved {out.with_suffix('.json')}\n")


def main(argv: list[str] | None = None) -> NoReturn:
    parser = argparse.ArgumentParser(
        prog="persona_tools.bench.scale", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)))
    parser.add_argument("--spark", default="local[2],cluster", help="as bench.stream --spark")
    parser.add_argument(
        "--baseline-rows",
        type=int,
        default=200_000,
        help="rows the row-by-row PostgreSQL baseline writes (its rate is flat in the rows)",
    )
    parser.add_argument("--no-serve", action="store_true", help="skip the HTTP benchmark")
    args = parser.parse_args(argv)
    exit_entry(lambda settings: _bench(args, settings), logger)


if __name__ == "__main__":
    main()
