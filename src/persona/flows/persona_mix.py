"""Persona monitoring in the monitor flow: assign both samples with the served model, compare,
write the run's page; and the trend report over the stored history (``persona monitor report``).

Application layer: takes the training context's ports and plain values; the comparison itself
is ``persona.monitoring.personas``, the pages ``persona.monitoring.trend``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from persona.errors import InvalidInputError
from persona.flows import train
from persona.model.preprocess import raw_inputs
from persona.monitoring import trend
from persona.monitoring.personas import PersonaConfig, PersonaMix, compare_personas, period_of
from persona.ports import DriftStore

logger = logging.getLogger(__name__)

TREND_RUNS = 500  # the newest runs a trend chart reads


def check_personas(
    training: train.TrainingContext,
    model_version: str,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    config: PersonaConfig,
) -> PersonaMix | None:
    """The persona mix and fit of ``current`` against the reference sample, as the served
    model (the version the reference belongs to) assigns them; None when switched off or when
    the served version changed since the reference was fetched (the two would not match)."""
    if not config.enabled:
        return None
    champion = train.load_champion(training)
    if champion is None or champion.version != model_version:
        logger.warning(
            "persona check skipped: @%s now serves %s, the reference is of v%s",
            training.alias,
            "nothing" if champion is None else f"v{champion.version}",
            model_version,
        )
        return None
    schema = training.schema
    model = champion.model
    names = {
        p.persona_id: champion.renames.get(p.persona_id, p.name)
        for p in model.unwrap_python_model().personas.values()
    }
    months = current[schema.month_column] if schema.month_column in current else pd.Series([])
    mix = compare_personas(
        model.predict(raw_inputs(reference, schema)),
        model.predict(raw_inputs(current, schema)),
        config,
        names,
        period_of(months),
    )
    logger.info(
        "persona mix: %s %.3g (threshold %g), %d of %d persona(s) flagged",
        mix.method,
        mix.score,
        mix.threshold,
        len(mix.flagged),
        len(mix.personas),
    )
    return mix


def run_pages(
    mix: PersonaMix,
    store: DriftStore,
    model_name: str,
    model_version: str,
    folder: Path,
    stamp: str,
) -> list[Path]:
    """The pages logged with the drift run beside the Evidently report, so the alert's link
    reaches them: this run's persona table, and the trend chart as of this run (the stored
    history plus this run, which is stored only after the check)."""
    table = folder / f"personas-{stamp}.html"
    title = f"Persona mix of {model_name} v{model_version}"
    table.write_text(trend.mix_page(mix, title), encoding="utf-8")
    now = pd.DataFrame(
        [{**row, "run_id": "", "checked_at": datetime.now(UTC)} for row in stored_rows(mix)]
    )
    history = store.persona_history(model_name, TREND_RUNS)
    frame = now if history.empty else pd.concat([history, now], ignore_index=True)
    chart = folder / f"persona-trend-{stamp}.html"
    chart.write_text(trend.trend_page(frame, f"Persona trend of {model_name}"), encoding="utf-8")
    return [table, chart]


def write_trend_report(
    store: DriftStore, model_name: str, path: Path, limit: int = TREND_RUNS
) -> Path:
    """The trend chart of the model's persona shares and fit per month, from its history."""
    history = store.persona_history(model_name, limit)
    if history.empty:
        raise InvalidInputError(
            f"no persona history of {model_name!r} yet: monitor a month first "
            "(make monitor-local MONTH=YYYY-MM)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    title = f"Persona trend of {model_name}"
    path.write_text(trend.trend_page(history, title), encoding="utf-8")
    logger.info("persona trend over %d run(s) written to %s", history["run_id"].nunique(), path)
    return path


def stored_rows(mix: PersonaMix) -> list[Mapping[str, object]]:
    """The ``persona_mix`` rows of one run: each persona, with the run's mix verdict."""
    verdict = {
        "period": mix.period,
        "mix_method": mix.method,
        "mix_score": mix.score,
        "mix_threshold": mix.threshold,
        "mix_drifted": mix.mix_drifted,
    }
    return [{**row.to_dict(), **verdict} for row in mix.personas]
