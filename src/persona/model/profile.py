"""Persona profiles a person reads: a table in original units and one bar panel per persona."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from persona.data.schema import DatasetSchema  # noqa: E402


def profile_table(frame: pd.DataFrame, names: np.ndarray, schema: DatasetSchema) -> pd.DataFrame:
    """Share, size, numeric means and categorical modes per persona, in original units."""
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
    return table.sort_values("customers", ascending=False)


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
