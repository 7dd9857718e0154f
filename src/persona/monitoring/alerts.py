"""Alert texts for the drift monitor: pure functions of plain data, no I/O, no evidently.

Kept apart from sending so the wording can be unit-tested and reused (Telegram, logs, a demo).
Texts use Telegram's HTML parse mode: every interpolated value is escaped, free text is cut
to a budget, and the drifted-column list ends in "and N more" so a message always stays under
Telegram's 4096-character limit, whatever the data (a rejected alert is a lost alert).
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable
from dataclasses import dataclass

from persona.monitoring.personas import PersonaMix, describe_mix
from persona.readable import percent

# Telegram rejects texts over 4096 characters (UTF-16 code units after entity parsing). We
# bound the raw HTML, which is never shorter, with some room to spare.
MAX_MESSAGE_CHARS = 4000
_ELLIPSIS = "…"
# Budgets (escaped characters) for each free-text value, so the fixed part stays small.
_NAME, _WINDOW, _METHOD, _VERSION, _REASON, _REPORT = 120, 60, 60, 60, 500, 1000


@dataclass(frozen=True)
class Alert:
    """A message ready to send: the text and how Telegram should parse it."""

    text: str
    parse_mode: str = "HTML"


@dataclass(frozen=True)
class DriftedColumn:
    """One column the drift test flagged; ``score`` is the test's statistic or p-value."""

    name: str
    method: str
    score: float | None = None


ColumnLike = DriftedColumn | tuple[str, str] | tuple[str, str, float | None]


def drift_alert(
    *,
    model_name: str,
    window: str,
    drift_share: float,
    threshold: float,
    drifted_columns: Iterable[ColumnLike],
    new_version: str | int | None = None,
    promoted: bool | None = None,
    promotion_note: str | None = None,
    not_retrained_reason: str | None = None,
    report_link: str | None = None,
    n_columns: int | None = None,
    alias: str | None = None,
    slow_drift: Iterable[str] = (),
    personas: PersonaMix | None = None,
) -> Alert:
    """The alert for a window whose share of drifted columns reached the threshold, or whose
    persona mix or fit moved (``personas``: its flagged personas are named, "Budget Families
    31% → 18%").

    ``drift_share`` and ``threshold`` are fractions (0.25 = 25% of columns). Columns are
    ``(name, method, score)`` tuples or :class:`DriftedColumn`, shown in the order given (the
    caller knows whether high or low scores mean drift). The action: ``new_version`` (with
    ``promoted`` and an optional ``promotion_note``) when a model was retrained, else
    ``not_retrained_reason``. ``alias``: the registry alias a promoted version took.
    ``slow_drift``: the columns the cumulative check flagged, as sentences
    ("annual_income: cumulative shift +0.21 sd over 3 months").
    """
    columns = [_column(item) for item in drifted_columns]
    counted = f"{len(columns)} of {n_columns}" if n_columns is not None else f"{len(columns)}"
    slow = [f"• {_clip(text, _REASON)}" for text in slow_drift]
    kind = "Data drift"  # what the month-vs-reference check found, else the other checks
    if not columns and slow:
        kind = "Slow drift"
    elif not columns and personas is not None and personas.drifted:
        kind = "Persona drift"
    head = [
        f"⚠️ <b>{kind} detected</b>: {_code(model_name, _NAME)}",
        f"Window: <b>{_clip(window, _WINDOW)}</b>",
        f"Drift share: <b>{percent(drift_share, 1)}</b> of columns "
        f"(threshold {percent(threshold, 1)})",
        "",
        f"<b>Drifted columns ({counted}):</b>",
    ]
    action = _action(new_version, promoted, promotion_note, not_retrained_reason, alias)
    tail = ["", f"<b>Action:</b> {action}"]
    if report_link:
        tail.append(f"<b>Report:</b> {_report(report_link)}")
    lines = [
        f"• {_code(c.name, _NAME)}: {_clip(c.method, _METHOD)} {_score(c.score)}" for c in columns
    ] or ["(none listed)"]
    if slow:
        lines += ["", "<b>Slow drift (cumulative, months since the reference):</b>", *slow]
    return Alert(_assemble(head, lines + _persona_lines(personas), tail))


def _persona_lines(mix: PersonaMix | None) -> list[str]:
    """The flagged personas, each with its share before and after and why its fit is worse."""
    if mix is None or not mix.drifted:
        return []
    verdict = "moved" if mix.mix_drifted else "stable"
    lines = [
        "",
        f"<b>Personas ({len(mix.flagged)} flagged; mix {verdict}: "
        f"{_clip(describe_mix(mix), _REASON)}):</b>",
    ]
    for persona in mix.flagged:
        text = (
            f"• <b>{_clip(persona.name, _NAME)}</b> {percent(persona.reference_share)} → "
            f"{percent(persona.current_share)}"
        )
        if persona.fit_reasons:
            text += f": {_clip('; '.join(persona.fit_reasons), _REASON)}"
        lines.append(text)
    lines.append("The persona table and trend chart are logged with the report.")
    return lines


def all_clear_alert(
    *,
    model_name: str,
    window: str,
    drift_share: float,
    threshold: float,
    report_link: str | None = None,
) -> Alert:
    """The alert for a window checked and found below the drift threshold."""
    lines = [
        f"✅ <b>No data drift</b>: {_code(model_name, _NAME)}",
        f"Window: <b>{_clip(window, _WINDOW)}</b>",
        f"Drift share: <b>{percent(drift_share, 1)}</b> of columns "
        f"(threshold {percent(threshold, 1)})",
        "No action taken.",
    ]
    if report_link:
        lines.append(f"<b>Report:</b> {_report(report_link)}")
    return Alert(_assemble(lines, [], []))


