"""``python -m persona_tools.bench.personas``: persona-monitoring defaults and cost, measured.

1. False alarms: at the ``personas:`` defaults of 04_monitoring/drift.yaml, how many fresh
   no-drift months (seeds no test uses) flag a persona or the mix.
2. Detection: what each drift scenario of 00_create_data/personas.yaml flags.
3. Cost: the persona step of one check (assign the reference and the current rows with the
   model, compare, write the run's page; then the trend page, whose first call imports
   plotly) against the Evidently report step (report, verdict, HTML) on the same rows, at
   100k current rows by default. Loading the model from MLflow is not included (a
   pyfunc of this size loads in about 0.01 s from local files).

The model is searched in memory with the fast test parameters (tests/fixtures/params_fast.yaml)
on ``--train-rows`` synthetic customers; its reference sample is drawn as training draws it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from persona.data.catalogue import load_catalogue
from persona.data.generator import generate_snapshot
from persona.flows.train import reference_sample
from persona.model.preprocess import raw_inputs
from persona.monitoring import trend
from persona.monitoring.drift import load_drift_config
from persona.monitoring.personas import compare_personas
from persona_tools import REPO_ROOT
from persona_tools.bench.common import fast_model

SCENARIOS = ("none", "income_inflation", "mix_shift", "new_persona", "channel_shift")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-rows", type=int, default=25_000)
    parser.add_argument("--rows", type=int, default=5_000, help="rows of each checked month")
    parser.add_argument("--fresh-months", type=int, default=25)
    parser.add_argument("--first-seed", type=int, default=9_100)
    parser.add_argument("--timing-rows", type=int, default=100_000)
    args = parser.parse_args(argv)

    catalogue = load_catalogue(REPO_ROOT / "00_create_data/personas.yaml")
    schema = catalogue.schema
    drift = load_drift_config(REPO_ROOT / "04_monitoring/drift.yaml")
    config = drift.personas
    model, train, winner = fast_model(catalogue, args.train_rows, "2026-01", seed=11)
    reference = reference_sample(train, schema, drift.reference_sample_rows, 11)
    assigned_reference = model.predict(None, raw_inputs(reference, schema))
    names = {p.persona_id: p.name for p in model.personas.values()}

    def check(month: pd.DataFrame):
        current = model.predict(None, raw_inputs(month, schema))
        return compare_personas(assigned_reference, current, config, names)

    fresh = []
    for seed in range(args.first_seed, args.first_seed + args.fresh_months):
        mix = check(generate_snapshot(catalogue, args.rows, "2026-03", seed, progress=False))
        fresh.append(
            {
                "seed": seed,
                "flagged": [p.name for p in mix.flagged],
                "mix_score": round(mix.score, 4),
                "max_share_change": round(max(abs(p.change) for p in mix.personas), 4),
                "max_distance_ratio": round(
                    max(p.distance_ratio for p in mix.personas if p.n_current >= 50), 3
                ),
                "max_low_confidence_rise": round(
                    max(
                        p.low_confidence_current - p.low_confidence_reference for p in mix.personas
                    ),
                    4,
                ),
            }
        )
    scenarios = {}
    for scenario in SCENARIOS:
        month = generate_snapshot(catalogue, args.rows, "2026-03", 4242, scenario, progress=False)
        mix = check(month)
        scenarios[scenario] = {
            "mix": f"{mix.method} {mix.score:.3f} drifted={mix.mix_drifted}",
            "flagged": {p.name: p.reason for p in mix.flagged},
        }
    summary = {
        "model": winner,
        "reference_rows": len(reference),
        "fresh_months_flagging": sum(bool(f["flagged"]) or f["mix_score"] >= 0.1 for f in fresh),
        "fresh_months": len(fresh),
        "fresh_worst": {
            key: max(f[key] for f in fresh)
            for key in (
                "mix_score",
                "max_share_change",
                "max_distance_ratio",
                "max_low_confidence_rise",
            )
        },
        "scenarios": scenarios,
        "timing": _timing(args.timing_rows, catalogue, reference, model, config, drift),
    }
    sys.stdout.write(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")


def _timing(rows, catalogue, reference, model, config, drift) -> dict[str, float]:
    from persona.adapters import evidently_report

    schema = catalogue.schema
    month = generate_snapshot(catalogue, rows, "2026-03", 77, "none", progress=False)
    with tempfile.TemporaryDirectory() as scratch:
        evidently_report.run_drift_report(reference.head(2000), month.head(2000), schema, drift)
        started = time.perf_counter()
        snapshot, report = evidently_report.run_drift_report(reference, month, schema, drift)
        evidently_report.interpret(report, drift, len(reference), len(month))
        evidently_report.save_html(snapshot, Path(scratch) / "drift.html")
        report_seconds = time.perf_counter() - started

        started = time.perf_counter()
        mix = compare_personas(
            model.predict(None, raw_inputs(reference, schema)),
            model.predict(None, raw_inputs(month, schema)),
            config,
        )
        (Path(scratch) / "personas.html").write_text(trend.mix_page(mix, "bench"))
        persona_seconds = time.perf_counter() - started

        started = time.perf_counter()  # the trend page logged with the run (plotly import)
        history = pd.DataFrame(
            [
                {**p.to_dict(), "run_id": "r", "checked_at": "2026-04-01", "period": "2026-03"}
                | {"mix_method": mix.method, "mix_score": mix.score}
                | {"mix_threshold": mix.threshold, "mix_drifted": mix.mix_drifted}
                for p in mix.personas
            ]
        )
        (Path(scratch) / "trend.html").write_text(trend.trend_page(history, "bench"))
        trend_seconds = time.perf_counter() - started
    return {
        "current_rows": rows,
        "reference_rows": len(reference),
        "evidently_report_s": round(report_seconds, 3),
        "persona_step_s": round(persona_seconds, 3),
        "persona_over_report": round(persona_seconds / report_seconds, 3),
        "trend_page_s": round(trend_seconds, 3),
        "with_trend_over_report": round((persona_seconds + trend_seconds) / report_seconds, 3),
    }


if __name__ == "__main__":
    main()
