"""``make bench-monitor``: the drift check at 10k / 100k / 1M current rows, split into stages.

Stages, as the monitor pipeline runs them: load (the month from the PostgreSQL customers
table), quality (the data-quality checks: the schema's rules, unseen levels, null shares),
report (Evidently DataDriftPreset on the default columns, its verdict, the HTML page and the
slow-drift mean shifts), personas (the served model assigns the reference and the current
rows, the persona mix and fit are compared, the persona page and trend chart are written; the
model is a fast search on synthetic customers, fitted before timing) and store (the history read back for the slow-drift CUSUM, the
drift_runs/drift_columns/data_quality rows and the run in the Evidently UI workspace). The
reference is the training sample size of 04_monitoring/drift.yaml. Evidently
is imported and warmed up before timing, so interpreter start-up is excluded. Machines here
are noisy, so each size also times a baseline in the same run: a two-sample KS test per
numeric column and a chi-square per categorical column with scipy on the same rows, and
reports the report stage as a multiple of it.

``--engines`` times the drift verdict of the two engines of ``persona monitor`` instead, on
one month as Parquet at each size (default 1M and 10M rows): ``pandas`` (the month read into
memory, Evidently's DataDriftPreset on all of it, its verdict) and ``spark`` (the Spark
environment's ``persona drift-sketch`` as the monitor runs it, session start included, then the
verdict from the two sketches) on ``local[2]`` and on a standalone master with one worker
(1 core) started for the run. The pandas engine is skipped above ``--pandas-max-rows``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

import numpy as np
import pandas as pd
from scipy import stats

from persona.adapters import database, drift_store, evidently_report
from persona.data.catalogue import load_catalogue
from persona.data.generator import generate_snapshot
from persona.data.schema import DatasetSchema, load_schema
from persona.entry import exit_entry
from persona.flows.persona_mix import stored_rows
from persona.model.preprocess import raw_inputs
from persona.model.pyfunc import PersonaModel
from persona.monitoring import trend
from persona.monitoring.drift import DriftConfig, feature_columns, load_drift_config
from persona.monitoring.personas import compare_personas
from persona.monitoring.quality import check_quality
from persona.monitoring.slow_drift import MonthShifts, cusum, mean_shifts
from persona.settings import Settings
from persona_tools.bench.common import add_postgres_argument, fast_model, throwaway_database

logger = logging.getLogger(__name__)

DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
TABLE = "customers"


@dataclass(frozen=True)
class SizeTiming:
    rows: int
    load: float
    quality: float
    report: float
    personas: float
    store: float
    baseline_scipy: float
    drift_share: float | None

    @property
    def total(self) -> float:
        return self.load + self.quality + self.report + self.personas + self.store

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "total": self.total,
            "report_over_baseline": self.report / self.baseline_scipy,
        }


def scipy_baseline(reference: pd.DataFrame, current: pd.DataFrame, schema: DatasetSchema) -> float:
    """Seconds of the plainest drift check on the same rows: what the report is measured against."""
    started = time.perf_counter()
    for column in schema.numeric:
        stats.ks_2samp(reference[column].dropna(), current[column].dropna())
    for column in schema.categorical:
        table = pd.crosstab(
            np.r_[np.zeros(len(reference)), np.ones(len(current))],
            pd.concat([reference[column], current[column]], ignore_index=True).fillna("<NA>"),
        )
        stats.chi2_contingency(table.to_numpy())
    return time.perf_counter() - started


def time_size(
    rows: int,
    reference: pd.DataFrame,
    engine,
    table: str,
    schema: DatasetSchema,
    config: DriftConfig,
    scratch: Path,
    month: str,
    model: PersonaModel,
) -> SizeTiming:
    columns = feature_columns(schema)
    started = time.perf_counter()
    current = database.read_months(engine, table, schema, [month])
    load = time.perf_counter() - started

    started = time.perf_counter()
    quality = check_quality(current, reference, schema, config.quality)
    quality_seconds = time.perf_counter() - started

    started = time.perf_counter()
    snapshot, report = evidently_report.run_drift_report(reference, current, schema, config)
    result = evidently_report.interpret(report, config, len(reference), len(current))
    evidently_report.save_html(snapshot, scratch / f"drift-{rows}.html")
    numeric = [c for c in columns if c in schema.numeric]
    shifts = mean_shifts(reference, current, numeric)
    report_seconds = time.perf_counter() - started

    started = time.perf_counter()
    persona_step(model, reference, current, schema, config, scratch, month)
    persona_seconds = time.perf_counter() - started

    started = time.perf_counter()
    history = drift_store.read_history(engine, "bench", "1")
    months = [m.month for m in history if m.enough_data]
    slow = cusum([*months, MonthShifts(shifts, len(current), len(reference))], config.slow_drift)
    drift_store.record_run(
        engine,
        {
            "model_name": "bench",
            "model_version": "1",
            "slow_drift": slow.flagged,
            "data_window": month,
            "n_reference": len(reference),
            "n_current": len(current),
            "drift_share": result.drift_share,
            "dataset_drift": result.dataset_drift,
            "enough_data": result.enough_data,
            "action": "benchmark",
            "alert_status": "skipped",
        },
        [{**c.to_dict(), **slow.column_values(c.column)} for c in result.columns],
        [q.to_dict() for q in quality.checks],
    )
    evidently_report.add_to_workspace(scratch / "workspace", "bench", snapshot)
    store = time.perf_counter() - started
    baseline = scipy_baseline(reference[columns], current[columns], schema)
    return SizeTiming(
        rows,
        load,
        quality_seconds,
        report_seconds,
        persona_seconds,
        store,
        baseline,
        result.drift_share,
    )


def persona_step(
    model: PersonaModel,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    schema: DatasetSchema,
    config: DriftConfig,
    scratch: Path,
    month: str,
) -> None:
    """What the monitor adds for personas: assign both samples, compare, write both pages."""
    mix = compare_personas(
        model.predict(None, raw_inputs(reference, schema)),
        model.predict(None, raw_inputs(current, schema)),
        config.personas,
        {p.persona_id: p.name for p in model.personas.values()},
        month,
    )
    (scratch / f"personas-{month}.html").write_text(trend.mix_page(mix, "bench"))
    history = pd.DataFrame(
        [{**row, "run_id": month, "checked_at": datetime.now(UTC)} for row in stored_rows(mix)]
    )
    (scratch / f"trend-{month}.html").write_text(trend.trend_page(history, "bench"))


def render(timings: list[SizeTiming]) -> str:
    header = (
        f"{'rows':>10} {'load':>7} {'quality':>7} {'report':>7} {'persona':>7} {'store':>7} "
        f"{'total':>7} "
        f"{'scipy':>7} {'report/scipy':>12}"
    )
    lines = [header]
    for t in timings:
        lines.append(
            f"{t.rows:>10,} {t.load:>7.2f} {t.quality:>7.2f} {t.report:>7.2f} {t.personas:>7.2f} {t.store:>7.2f} {t.total:>7.2f} "
            f"{t.baseline_scipy:>7.2f} {t.report / t.baseline_scipy:>12.1f}"
        )
    return "\n".join(lines)


@dataclass(frozen=True)
class EngineTiming:
    rows: int
    engine: str  # pandas | spark local[2] | spark cluster (1 worker, 1 core)
    seconds: float | None  # None: skipped
    drifted: tuple[str, ...] = ()


def time_engines(
    sizes: list[int],
    settings: Settings,
    scratch: Path,
    pandas_max_rows: int,
    master: str | None,
) -> list[EngineTiming]:
    """Both engines on the same Parquet month at each size (see the module's docstring)."""
    from persona.adapters.spark_jobs import SparkSketcher
    from persona.flows.train import DataRequest
    from persona.monitoring.sketch import FrameSketch
    from persona.monitoring.sketch_drift import drift_from_sketches, sketch_of
    from persona.services.process_tree import records_folder

    schema = load_schema(settings.schema_path)
    catalogue = load_catalogue(settings.catalogue_path)
    config = load_drift_config(settings.drift_config_path)
    reference = generate_snapshot(
        catalogue, config.reference_sample_rows, "2026-01", seed=1, progress=False
    )
    reference_sketch = sketch_of(reference, schema, None)
    warm = generate_snapshot(catalogue, 2_000, "2025-12", seed=2, progress=False)
    evidently_report.run_drift_report(reference, warm, schema, config)  # imports, not timed
    masters = {"spark local[2]": "local[2]", **({"spark cluster": master} if master else {})}
    timings = []
    for rows in sizes:
        path = scratch / f"month-{rows}.parquet"
        current = generate_snapshot(catalogue, rows, "2026-03", 3, "channel_shift", progress=False)
        current.to_parquet(path, index=False)
        if rows <= pandas_max_rows:
            started = time.perf_counter()
            month = pd.read_parquet(path)
            _, report = evidently_report.run_drift_report(reference, month, schema, config)
            result = evidently_report.interpret(report, config, len(reference), len(month))
            seconds = time.perf_counter() - started
            timings.append(EngineTiming(rows, "pandas", seconds, result.drifted_columns))
            del month
        else:
            timings.append(EngineTiming(rows, "pandas", None))
        del current
        for name, url in masters.items():
            sketcher = SparkSketcher(
                settings.spark_command, url, settings.schema_path, records_folder(settings.home)
            )
            started = time.perf_counter()
            answer = sketcher.sketch(
                DataRequest(source="file", path=str(path)), None, scratch / "job", 20_000
            )
            sketch = FrameSketch.read(Path(answer.sketch_path))
            result = drift_from_sketches(reference_sketch, sketch, schema, config)
            seconds = time.perf_counter() - started
            timings.append(EngineTiming(rows, name, seconds, result.drifted_columns))
            logger.info("%s", timings[-1])
    return timings


def render_engines(timings: list[EngineTiming]) -> str:
    lines = [f"{'rows':>11} {'engine':<16} {'seconds':>8}  drifted columns"]
    for t in timings:
        seconds = "skipped" if t.seconds is None else f"{t.seconds:8.1f}"
        lines.append(f"{t.rows:>11,} {t.engine:<16} {seconds:>8}  {', '.join(t.drifted)}")
    return "\n".join(lines)


def _bench_engines(args: argparse.Namespace, settings: Settings) -> None:
    from persona.services import local_stack
    from persona.services.processes import free_port, stop_process
    from persona.services.spark_cluster import ClusterLayout, cluster_services, wait_for_workers

    sizes = [int(s) for s in (args.sizes or "1000000,10000000").split(",") if s.strip()]
    started = []
    with tempfile.TemporaryDirectory(prefix="persona-bench-engines-") as scratch:
        try:
            master = None
            if not args.no_cluster:
                layout = ClusterLayout(
                    master_port=free_port(),
                    master_ui_port=free_port(),
                    worker_ui_ports=(free_port(),),
                )
                spark_bin = Path(settings.spark_command).resolve().parent
                for service in cluster_services(layout, spark_bin, Path(scratch) / "work"):
                    started.append(local_stack.start(settings, service))
                wait_for_workers(layout.master_ui, 1)
                master = layout.master_url
            timings = time_engines(sizes, settings, Path(scratch), args.pandas_max_rows, master)
        finally:
            for service in reversed(started):
                stop_process(service.process)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    out = settings.home / "bench" / f"drift-engines-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps([asdict(t) for t in timings], indent=2))
    sys.stdout.write(render_engines(timings) + f"\n\nsaved {out}\n")


def main(argv: list[str] | None = None) -> NoReturn:
    parser = argparse.ArgumentParser(
        prog="persona_tools.bench.monitor", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--sizes", help="comma-separated rows (default 10k,100k,1M; --engines: 1M,10M)"
    )
    parser.add_argument(
        "--engines",
        action="store_true",
        help="time the pandas and the Spark drift engines instead (persona monitor --engine)",
    )
    parser.add_argument(
        "--pandas-max-rows", type=int, default=1_000_000, help="--engines: skip pandas above"
    )
    parser.add_argument("--no-cluster", action="store_true", help="--engines: local[2] only")
    add_postgres_argument(parser, "customers database")
    parser.add_argument("--scenario", default="none", help="drift scenario of the current month")
    parser.add_argument(
        "--model-rows", type=int, default=10_000, help="synthetic customers the model is fit on"
    )
    args = parser.parse_args(argv)
    bench = _bench_engines if args.engines else _bench
    exit_entry(lambda settings: bench(args, settings), logger)


def _bench(args: argparse.Namespace, settings: Settings) -> None:
    sizes = [int(s) for s in (args.sizes or ",".join(map(str, DEFAULT_SIZES))).split(",") if s]
    schema = load_schema(settings.schema_path)
    catalogue = load_catalogue(settings.catalogue_path)
    config = load_drift_config(settings.drift_config_path)
    reference = generate_snapshot(
        catalogue, config.reference_sample_rows, "2026-01", seed=1, progress=False
    )
    timings = []
    with (
        throwaway_database(args.postgres, "persona_bench_monitor") as url,
        tempfile.TemporaryDirectory(prefix="persona-bench-monitor-") as scratch,
    ):
        engine = database.make_engine(url)
        # Warm-up (imports Evidently and plotly, compiles their code paths); not timed.
        warm = generate_snapshot(catalogue, 2_000, "2025-12", seed=2, progress=False)
        evidently_report.run_drift_report(reference, warm, schema, config)
        model, _, _ = fast_model(catalogue, args.model_rows, "2025-11", seed=5)
        persona_step(model, reference, warm, schema, config, Path(scratch), "2025-12")
        for index, rows in enumerate(sizes):
            month = f"2026-{index + 2:02d}"
            current = generate_snapshot(
                catalogue, rows, month, seed=3, scenario=args.scenario, progress=False
            )
            database.upsert_frame(engine, TABLE, current, schema, progress=False)
            logger.info("timing %d current rows", rows)
            timing = time_size(
                rows, reference, engine, TABLE, schema, config, Path(scratch), month, model
            )
            logger.info("%s", timing.to_dict())
            timings.append(timing)
        engine.dispose()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    out = settings.home / "bench" / f"monitor-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps([t.to_dict() for t in timings], indent=2))
    sys.stdout.write(render(timings) + f"\n\nsaved {out}\n")


if __name__ == "__main__":
    main()
