"""``make bench-stream``: in-process batch scoring streamed from file to file, against the fast
path on arrays in memory, at 1M and 10M rows.

Per size, each in a fresh process (so its peak RSS is its own): (a) the baseline, the compiled
fast path (``CompiledModel.score``) on arrays already in memory, batch after batch; (b) the
streaming path of ``persona score --engine local``: Parquet read in record batches, the API's
checks and the fast path, Parquet written (``persona.flows.score_stream``); and at the first
size (c) the same from a CSV file; with ``--spark MASTERS`` (d) ``persona score --engine spark``'s
path on each master (``local[2]``, or ``cluster``: a standalone master + one 1-core worker this
benchmark starts), Parquet in, Parquet by month out, run in the Spark environment: the session's
start-up is timed apart, then the job twice in it, cold (the executors' Python workers start:
imports, the broadcast model) and warm; with ``--table`` (e) the command from a PostgreSQL table
(each size one month of a throw-away database) into the scores table: COPY stream, spool by
month, merge. Reported: rows/s, the ratio to the baseline of the same run,
peak RSS and its growth over the process after start-up (imports, model; for Spark the driver's). The input is one
million synthetic customers, repeated with other ids for larger sizes; the model a fast search
fitted in memory, like the served one.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import pickle
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

from persona.data.catalogue import load_catalogue
from persona.data.generator import generate_snapshot
from persona.entry import exit_entry
from persona.settings import Settings
from persona_tools.bench.common import add_postgres_argument, fast_model, throwaway_database

logger = logging.getLogger(__name__)

DEFAULT_SIZES = (1_000_000, 10_000_000)
BLOCK_ROWS = 1_000_000  # generated once, repeated with other ids up to each size


@dataclass(frozen=True)
class Run:
    path: str  # fast-path arrays | stream parquet->parquet | stream csv->parquet
    rows: int
    seconds: float
    rows_per_s: float
    start_rss_mib: float
    peak_rss_mib: float
    ratio: float | None = None  # rows/s over the baseline of the same size


def _rss_mib() -> float:
    """This process's peak resident set so far, in MiB.

    Read from /proc (VmHWM, the high-water mark of this process's own memory): neither psutil
    nor ``getrusage`` gives it, as Linux carries ``ru_maxrss`` over ``exec``, so a child
    started by the benchmark would report the parent's peak.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux


def _served(model_path: str, batch_rows: int):
    from persona.serving.model_source import LoadedVersion
    from persona.serving.model_store import served_model, spec_for_model

    model = pickle.loads(Path(model_path).read_bytes())
    spec_for = spec_for_model(None, batch_rows, "ignore")
    return served_model("bench", "production", LoadedVersion("1", model), spec_for)


def baseline_child(model_path: str, block_path: str, rows: int, batch_rows: int) -> dict:
    """The fast path on arrays in memory: one block parsed once, scored until ``rows``."""
    import pyarrow.parquet as pq

    from persona.serving.record_batches import batch_from_arrow

    served = _served(model_path, batch_rows)
    compiled, spec = served.compiled, served.spec
    block = batch_from_arrow(pq.read_table(block_path), spec)
    numeric = block.numeric[:, [spec.numeric.index(name) for name in compiled.numeric]]
    categorical = [block.categorical[spec.categorical.index(n)] for n in compiled.categorical]
    start_rss = _rss_mib()
    done = 0
    started = time.perf_counter()
    while done < rows:
        for start in range(0, block.n_rows, batch_rows):
            stop = min(start + batch_rows, block.n_rows, start + rows - done)
            compiled.score(numeric[start:stop], [c[start:stop] for c in categorical])
            done += stop - start
            if done >= rows:
                break
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": done, "start_rss": start_rss, "peak_rss": _rss_mib()}


def stream_child(model_path: str, source: str, out: str, batch_rows: int) -> dict:
    """``persona score --engine local --file source --out out`` with the benchmark's model."""
    from persona.data.file_batches import BatchWriter, open_batches
    from persona.flows.score_stream import StreamRequest, score_stream

    served = _served(model_path, batch_rows)
    spec = served.spec
    start_rss = _rss_mib()
    started = time.perf_counter()
    reader = open_batches(
        Path(source),
        id_column=spec.id_column,
        text_columns=spec.categorical,
        expected_columns=spec.features,
    )
    request = StreamRequest(
        spec.id_column, "snapshot_month", "snapshot_month" in reader.columns, batch_rows=batch_rows
    )
    batches = reader.batches(request.columns_to_read(spec, reader.columns), batch_rows)
    with BatchWriter(Path(out), request.result_schema()) as writer:
        outcome = score_stream(served, batches, writer, request, reader.total_rows, progress=False)
    seconds = time.perf_counter() - started
    if outcome.scored_rows != outcome.rows_read:
        raise RuntimeError(f"only {outcome.scored_rows} of {outcome.rows_read} rows scored")
    return {
        "seconds": seconds,
        "rows": outcome.rows_read,
        "start_rss": start_rss,
        "peak_rss": _rss_mib(),
    }


def table_child(model_path: str, url: str, home: str, month: str, batch_rows: int) -> dict:
    """``persona score --engine local --month MONTH`` from the customers table of ``url`` into
    its scores table: the command's own path (COPY stream, spool, merge), the benchmark's model
    standing in for the registry's."""
    from persona import cli_score
    from persona.settings import load_settings

    served = _served(model_path, batch_rows)
    cli_score.production_model = lambda *_: served  # no MLflow in this child
    settings = load_settings(environ={}, overrides={"home": Path(home), "database_url": url})
    args = argparse.Namespace(
        file=None, out=None, chunk_rows=batch_rows, on_invalid="reject", month=month
    )
    start_rss = _rss_mib()
    started = time.perf_counter()
    summary = cli_score._score_local(args, settings)
    seconds = time.perf_counter() - started
    if summary["scored_rows"] != summary["rows_read"]:
        raise RuntimeError(f"only {summary['scored_rows']} of {summary['rows_read']} rows scored")
    return {
        "seconds": seconds,
        "rows": summary["rows_read"],
        "start_rss": start_rss,
        "peak_rss": _rss_mib(),
    }


def fill_table(url: str, schema, path: Path, month: str) -> None:
    """The customers table of ``url`` given a month holding the rows of ``path``."""
    import pyarrow.parquet as pq

    from persona.adapters import database

    engine = database.make_engine(url)
    chunks = (
        batch.to_pandas().assign(**{schema.month_column: month})
        for batch in pq.ParquetFile(path).iter_batches(batch_size=BLOCK_ROWS)
    )
    database.upsert_month_chunks(engine, "customers", month, chunks, schema, "bench ingest")
    engine.dispose()


def spark_child(model_path: str, source: str, out: str, batch_rows: int, master: str) -> dict:
    """``persona score --engine spark --file source --out out`` with the benchmark's model, in
    the Spark environment: the scored rows written as Parquet (the session start apart)."""
    batch_rows = int(batch_rows)
    from persona.adapters.spark_scoring import scored_frame, write_parquet
    from persona.adapters.spark_session import spark_session
    from persona.flows.score_stream import StreamRequest

    served = _served(model_path, batch_rows)
    spec = served.spec
    request = StreamRequest(spec.id_column, "snapshot_month", True, batch_rows=batch_rows)
    columns = [spec.id_column, "snapshot_month", *spec.features]
    conf = {"spark.sql.execution.arrow.maxRecordsPerBatch": str(batch_rows)}
    opening = time.perf_counter()
    with spark_session(master, "persona-bench-stream", conf) as session:
        start_rss = _rss_mib()
        opened = time.perf_counter()
        timed = []
        for _ in range(2):  # cold: the executors' Python workers start (imports, the model)
            started = time.perf_counter()
            frame = scored_frame(
                session, served, request, "bench", files=[Path(source)], columns=columns
            )
            write_parquet(frame, Path(out), request.month_out)
            timed.append(time.perf_counter() - started)
        rows = session.read.parquet(out).selectExpr("count(persona_id)").first()[0]
    return {
        "seconds": timed[0],
        "warm_seconds": timed[1],
        "rows": int(rows),
        "start_rss": start_rss,
        "peak_rss": _rss_mib(),
        "session_seconds": opened - opening,
    }


def _in_spark_env(*args: str) -> dict:
    """``spark_child`` in the Spark environment's Python (pyspark is in no other)."""
    import os
    import subprocess

    root = Path(__file__).resolve().parents[4]
    python = root / ".venv/spark/bin/python"
    if not python.exists():
        raise SystemExit("--spark needs the Spark environment: make install-spark")
    env = {**os.environ, "PYTHONPATH": str(root / "tools/src")}
    done = subprocess.run(
        [str(python), "-m", "persona_tools.bench.stream", "--spark-child", json.dumps(args)],
        env=env,
        stdout=subprocess.PIPE,
        check=True,
        start_new_session=True,
    )
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


@contextmanager
def _masters(names: list[str], scratch: Path) -> Iterator[dict[str, str]]:
    """name -> Spark master URL; ``cluster`` is a standalone master and one 1-core worker
    started for the benchmark (the commands of ``make spark-up``), stopped at the end."""
    from persona.services.local_stack import start
    from persona.services.processes import free_port, stop_process
    from persona.services.spark_cluster import ClusterLayout, cluster_services, wait_for_workers
    from persona.settings import load_settings

    urls = {name: name for name in names if name != "cluster"}
    started = []
    try:
        if "cluster" in names:
            layout = ClusterLayout(
                master_port=free_port(), master_ui_port=free_port(), worker_ui_ports=(free_port(),)
            )
            root = Path(__file__).resolve().parents[4]
            settings = load_settings(environ={"PERSONA_HOME": str(scratch / "spark-home")})
            for service in cluster_services(layout, root / ".venv/spark/bin", scratch / "work"):
                started.append(start(settings, service))
            wait_for_workers(layout.master_ui, 1)
            urls["cluster"] = layout.master_url
        yield urls
    finally:
        for service in reversed(started):
            stop_process(service.process)


def _in_child(function, *args) -> dict:
    """Run in a fresh interpreter, so peak RSS is the run's own."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def _run(path: str, measured: dict, baseline: Run | None = None) -> Run:
    rate = measured["rows"] / measured["seconds"]
    return Run(
        path,
        measured["rows"],
        measured["seconds"],
        rate,
        measured["start_rss"],
        measured["peak_rss"],
        None if baseline is None else rate / baseline.rows_per_s,
    )


def write_inputs(scratch: Path, catalogue, sizes: list[int], csv: bool) -> dict[str, Path]:
    """The block (one million customers) and, per size, a Parquet file of that many rows (the
    block repeated with other ids); a CSV of the first size when asked."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    block_rows = min(BLOCK_ROWS, max(sizes))
    frame = generate_snapshot(catalogue, block_rows, "2026-01", seed=21, progress=False)
    block = pa.Table.from_pandas(frame.drop(columns=["true_persona"]), preserve_index=False)
    paths = {"block": scratch / "block.parquet"}
    pq.write_table(block, paths["block"])
    for rows in sizes:
        path = scratch / f"in-{rows}.parquet"
        with pq.ParquetWriter(path, block.schema) as writer:
            for copy, start in enumerate(range(0, rows, block_rows)):
                part = block.slice(0, min(block_rows, rows - start))
                ids = pc.binary_join_element_wise(f"R{copy}-", part["customer_id"], "")
                writer.write_table(part.set_column(0, "customer_id", ids))
        paths[f"parquet-{rows}"] = path
    if csv:
        path = scratch / f"in-{sizes[0]}.csv"
        pq.read_table(paths[f"parquet-{sizes[0]}"]).to_pandas().to_csv(path, index=False)
        paths["csv"] = path
    return paths


def render(runs: list[Run]) -> str:
    lines = [
        f"{'path':<28} {'rows':>11} {'seconds':>8} {'rows/s':>11} {'ratio':>6} "
        f"{'start MiB':>9} {'peak MiB':>9} {'growth':>7}"
    ]
    for run in runs:
        ratio = f"{run.ratio:.2f}" if run.ratio is not None else "1.00"
        lines.append(
            f"{run.path:<28} {run.rows:>11,} {run.seconds:>8.2f} {run.rows_per_s:>11,.0f} "
            f"{ratio:>6} {run.start_rss_mib:>9.0f} {run.peak_rss_mib:>9.0f} "
            f"{run.peak_rss_mib - run.start_rss_mib:>7.0f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> NoReturn:
    parser = argparse.ArgumentParser(
        prog="persona_tools.bench.stream", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)))
    parser.add_argument("--batch-rows", type=int, default=100_000)
    parser.add_argument(
        "--model-rows", type=int, default=10_000, help="synthetic customers the model is fit on"
    )
    parser.add_argument("--no-csv", action="store_true", help="skip the CSV -> Parquet run")
    parser.add_argument(
        "--spark",
        default="",
        help="also time the Spark engine on these masters, comma-separated: local[N], "
        "spark://HOST:PORT, or cluster (a master + one 1-core worker started here); needs "
        "make install-spark",
    )
    parser.add_argument(
        "--table",
        action="store_true",
        help="also time the command from a PostgreSQL table (one month per size, a throw-away "
        "database on --postgres) into the scores table",
    )
    add_postgres_argument(parser, "customers database of --table")
    parser.add_argument("--spark-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.spark_child:  # in the Spark environment, for _in_spark_env
        result = spark_child(*json.loads(args.spark_child))
        sys.stdout.write(json.dumps(result) + "\n")
        raise SystemExit(0)
    exit_entry(lambda settings: _bench(args, settings), logger)


def _bench(args: argparse.Namespace, settings: Settings) -> None:
    sizes = sorted(int(s) for s in args.sizes.split(",") if s.strip())
    catalogue = load_catalogue(settings.catalogue_path)
    model, _, winner = fast_model(catalogue, args.model_rows, "2025-12", seed=5)
    logger.info("model: %s", winner)
    runs: list[Run] = []
    masters = [m.strip() for m in args.spark.split(",") if m.strip()]
    with (
        tempfile.TemporaryDirectory(prefix="persona-bench-stream-") as folder,
        _masters(masters, Path(folder)) as urls,
        (
            throwaway_database(args.postgres, "persona_bench_table")
            if args.table
            else nullcontext(None)
        ) as database_url,
    ):
        scratch = Path(folder)
        model_path = scratch / "model.pkl"
        model_path.write_bytes(pickle.dumps(model))
        paths = write_inputs(scratch, catalogue, sizes, csv=not args.no_csv)
        for rows in sizes:
            logger.info("timing %d rows", rows)
            measured = _in_child(
                baseline_child, str(model_path), str(paths["block"]), rows, args.batch_rows
            )
            baseline = _run("fast-path arrays", measured)
            runs.append(baseline)
            measured = _in_child(
                stream_child,
                str(model_path),
                str(paths[f"parquet-{rows}"]),
                str(scratch / "out.parquet"),
                args.batch_rows,
            )
            runs.append(_run("stream parquet->parquet", measured, baseline))
            if rows == sizes[0] and "csv" in paths:
                measured = _in_child(
                    stream_child,
                    str(model_path),
                    str(paths["csv"]),
                    str(scratch / "out.parquet"),
                    args.batch_rows,
                )
                runs.append(_run("stream csv->parquet", measured, baseline))
            if database_url:
                month = f"2026-{sizes.index(rows) + 1:02d}"
                fill_table(database_url, catalogue.schema, paths[f"parquet-{rows}"], month)
                measured = _in_child(
                    table_child,
                    str(model_path),
                    database_url,
                    str(scratch),
                    month,
                    args.batch_rows,
                )
                runs.append(_run("stream table->table", measured, baseline))
            for name, url in urls.items():
                measured = _in_spark_env(
                    str(model_path),
                    str(paths[f"parquet-{rows}"]),
                    str(scratch / f"out-spark-{len(runs)}"),
                    str(args.batch_rows),
                    url,
                )
                logger.info(
                    "Spark session on %s opened in %.1fs", name, measured["session_seconds"]
                )
                runs.append(_run(f"spark {name} cold", measured, baseline))
                warm = {**measured, "seconds": measured["warm_seconds"]}
                runs.append(_run(f"spark {name} warm", warm, baseline))
            logger.info("%s", runs[-1])
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    out = settings.home / "bench" / f"stream-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"batch_rows": args.batch_rows, "runs": [asdict(run) for run in runs]}
    out.write_text(json.dumps(record, indent=2))
    sys.stdout.write(render(runs) + f"\n\nsaved {out}\n")


if __name__ == "__main__":
    main()
