"""Persona profiles a person reads: a table in original units, the evidence that sets each
persona apart (why a new one got its name), and one bar panel per persona."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from persona.data.schema import DatasetSchema  # noqa: E402
from persona.model.naming import MIN_EFFECT, distinguishing, segment_evidence  # noqa: E402

EVIDENCE_COLUMNS = ["persona", "rank", "feature", "level", "in words", "segment", "rest", "effect"]


def evidence_table(frame: pd.DataFrame, names: np.ndarray, schema: DatasetSchema) -> pd.DataFrame:
    """Per persona, every feature that sets it apart from the other customers, strongest first.

    The rule that names new personas (``persona.model.naming.segment_evidence``), on the same
    rows, so a descriptive name's features are all here (usually its persona's first rows).
    ``segment`` and ``rest`` are means in the feature's unit, or the level's share.
    """
    rows = []
    for persona, items in segment_evidence(frame, names, schema).items():
        for rank, e in enumerate(distinguishing(items), start=1):
            rows.append(
                {
                    "persona": persona,
                    "rank": rank,
                    "feature": e.feature,
                    "level": e.level or "",
                    "in words": e.phrase,
                    "segment": round(e.segment, 4),
                    "rest": round(e.rest, 4),
                    "effect": round(e.effect, 2),
                    "evidence": e.sentence(),
                }
            )
    return pd.DataFrame(rows, columns=[*EVIDENCE_COLUMNS, "evidence"])


def profile_table(
    frame: pd.DataFrame,
    names: np.ndarray,
    schema: DatasetSchema,
    evidence: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Share, size, what sets it apart, numeric means and categorical modes per persona, in
    original units. ``evidence`` is ``evidence_table`` of the same rows (computed when None)."""
    if evidence is None:
        evidence = evidence_table(frame, names, schema)
    grouped = frame.assign(persona=names).groupby("persona")
    table = grouped[list(schema.numeric)].mean().round(2)
    for name in schema.categorical:
        table[f"{name} (mode)"] = grouped[name].agg(
            lambda s: (
                f"{s.mode().iloc[0]} ({(s == s.mode().iloc[0]).mean():.0%})"
                if s.notna().any()
                else ""
            )
        )
    table.insert(0, "customers", grouped.size())
    table.insert(1, "share", (grouped.size() / len(frame)).round(4))
    said = evidence.assign(
        said=evidence["evidence"] + evidence["effect"].map(lambda v: f" [effect {v:+.1f}]")
    )
    table.insert(2, "evidence", said.groupby("persona")["said"].agg("; ".join))
    table["evidence"] = table["evidence"].fillna("")
    return table.sort_values("customers", ascending=False)


def profile_html(table: pd.DataFrame, evidence: pd.DataFrame) -> str:
    """The report page: the profile table, then the evidence per persona with how it is read."""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Persona profiles</title></head><body>
<h1>Persona profiles</h1>
{table.to_html()}
<h2>What sets each persona apart</h2>
<p>Effect: for a number, (persona mean &minus; mean of all other customers) / the feature's
standard deviation over all customers; for a category, Cohen's h of the share of its most
over-represented level. A feature with |effect| &ge; {MIN_EFFECT} sets a persona apart; a persona
that matches no known one is named after its strongest such features, in this order.</p>
{evidence.to_html(index=False)}
</body></html>
"""


def plot_profiles(
    table: pd.DataFrame, frame: pd.DataFrame, schema: DatasetSchema, path: Path
) -> Path:
    """One panel per persona: each feature's mean as a z-score vs all customers, labelled in units."""
    numeric = list(schema.numeric)
    overall_mean = frame[numeric].mean()
    overall_sd = frame[numeric].std().replace(0, 1)
    n = len(table)
    cols = min(3, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(
        rows, cols, figsize=(5.2 * cols, 0.45 * len(numeric) * rows + 1.5 * rows), squeeze=False
    )
    for ax, (persona, row) in zip(axes.flat, table.iterrows(), strict=False):
        z = (row[numeric].astype(float) - overall_mean) / overall_sd
        colors = ["#2b8cbe" if v >= 0 else "#e34a33" for v in z]
        ax.barh(numeric, z, color=colors)
        ax.axvline(0, color="black", linewidth=0.8)
        for y, feature in enumerate(numeric):
            unit = schema.numeric[feature].unit
            ax.text(z.iloc[y], y, f" {row[feature]:,.0f} {unit}".rstrip(), va="center", fontsize=7)
        ax.set_title(f"{persona} ({row['share']:.0%})", fontsize=9)
        ax.invert_yaxis()
        ax.set_xlabel("z-score vs all customers")
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
