"""Alert texts: what they say, that they are valid Telegram HTML, and that they always fit."""

from __future__ import annotations

import re

import pytest

from persona.monitoring.alerts import (
    MAX_MESSAGE_CHARS,
    Alert,
    DriftedColumn,
    all_clear_alert,
    drift_alert,
    insufficient_data_alert,
)
from persona_tools.telegram_stub import telegram_html_text


def _utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _drift(**overrides) -> Alert:
    arguments = {
        "model_name": "persona-segmentation",
        "window": "2026-03",
        "drift_share": 0.4286,
        "threshold": 0.3,
        "drifted_columns": [
            DriftedColumn("age", "wasserstein", 0.1834),
            ("monthly_spend", "psi", 0.27),
            ("visits", "ks"),
        ],
        "new_version": 7,
        "promoted": True,
        "report_link": "https://reports.example.com/drift/2026-03.html",
        "n_columns": 7,
    }
    return drift_alert(**{**arguments, **overrides})


def test_drift_alert_names_model_window_share_columns_action_and_report():
    alert = _drift()
    assert alert.parse_mode == "HTML"
    visible = telegram_html_text(alert.text)
    assert "Data drift detected" in visible
    assert "persona-segmentation" in visible
    assert "2026-03" in visible
    assert "42.9%" in visible and "threshold 30%" in visible
    assert "Drifted columns (3 of 7)" in visible
    assert "age: wasserstein 0.183" in visible
    assert "monthly_spend: psi 0.27" in visible
    assert "visits: ks (score n/a)" in visible
    assert "version 7 promoted to production" in visible
    assert '<a href="https://reports.example.com/drift/2026-03.html">' in alert.text


def test_drift_alert_names_the_alias_a_promoted_version_took():
    visible = telegram_html_text(_drift(alias="live").text)
    assert "version 7 promoted to production (@live)" in visible
    assert "@" not in telegram_html_text(_drift(alias="live", promoted=False).text)


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        (
            {"new_version": "8", "promoted": False, "promotion_note": "silhouette 0.41 < 0.44"},
            "version 8 registered but not promoted (silhouette 0.41 < 0.44)",
        ),
        (
            {"new_version": None, "not_retrained_reason": "only 120 rows in 2026-03"},
            "not retrained: only 120 rows in 2026-03.",
        ),
        ({"new_version": None}, "Action: none."),
    ],
)
def test_drift_alert_says_what_was_done(action, expected):
    assert expected in telegram_html_text(_drift(**action).text)


def test_report_path_is_shown_as_code_not_a_link():
    text = _drift(report_link="/srv/reports/drift 2026-03.html").text
    assert "<code>/srv/reports/drift 2026-03.html</code>" in text
    assert "<a " not in text


def test_every_interpolated_value_is_escaped():
    alert = _drift(
        model_name="<b>model</b> & co",
        window="2026-03<script>",
        drifted_columns=[("<i>income</i> & <tax>", "psi&<>", 1.5)],
        new_version=None,
        not_retrained_reason="rows < 1000 & no <labels>",
        report_link='https://example.com/r?a=1&b="<x>"',
    )
    text = alert.text
    assert "<b>model</b>" not in text and "&lt;b&gt;model&lt;/b&gt; &amp; co" in text
    assert "&lt;i&gt;income&lt;/i&gt; &amp; &lt;tax&gt;" in text
    assert "psi&amp;&lt;&gt;" in text
    assert "rows &lt; 1000 &amp; no &lt;labels&gt;" in text
    assert 'href="https://example.com/r?a=1&amp;b=&quot;&lt;x&gt;&quot;"' in text
    # Telegram would accept it, and shows the original values.
    visible = telegram_html_text(text)
    assert "<b>model</b> & co" in visible
    assert "<i>income</i> & <tax>: psi&<> 1.5" in visible
    assert "2026-03<script>" in visible


def test_many_columns_are_cut_with_and_n_more_under_the_limit():
    columns = [(f"feature_{i:04d}_" + "x" * 60, "wasserstein", i / 1000) for i in range(1000)]
    text = _drift(drifted_columns=columns).text
    assert _utf16(text) <= MAX_MESSAGE_CHARS < 4096
    listed = re.findall(r"feature_\d{4}_", text)
    more = re.search(r"… and (\d+) more", text)
    assert more is not None
    assert len(listed) + int(more.group(1)) == 1000
    assert listed[0] == "feature_0000_"  # order kept: the caller ranks the columns
    assert "Action:" in text and "Report:" in text  # the tail survives the cut
    telegram_html_text(text)


def test_escaping_and_emoji_count_towards_the_limit():
    """'&' grows five-fold when escaped and emoji count twice for Telegram: still bounded."""
    columns = [("&" * 80 + "😀" * 20, "psi", 0.5)] * 500
    text = _drift(
        drifted_columns=columns,
        model_name="&" * 5000,
        new_version="&" * 5000,
        promoted=False,
        promotion_note="<" * 5000,
        report_link="https://example.com/" + "&" * 5000,
    ).text
    assert _utf16(text) <= MAX_MESSAGE_CHARS
    assert re.search(r"… and \d+ more", text)
    telegram_html_text(text)  # cutting never splits an entity such as &amp;


def test_few_columns_are_not_cut():
    assert "more" not in _drift().text


def test_all_clear_alert():
    alert = all_clear_alert(
        model_name="persona<segmentation>",
        window="2026-03",
        drift_share=0.1,
        threshold=0.3,
        report_link="gs://bucket/reports/2026-03.html",
    )
    visible = telegram_html_text(alert.text)
    assert "No data drift" in visible
    assert "persona<segmentation>" in visible
    assert "10% of columns (threshold 30%)" in visible
    assert "No action taken." in visible
    assert "gs://bucket/reports/2026-03.html" in visible
    assert "drift detected" not in visible.lower()


def test_insufficient_data_alert():
    alert = insufficient_data_alert(
        model_name="m&m", window="2026-03", n_current=120, min_rows=1000
    )
    visible = telegram_html_text(alert.text)
    assert "Drift not checked" in visible
    assert "m&m" in visible and "&amp;" in alert.text
    assert "120 rows, at least 1,000 needed" in visible
    assert "Report" not in visible


def test_alert_is_immutable():
    alert = _drift()
    with pytest.raises(AttributeError):
        alert.text = "changed"  # type: ignore[misc]
