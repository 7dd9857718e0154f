"""Pages people open: one run's persona mix, and the trend of shares and fit over months.

Both are self-contained HTML files (no network needed to open them): the run's page is a
plain table logged with the drift run beside the Evidently report; the trend page embeds
plotly (installed with evidently in every environment that monitors) and is what
``persona monitor report`` / ``make report`` writes.
"""

from __future__ import annotations

import html
import math
from datetime import datetime

import pandas as pd

from persona.monitoring.personas import PersonaMix, describe_mix
from persona.readable import percent

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; margin-top: 1rem; }
th, td { border-bottom: 1px solid #ddd; padding: .35rem .7rem; text-align: right; }
th:first-child, td:first-child, td.reason { text-align: left; }
tr.flagged { background: #fff1e6; }
.bar { display: inline-block; height: .7rem; background: #4c78a8; vertical-align: middle; }
.bar.current { background: #f58518; }
.verdict.drift { color: #b00020; font-weight: bold; }
"""


def _number(value: float, digits: int = 2) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _document(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>\n"
    )


def mix_page(mix: PersonaMix, title: str) -> str:
    """One run: each persona's share (bars, reference blue, current orange) and fit."""
    verdict = "drifted" if mix.mix_drifted else "stable"
    rows = []
    for p in sorted(mix.personas, key=lambda p: -p.reference_share):
        bars = (
            f"<span class='bar' style='width:{p.reference_share * 200:.0f}px'></span><br>"
            f"<span class='bar current' style='width:{p.current_share * 200:.0f}px'></span>"
        )
        rows.append(
            f"<tr class='{'flagged' if p.flagged else ''}'>"
            f"<td>{html.escape(p.name)}</td><td>{bars}</td>"
            f"<td>{percent(p.reference_share)}</td><td>{percent(p.current_share)}</td>"
            f"<td>{p.change * 100:+.1f}</td>"
            f"<td>{_number(p.mean_distance_reference)} → {_number(p.mean_distance_current)}</td>"
            f"<td>{_number(p.p90_distance_reference)} → {_number(p.p90_distance_current)}</td>"
            f"<td>{percent(p.low_confidence_reference)} → {percent(p.low_confidence_current)}</td>"
            f"<td class='reason'>{html.escape(p.reason or '')}</td></tr>"
        )
    period = f" — {html.escape(mix.period)}" if mix.period else ""
    body = (
        f"<p class='verdict {'drift' if mix.mix_drifted else ''}'>Persona mix{period}: "
        f"{verdict} ({html.escape(describe_mix(mix))}); {len(mix.flagged)} of "
        f"{len(mix.personas)} persona(s) flagged.</p>"
        "<table><tr><th>Persona</th><th>Share</th><th>Reference</th><th>Current</th>"
        "<th>Change (points)</th><th>Mean distance</th><th>p90 distance</th>"
        "<th>Low-confidence</th><th>Flagged because</th></tr>" + "".join(rows) + "</table>"
    )
    return _document(title, body)


def trend_frame(history: pd.DataFrame) -> pd.DataFrame:
    """One row per month and persona: the latest run of each month (a rerun replaces it).

    ``history``: ``persona_mix`` rows joined with their run's ``checked_at``. A run's month is
    its ``period`` (the month of its rows), else the day it ran.
    """
    frame = history.copy()
    checked = pd.to_datetime(frame["checked_at"], utc=True)
    frame["month"] = frame["period"].where(frame["period"].notna(), checked.dt.strftime("%Y-%m-%d"))
    frame["checked_at"] = checked
    latest = frame.sort_values("checked_at").groupby("month")["run_id"].last()
    frame = frame[frame["run_id"].isin(set(latest))]
    return frame.sort_values(["month", "persona_name"]).reset_index(drop=True)


def trend_page(history: pd.DataFrame, title: str) -> str:
    """Shares, fit and the mix test per month, one line per persona (by name, which retrains
    keep); flagged points are drawn as large diamonds and say why on hover."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    frame = trend_frame(history)
    figure = make_subplots(
        rows=3,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.07,
        subplot_titles=(
            "Share of customers per persona (%)",
            "Fit: mean distance to the persona's centre",
            "Persona mix test",
        ),
    )
    for index, (name, rows) in enumerate(frame.groupby("persona_name", sort=True)):
        color = _PALETTE[index % len(_PALETTE)]
        flagged = rows["flagged"].fillna(False).astype(bool)
        marker = {
            "color": color,
            "size": [13 if f else 7 for f in flagged],
            "symbol": ["diamond" if f else "circle" for f in flagged],
        }
        hover = [
            f"{html.escape(str(name))}<br>{r or 'not flagged'}"
            for r in rows["reason"].fillna("").map(html.escape)
        ]
        for line, column, scale in ((1, "current_share", 100), (2, "mean_distance_current", 1)):
            figure.add_trace(
                go.Scatter(
                    x=rows["month"],
                    y=rows[column] * scale,
                    name=str(name),
                    legendgroup=str(name),
                    showlegend=line == 1,
                    mode="lines+markers",
                    line={"color": color},
                    marker=marker,
                    text=hover,
                    hovertemplate="%{x}: %{y:.3g}<br>%{text}<extra></extra>",
                ),
                row=line,
                col=1,
            )
    runs = frame.drop_duplicates("run_id").sort_values("month")
    figure.add_trace(
        go.Bar(
            x=runs["month"],
            y=runs["mix_score"],
            name="mix score",
            marker={"color": ["#b00020" if d else "#9d9d9d" for d in runs["mix_drifted"]]},
            text=runs["mix_method"],
            hovertemplate="%{x}: %{text} %{y:.3g}<extra></extra>",
        ),
        row=3,
        col=1,
    )
    figure.add_trace(
        go.Scatter(
            x=runs["month"],
            y=runs["mix_threshold"],
            name="mix threshold",
            mode="lines",
            line={"color": "#b00020", "dash": "dash"},
        ),
        row=3,
        col=1,
    )
    figure.update_xaxes(type="category")
    figure.update_layout(height=950, hovermode="closest", margin={"t": 60})
    made = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    body = (
        f"<p>{len(runs)} month(s), {frame['persona_name'].nunique()} persona(s); the latest run "
        f"of each month. Written {html.escape(made)}.</p>"
        + figure.to_html(full_html=False, include_plotlyjs=True)
    )
    return _document(title, body)


_PALETTE = (
    "#4c78a8",
    "#f58518",
    "#54a24b",
    "#e45756",
    "#72b7b2",
    "#eeca3b",
    "#b279a2",
    "#ff9da6",
    "#9d755d",
    "#bab0ac",
)