def insufficient_data_alert(
    *,
    model_name: str,
    window: str,
    n_current: int,
    min_rows: int,
    report_link: str | None = None,
) -> Alert:
    """The alert for a window too small to test: say so rather than stay silent."""
    lines = [
        f"ℹ️ <b>Drift not checked</b>: {_code(model_name, _NAME)}",
        f"Window: <b>{_clip(window, _WINDOW)}</b>",
        f"Not enough data: <b>{n_current:,}</b> rows, at least {min_rows:,} needed.",
        "No action taken.",
    ]
    if report_link:
        lines.append(f"<b>Report:</b> {_report(report_link)}")
    return Alert(_assemble(lines, [], []))


QualityFailure = tuple[str, str, float, float, Iterable[str]]  # column, rule, share, limit, e.g.


def data_quality_alert(
    *,
    model_name: str,
    window: str,
    n_current: int,
    failures: Iterable[QualityFailure],
) -> Alert:
    """The alert for a month whose data broke its checks: drift was not judged and nothing was
    retrained, so a person must look at the source. Each failure names the column, the rule,
    the share of rows against its limit and a few example values."""
    head = [
        f"🛑 <b>Data quality failed</b>: {_code(model_name, _NAME)}",
        f"Window: <b>{_clip(window, _WINDOW)}</b> ({n_current:,} rows)",
        "",
        "<b>Failed checks:</b>",
    ]
    lines = []
    for column, rule, share, limit, examples in failures:
        shown = ", ".join(str(example) for example in examples)
        lines.append(
            f"• {_code(column, _NAME)}: {_clip(rule, _METHOD)}: <b>{percent(share, 1)}</b> of rows "
            f"(limit {percent(limit, 1)})" + (f", e.g. {_clip(shown, _METHOD)}" if shown else "")
        )
    tail = [
        "",
        "<b>Action:</b> drift not checked, not retrained; fix the data and rerun the month.",
    ]
    return Alert(_assemble(head, lines or ["(none listed)"], tail))


# -- helpers -------------------------------------------------------------------------------


def _size(text: str) -> int:
    """Length as Telegram counts it (UTF-16 code units): emoji count twice."""
    return len(text.encode("utf-16-le")) // 2


def _escape(text: str) -> str:
    # quote=False: Telegram names only &lt; &gt; &amp; &quot;, and text needs no quotes escaped.
    return html.escape(text, quote=False)


def _clip(value: object, budget: int, *, attribute: bool = False) -> str:
    """Escape ``value``, cut so the escaped text fits ``budget`` (never mid-entity)."""
    raw = str(value)

    def escape(text: str) -> str:
        escaped = _escape(text)
        return escaped.replace('"', "&quot;") if attribute else escaped

    escaped = escape(raw)
    if _size(escaped) <= budget:
        return escaped
    pieces: list[str] = []
    used = _size(_ELLIPSIS)
    for char in raw:
        piece = escape(char)
        if used + _size(piece) > budget:
            break
        pieces.append(piece)
        used += _size(piece)
    return "".join(pieces) + _ELLIPSIS


def _code(value: object, budget: int) -> str:
    return f"<code>{_clip(value, budget)}</code>"


def _score(score: float | None) -> str:
    if score is None or not math.isfinite(score):
        return "(score n/a)"
    return f"{score:.3g}"


def _column(item: ColumnLike) -> DriftedColumn:
    if isinstance(item, DriftedColumn):
        return item
    name, method, *rest = item
    return DriftedColumn(str(name), str(method), rest[0] if rest else None)


def _action(
    version: str | int | None,
    promoted: bool | None,
    note: str | None,
    not_retrained_reason: str | None,
    alias: str | None = None,
) -> str:
    if version is None:
        if not_retrained_reason:
            return f"not retrained: {_clip(not_retrained_reason, _REASON)}."
        return "none."
    shown = f"<b>{_clip(version, _VERSION)}</b>"
    if promoted:
        text = f"retrained, version {shown} promoted to production"
        if alias:
            text += f" (@{_clip(alias, _VERSION)})"
    else:
        text = f"retrained, version {shown} registered but <b>not</b> promoted"
    if note:
        text += f" ({_clip(note, _REASON)})"
    return text + "."


def _report(report: str) -> str:
    if report.startswith(("http://", "https://")):
        return f'<a href="{_clip(report, _REPORT, attribute=True)}">open report</a>'
    return _code(report, _REPORT)


def _assemble(head: list[str], items: list[str], tail: list[str]) -> str:
    """Join the parts, dropping list items (with an "and N more" line) to fit the limit."""
    used = _size("\n".join(head + tail)) + 1
    kept: list[str] = []
    for index, item in enumerate(items):
        after = len(items) - index - 1
        # Each kept item leaves room for the "and N more" line a later item may need.
        reserve = _size(f"\n… and {after} more") if after else 0
        if used + _size(item) + 1 + reserve > MAX_MESSAGE_CHARS:
            kept.append(f"… and {len(items) - index} more")
            break
        kept.append(item)
        used += _size(item) + 1
    text = "\n".join(head + kept + tail)
    # The budgets keep the fixed part far below the limit; this is the last guard.
    assert _size(text) <= MAX_MESSAGE_CHARS, "alert text over budget"
    return text
