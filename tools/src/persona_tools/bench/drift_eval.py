"""``make bench-drift``: what the drift checks catch and what they cost in false alarms.

Two checks at the settings of 04_monitoring/drift.yaml: month vs reference (Evidently's
DataDriftPreset, judged by ``interpret_report``) and the slow-drift CUSUM over consecutive
months (``persona.monitoring.slow_drift``); a month counts as drifted when either flags, as in
the monitor flow. Pure pieces only: months from ``generate_snapshot``, no database, no MLflow.

It prints (1) each named scenario at each size, one month against the reference;
(2) false alarms over fresh no-drift months: sequences of consecutive months of the same
customers, each sequence with its own 20k reference sample, on seeds the tests do not use;
(3) the first month at which a 3% monthly income rise is flagged, read two ways: compounding
(month t = 1.03^t x the reference incomes) and level (every month 3% above the reference).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import NoReturn

import pandas as pd

from persona.adapters import evidently_report
from persona.data.catalogue import Catalogue, load_catalogue
from persona.data.generator import SCENARIOS, generate_snapshot
from persona.entry import exit_entry
from persona.monitoring.drift import DriftConfig, feature_columns, load_drift_config
from persona.monitoring.slow_drift import MonthShifts, cusum, mean_shifts
from persona.settings import Settings

logger = logging.getLogger(__name__)

MONTHS = [f"2031-{m:02d}" for m in range(1, 13)]


@dataclass(frozen=True)
class MonthVerdict:
    vs_reference: bool
    slow: bool

    @property
    def drifted(self) -> bool:
        return self.vs_reference or self.slow


class Evaluator:
    """One reference sample; judges months against it, the CUSUM over the months so far."""

    def __init__(self, catalogue: Catalogue, config: DriftConfig, reference: pd.DataFrame):
        self.schema, self.config, self.reference = catalogue.schema, config, reference
        self.columns = feature_columns(self.schema)
        self.numeric = [c for c in self.columns if c in self.schema.numeric]

    def vs_reference(self, current: pd.DataFrame) -> bool:
        _, report = evidently_report.run_drift_report(
            self.reference[self.columns], current[self.columns], self.schema, self.config
        )
        result = evidently_report.interpret(report, self.config, len(self.reference), len(current))
        return result.dataset_drift

    def month(self, current: pd.DataFrame) -> MonthShifts:
        shifts = mean_shifts(self.reference, current, self.numeric)
        return MonthShifts(shifts, len(current), len(self.reference))

    def sequence(self, frames: list[pd.DataFrame], evidently: bool = True) -> list[MonthVerdict]:
        months, verdicts = [], []
        for frame in frames:
            months.append(self.month(frame))
            slow = cusum(months, self.config.slow_drift).flagged
            verdicts.append(MonthVerdict(evidently and self.vs_reference(frame), slow))
        return verdicts


def _reference(catalogue: Catalogue, config: DriftConfig, seed: int) -> pd.DataFrame:
    rows = config.reference_sample_rows
    return generate_snapshot(catalogue, rows, "2030-12", seed=seed, progress=False)


def _months(catalogue, rows, population, count, factors=None) -> list[pd.DataFrame]:
    frames = []
    for index in range(count):
        frame = generate_snapshot(catalogue, rows, MONTHS[index], population, progress=False)
        if factors is not None:
            frame["annual_income"] = frame["annual_income"] * factors[index]
        frames.append(frame)
    return frames


def scenarios(catalogue, config, sizes, seed) -> list[dict]:
    evaluator = Evaluator(catalogue, config, _reference(catalogue, config, seed))
    rows = []
    for scenario in [s for s in SCENARIOS if s != "none"]:
        for size in sizes:
            current = generate_snapshot(
                catalogue, size, MONTHS[0], seed + 1, scenario, progress=False
            )
            (verdict,) = evaluator.sequence([current])
            rows.append({"scenario": scenario, "rows": size, **asdict(verdict)})
    return rows


def false_alarms(catalogue, config, sizes, sequences, months, seed) -> list[dict]:
    rows = []
    for size in sizes:
        counts = {"vs_reference": 0, "slow": 0, "either": 0, "sequences_flagged": 0}
        for index in range(sequences):
            evaluator = Evaluator(catalogue, config, _reference(catalogue, config, seed + index))
            frames = _months(catalogue, size, seed + 500 + index, months)
            verdicts = evaluator.sequence(frames)
            counts["vs_reference"] += sum(v.vs_reference for v in verdicts)
            counts["slow"] += sum(v.slow for v in verdicts)
            counts["either"] += sum(v.drifted for v in verdicts)
            counts["sequences_flagged"] += any(v.drifted for v in verdicts)
        rows.append({"rows": size, "months": sequences * months, "sequences": sequences, **counts})
    return rows


def inflation(catalogue, config, sizes, references, months, seed) -> list[dict]:
    rows = []
    shapes = {
        "compounding": [1.03 ** (t + 1) for t in range(months)],
        "level": [1.03] * months,
    }
    for size in sizes:
        for shape, factors in shapes.items():
            firsts = {"vs_reference": [], "slow": [], "either": []}
            for index in range(references):
                evaluator = Evaluator(
                    catalogue, config, _reference(catalogue, config, seed + index)
                )
                frames = _months(catalogue, size, seed + 500 + index, months, factors)
                verdicts = evaluator.sequence(frames)
                for key, flagged in (
                    ("vs_reference", [v.vs_reference for v in verdicts]),
                    ("slow", [v.slow for v in verdicts]),
                    ("either", [v.drifted for v in verdicts]),
                ):
                    firsts[key].append(next((t + 1 for t, f in enumerate(flagged) if f), None))
            rows.append({"rows": size, "shape": shape, **firsts})
    return rows


def _first(values: list[int | None]) -> str:
    return ",".join("-" if v is None else str(v) for v in values)


def render(report: dict) -> str:
    lines = ["1. Named scenarios, one month vs the reference (x = flagged)"]
    lines.append(f"{'scenario':<18}{'rows':>8}  {'vs_ref':>6} {'slow':>5} {'either':>6}")
    for r in report["scenarios"]:
        marks = ["x" if r[k] else "." for k in ("vs_reference", "slow")]
        either = "x" if r["vs_reference"] or r["slow"] else "."
        lines.append(f"{r['scenario']:<18}{r['rows']:>8,}  {marks[0]:>6} {marks[1]:>5} {either:>6}")
    lines += ["", "2. False alarms over fresh no-drift months (months flagged / months)"]
    lines.append(f"{'rows':>8} {'months':>7} {'vs_ref':>7} {'slow':>5} {'either':>7} {'seqs':>9}")
    for r in report["false_alarms"]:
        lines.append(
            f"{r['rows']:>8,} {r['months']:>7} {r['vs_reference']:>7} {r['slow']:>5} "
            f"{r['either']:>7} {r['sequences_flagged']:>4}/{r['sequences']:<4}"
        )
    lines += ["", "3. First month a 3%/month income rise is flagged, per reference (- = never)"]
    lines.append(f"{'rows':>8} {'shape':<12} {'vs_ref':<14} {'slow':<14} {'either':<14}")
    for r in report["inflation"]:
        lines.append(
            f"{r['rows']:>8,} {r['shape']:<12} {_first(r['vs_reference']):<14} "
            f"{_first(r['slow']):<14} {_first(r['either']):<14}"
        )
    return "\n".join(lines)


def _sizes(text: str) -> list[int]:
    return [int(s) for s in text.split(",") if s.strip()]


def main(argv: list[str] | None = None) -> NoReturn:
    parser = argparse.ArgumentParser(
        prog="persona_tools.bench.drift_eval", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--sizes", default="1000,5000,20000", help="scenario month sizes")
    parser.add_argument("--fresh-sizes", default="1000,10000", help="no-drift month sizes")
    parser.add_argument("--sequences", type=int, default=10, help="fresh sequences per size")
    parser.add_argument("--months", type=int, default=5, help="months per fresh sequence")
    parser.add_argument("--inflation-sizes", default="1000,5000,10000,20000")
    parser.add_argument("--references", type=int, default=3, help="references for inflation")
    parser.add_argument("--inflation-months", type=int, default=6)
    parser.add_argument("--seed", type=int, default=7100, help="first seed (tests use < 1000)")
    args = parser.parse_args(argv)
    exit_entry(lambda settings: _bench(args, settings), logger)


def _bench(args: argparse.Namespace, settings: Settings) -> None:
    catalogue = load_catalogue(settings.catalogue_path)
    config = load_drift_config(settings.drift_config_path)
    if max(args.months, args.inflation_months) > len(MONTHS):
        raise SystemExit(f"at most {len(MONTHS)} months per sequence")
    report = {
        "scenarios": scenarios(catalogue, config, _sizes(args.sizes), args.seed),
        "false_alarms": false_alarms(
            catalogue, config, _sizes(args.fresh_sizes), args.sequences, args.months, args.seed
        ),
        "inflation": inflation(
            catalogue,
            config,
            _sizes(args.inflation_sizes),
            args.references,
            args.inflation_months,
            args.seed,
        ),
    }
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    out = settings.home / "bench" / f"drift-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), **report}, indent=2))
    sys.stdout.write(render(report) + f"\n\nsaved {out}\n")


if __name__ == "__main__":
    main()
