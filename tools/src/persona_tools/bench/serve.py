"""``make bench-serve``: the same model and batches through four scoring paths, in one run.

(a) in-process ``predict`` of the MLflow pyfunc (and the service's fast path on parsed
arrays: the ceiling), (b) ``mlflow models serve`` on the same model URI (JSON and CSV, up to
``--mlflow-max-rows``), (c) this service under Gunicorn. Batches of 1 / 100 / 1,000 / 10,000 /
100,000 rows as JSON records, CSV, an Arrow IPC stream and Parquet (JSON and CSV answered in
JSON, Arrow and Parquet in their own format), with 1 client (latency) and 4 concurrent clients
(throughput); JSON also through (d) this service with the scoring log on (PERSONA_SCORING_LOG,
rows copied to PostgreSQL off the request path). Each service figure is also given as a share
of the fast path's rows/s at the same size. Servers run 2 workers on this machine's 2 cores,
with the client on the same cores, so only the ratios between paths of one run mean much.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

import requests
import yaml

from persona import composition
from persona.data.catalogue import load_catalogue
from persona.data.generator import generate_snapshot
from persona.data.schema import load_schema
from persona.entry import exit_entry
from persona.errors import PersonaError
from persona.flows import train
from persona.services.processes import ServiceProcess, free_port, start_service, wait_http
from persona.serving.memory import tune_allocator
from persona.settings import Settings, load_settings
from persona_tools import REPO_ROOT
from persona_tools.bench.common import (
    VENVS,
    add_server_arguments,
    throwaway_database,
    tracking_server,
)

logger = logging.getLogger(__name__)

SIZES = (1, 100, 1_000, 10_000, 100_000)
MLFLOW_MAX_ROWS = 10_000  # mlflow models serve at 100k rows takes minutes for little news
PAYLOADS = ("json", "csv", "arrow", "parquet")
# The model of the orientation figures in the issue: one KMeans over the 10 features.
BENCH_SEARCH = {
    "candidates": {"kmeans": {"k": [6], "n_init": 2}},
    "metrics": {"silhouette_sample": 2000, "stability_resamples": 1, "stability_sample": 2000},
}


@dataclass(frozen=True)
class Measurement:
    path: str  # in-process | fast-path | mlflow | mlflow-new-conn | service | service+log
    payload: str  # json | csv | arrow | parquet | frame | arrays
    rows: int
    clients: int
    requests: int
    rows_per_s: float
    p50_ms: float
    p95_ms: float


def _percentiles(latencies: list[float]) -> tuple[float, float]:
    ordered = sorted(latencies)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return statistics.median(ordered) * 1000, p95 * 1000


def _repeats(rows: int, budget_rows: int = 1_000_000) -> int:
    """Requests per figure: enough that a stall or the first connection is a small part of it."""
    return max(40, min(300, budget_rows // rows))


@dataclass(frozen=True)
class ClientRun:
    latencies: list[float]
    failures: list[str]
    started: float  # time.perf_counter() (CLOCK_MONOTONIC: one clock for every process)
    ended: float


def _client(
    url: str, body: bytes, headers: dict[str, str], repeats: int, keep_alive: bool
) -> ClientRun:
    """One client: a warm-up request (connection, first-call costs), then ``repeats`` timed.

    Set up as a bulk client would be: no proxy or .netrc look-up per call (``trust_env``) and
    the answer read in one piece, not in requests' 10 KB steps; together 0.5-0.8 ms of this
    client's time per 10k-row Arrow request, which the servers measured here do not spend.
    """
    session = requests.Session()
    session.trust_env = False
    if not keep_alive:
        session.headers["Connection"] = "close"

    def send() -> tuple[int, bytes]:
        with session.post(url, data=body, headers=headers, timeout=120, stream=True) as response:
            return response.status_code, response.raw.read(decode_content=True)

    send()
    latencies, failures = [], []
    started = time.perf_counter()
    for _ in range(repeats):
        sent = time.perf_counter()
        status, answer = send()
        latencies.append(time.perf_counter() - sent)
        if status != 200:
            failures.append(f"{status}: {answer[:200]!r}")
    return ClientRun(latencies, failures, started, time.perf_counter())


def measure_http(
    url: str,
    body: bytes,
    content_type: str,
    rows: int,
    clients: int,
    keep_alive: bool = True,
    accept: str = "application/json",
) -> tuple[float, list[float]]:
    """Wall time and latencies of ``clients`` concurrent clients each sending the body N times.

    Clients are separate processes: threads of one Python client would share its GIL and cap
    what any server can show. The wall time runs from the first timed request to the last
    answer, so starting the client processes (a fork of this large one) is not counted.
    """
    repeats = max(20, _repeats(rows) // clients)
    headers = {"Content-Type": content_type, "Accept": accept}
    args = (url, body, headers, repeats, keep_alive)
    if clients == 1:
        runs = [_client(*args)]
    else:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(clients, mp_context=context) as pool:
            runs = list(pool.map(_client, *zip(*[args] * clients, strict=True)))
    wall = max(run.ended for run in runs) - min(run.started for run in runs)
    latencies = [latency for run in runs for latency in run.latencies]
    failures = [failure for run in runs for failure in run.failures]
    if failures:
        raise PersonaError(f"{url}: {len(failures)} failed requests, first: {failures[0]}")
    return wall, latencies


def _record(path, payload, rows, clients, wall, latencies) -> Measurement:
    p50, p95 = _percentiles(latencies)
    return Measurement(
        path, payload, rows, clients, len(latencies), rows * len(latencies) / wall, p50, p95
    )


def median_of(rounds: list[Measurement]) -> Measurement:
    """One figure per path from repeated rounds: the median throughput and latencies."""
    first = rounds[0]
    return Measurement(
        first.path,
        first.payload,
        first.rows,
        first.clients,
        sum(m.requests for m in rounds),
        statistics.median(m.rows_per_s for m in rounds),
        statistics.median(m.p50_ms for m in rounds),
        statistics.median(m.p95_ms for m in rounds),
    )


def _time_calls(call, repeats: int) -> list[float]:
    latencies = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - started)
    return latencies


def measure_in_process(pyfunc, frame, rows: int) -> list[Measurement]:
    """The pyfunc on a DataFrame, and the service's fast path on arrays parsed from JSON."""
    from persona.serving.fastpath import CompiledModel
    from persona.serving.model_store import spec_for_model
    from persona.serving.payload_json import parse_json

    head = frame.head(rows)
    model = pyfunc.unwrap_python_model()
    compiled = CompiledModel.from_persona_model(model)
    spec = spec_for_model(load_schema(load_settings().schema_path), rows)(model)
    batch = parse_json(head.to_json(orient="records").encode(), spec)
    repeats = _repeats(rows)
    measured = []
    for path, payload, call in (
        ("in-process", "frame", lambda: pyfunc.predict(head)),
        ("fast-path", "arrays", lambda: compiled.score(batch.numeric, batch.categorical)),
    ):
        latencies = _time_calls(call, repeats)
        measured.append(_record(path, payload, rows, 1, sum(latencies), latencies))
    return measured


