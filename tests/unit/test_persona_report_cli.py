"""`persona monitor report` (`make report`): the trend chart from the drift history on SQLite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from persona.adapters import drift_store
from persona.cli import main

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def history(tmp_path, monkeypatch) -> sa.Engine:
    monkeypatch.setenv("PERSONA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PERSONA_DATABASE_URL", f"sqlite:///{tmp_path / 'persona.db'}")
    monkeypatch.setenv("PERSONA_ENV_FILE", str(tmp_path / "no.env"))
    monkeypatch.setenv("PERSONA_MODEL_NAME", "personas")
    monkeypatch.chdir(ROOT)
    return sa.create_engine(f"sqlite:///{tmp_path / 'persona.db'}")


def _store(engine: sa.Engine, model: str, month: str, shares: dict[str, float]) -> None:
    run_id = drift_store.record_run(
        engine,
        {
            "data_window": month,
            "model_name": model,
            "n_reference": 100,
            "n_current": 100,
            "enough_data": True,
            "action": "no_drift",
            "alert_status": "sent",
        },
        [],
    )
    rows = [
        {
            "persona_id": index,
            "persona_name": name,
            "period": month,
            "current_share": share,
            "mean_distance_current": 1.0 + index,
            "flagged": False,
            "mix_method": "jensenshannon",
            "mix_score": 0.01,
            "mix_threshold": 0.1,
            "mix_drifted": False,
        }
        for index, (name, share) in enumerate(shares.items())
    ]
    drift_store.record_personas(engine, run_id, rows)


def test_the_report_draws_the_served_models_months_and_prints_its_path(history, tmp_path, capsys):
    _store(history, "personas", "2026-03", {"Budget Families": 0.31, "Retirees": 0.69})
    _store(history, "personas", "2026-04", {"Budget Families": 0.18, "Retirees": 0.82})
    _store(history, "personas-marketing", "2026-05", {"Wine Lovers": 1.0})

    out = tmp_path / "reports" / "trend.html"
    assert main(["monitor", "report", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["report"] == str(out.resolve())
    page = out.read_text()
    assert "2026-03" in page and "2026-04" in page and "Budget Families" in page
    assert "2026-05" not in page and "Wine Lovers" not in page  # another segmentation's model


def test_no_history_yet_says_what_to_run(history, capsys):
    assert main(["monitor", "report"]) == 3
    assert "monitor a month first" in capsys.readouterr().err