def worker_rss_mb(master_pid: int) -> list[float]:
    """Resident memory of a Gunicorn master's workers, from /proc."""
    sizes = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        if fields.get("PPid", "").strip() == str(master_pid):
            sizes.append(int(fields["VmRSS"].split()[0]) / 1024)
    return sizes


def bodies(frame, rows: int) -> dict[str, tuple[bytes, bytes | None, str]]:
    """payload name -> (body for our service, body for mlflow models serve, content type).

    The Arrow and Parquet bodies are what pyarrow and pandas write by default; mlflow models
    serve takes neither (None).
    """
    import pyarrow as pa

    head = frame.head(rows)
    records = json.loads(head.to_json(orient="records"))
    csv_text = head.to_csv(index=False).encode()
    table = pa.Table.from_pandas(head, preserve_index=False)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    parquet = io.BytesIO()
    head.to_parquet(parquet, index=False)
    return {
        "json": (
            json.dumps(records).encode(),
            json.dumps({"dataframe_records": records}).encode(),
            "application/json",
        ),
        "csv": (csv_text, csv_text, "text/csv"),
        "arrow": (sink.getvalue().to_pybytes(), None, "application/vnd.apache.arrow.stream"),
        "parquet": (parquet.getvalue(), None, "application/vnd.apache.parquet"),
    }


def render(measurements: list[Measurement]) -> str:
    lines = [
        f"{'path':<16} {'payload':<7} {'rows':>7} {'clients':>7} {'rows/s':>12} {'p50 ms':>8} "
        f"{'p95 ms':>8} {'/ceiling':>8}",
        "-" * 80,
    ]
    ceiling = {m.rows: m.rows_per_s for m in measurements if m.path == "fast-path"}
    for m in measurements:
        share = f"{m.rows_per_s / ceiling[m.rows]:>8.1%}" if m.rows in ceiling else ""
        lines.append(
            f"{m.path:<16} {m.payload:<7} {m.rows:>7} {m.clients:>7} {m.rows_per_s:>12,.0f} "
            f"{m.p50_ms:>8.2f} {m.p95_ms:>8.2f} {share}"
        )
    return "\n".join(lines)


def ratios(measurements: list[Measurement]) -> dict[str, float]:
    def find(path, payload, rows, clients):
        return next(
            (
                m
                for m in measurements
                if (m.path, m.payload, m.rows, m.clients) == (path, payload, rows, clients)
            ),
            None,
        )

    out = {}
    for payload in ("json", "csv"):
        ours, theirs = find("service", payload, 10_000, 4), find("mlflow", payload, 10_000, 4)
        if ours and theirs:
            out[f"throughput_10k_{payload}_service_over_mlflow"] = (
                ours.rows_per_s / theirs.rows_per_s
            )
    for rows in (10_000, 100_000):  # the service against the in-process ceiling
        ceiling = find("fast-path", "arrays", rows, 1)
        for payload in PAYLOADS:
            for clients in (1, 4):
                ours = find("service", payload, rows, clients)
                if ceiling and ours:
                    out[f"service_over_fast_path_{payload}_{rows // 1000}k_{clients}_clients"] = (
                        ours.rows_per_s / ceiling.rows_per_s
                    )
    single = find("service", "json", 1, 1)
    if single:
        out["single_row_p50_ms_service"] = single.p50_ms
    plain, logged = find("service", "json", 1_000, 1), find("service+log", "json", 1_000, 1)
    if plain and logged:
        out["scoring_log_p50_overhead_1k_json"] = logged.p50_ms / plain.p50_ms - 1
    plain, logged = find("service", "json", 1_000, 4), find("service+log", "json", 1_000, 4)
    if plain and logged:
        out["scoring_log_throughput_cost_1k_json"] = 1 - logged.rows_per_s / plain.rows_per_s
    return out


def main(argv: list[str] | None = None) -> NoReturn:
    parser = argparse.ArgumentParser(
        prog="persona_tools.bench.serve", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved rounds per figure (median reported)"
    )
    parser.add_argument(
        "--mlflow-max-rows",
        type=int,
        default=MLFLOW_MAX_ROWS,
        help="the largest batch sent to mlflow models serve",
    )
    add_server_arguments(parser)
    args = parser.parse_args(argv)
    exit_entry(lambda settings: _bench(args, settings), logger)


def _bench(args: argparse.Namespace, settings: Settings) -> None:
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    tune_allocator()  # the in-process figures under the allocator settings the workers run with
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    name = f"bench-serve-{uuid.uuid4().hex[:6]}"
    processes = []
    try:
        with (
            tracking_server(args) as tracking_uri,
            throwaway_database(args.postgres, "persona_bench_log") as log_db,
            tempfile.TemporaryDirectory() as scratch,
        ):
            params = yaml.safe_load(settings.params_path.read_text())
            params.update(BENCH_SEARCH)
            params_path = Path(scratch) / "params.yaml"
            params_path.write_text(yaml.safe_dump(params))
            bench_settings = settings.with_overrides(
                mlflow_tracking_uri=tracking_uri,
                model_name=name,
                mlflow_experiment=name,
                params_path=params_path,
            )
            logger.info("training the benchmark model (%s)", name)
            context = composition.training_context(bench_settings)
            train.run_training(
                context,
                train.DataRequest(source="synthetic", rows=20_000, seed=7),
                progress=False,
            )
            uri = context.registry.alias_uri(context.alias)
            pyfunc = context.registry.load(uri)
            catalogue = load_catalogue(settings.catalogue_path)
            frame = generate_snapshot(catalogue, max(sizes), "2026-02", seed=3, progress=False)
            features = frame.drop(columns=["snapshot_month", "true_persona"])

            env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "OMP_WAIT_POLICY": "PASSIVE"}
            ours_port, theirs_port = free_port(), free_port()

            def start_ours(port: int, extra: dict[str, str]) -> ServiceProcess:
                service = start_service(
                    [
                        str(VENVS / "scoring/bin/gunicorn"),
                        "-c",
                        str(REPO_ROOT / "03_deployment/gunicorn.conf.py"),
                    ],
                    {
                        **env,
                        "PERSONA_MODEL_NAME": name,
                        "PERSONA_MODEL_ALIAS": bench_settings.model_alias,
                        "PERSONA_SCORING_PORT": str(port),
                        "PERSONA_SCORING_WORKERS": "2",
                        "PERSONA_MAX_BATCH_ROWS": str(max(sizes)),
                        "PERSONA_LOG_LEVEL": "WARNING",
                        **extra,
                    },
                    Path(scratch) / f"service-{port}.log",
                    f"http://127.0.0.1:{port}",
                    f"http://127.0.0.1:{port}/health",
                    60,
                )
                processes.append(service)
                wait_http(f"{service.url}/ready", 60, service.process, service.log)
                return service

            ours = start_ours(ours_port, {})
            logged = start_ours(
                free_port(), {"PERSONA_SCORING_LOG": "true", "PERSONA_DATABASE_URL": log_db}
            )
            theirs = start_service(
                [
                    str(VENVS / "scoring/bin/mlflow"),
                    "models",
                    "serve",
                    "-m",
                    uri,
                    "--env-manager",
                    "local",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(theirs_port),
                    "--workers",
                    "2",
                ],
                {**env, "PATH": f"{VENVS / 'scoring/bin'}{os.pathsep}{env.get('PATH', '')}"},
                Path(scratch) / "mlflow-serve.log",
                f"http://127.0.0.1:{theirs_port}",
                f"http://127.0.0.1:{theirs_port}/ping",
                120,
            )
            processes.append(theirs)

            measurements: list[Measurement] = []
            for rows in sizes:
                logger.info("measuring %d-row batches (%d rounds)", rows, args.rounds)
                measurements += measure_in_process(pyfunc, features, rows)
                for payload, (our_body, their_body, content_type) in bodies(features, rows).items():
                    for clients in (1, 4):
                        targets = {"service": (f"{ours.url}/predict", our_body)}
                        if their_body is not None and rows <= args.mlflow_max_rows:
                            targets["mlflow"] = (f"{theirs.url}/invocations", their_body)
                        if payload == "json":  # what the scoring log costs a request
                            targets["service+log"] = (f"{logged.url}/predict", our_body)
                        # Arrow and Parquet answered in their own format; JSON and CSV in JSON,
                        # as mlflow models serve answers
                        binary = payload in ("arrow", "parquet")
                        rounds: dict[str, list[Measurement]] = {path: [] for path in targets}
                        for _ in range(args.rounds):  # interleaved: both see the same noise
                            for path, (url, body) in targets.items():
                                accept = content_type if binary else "application/json"
                                wall, lat = measure_http(
                                    url, body, content_type, rows, clients, accept=accept
                                )
                                rounds[path].append(
                                    _record(path, payload, rows, clients, wall, lat)
                                )
                        measurements += [median_of(found) for found in rounds.values()]
                    if rows == 1 and their_body is not None:
                        wall, lat = measure_http(
                            f"{theirs.url}/invocations",
                            their_body,
                            content_type,
                            rows,
                            1,
                            keep_alive=False,
                        )
                        measurements.append(_record("mlflow-new-conn", payload, rows, 1, wall, lat))
            rss = worker_rss_mb(ours.process.pid)
    finally:
        for process in processes:
            process.stop()
    summary = {**ratios(measurements), "service_worker_rss_mb": rss}
    out = settings.home / "bench" / f"serve-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {"measurements": [asdict(m) for m in measurements], "summary": summary}, indent=2
        )
    )
    sys.stdout.write(
        render(measurements) + "\n\n" + json.dumps(summary, indent=2) + f"\n\nsaved {out}\n"
    )


if __name__ == "__main__":
    main()
