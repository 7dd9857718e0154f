"""The stack test's own logic: what it feeds Compose and what it reads back from Mage's log."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from persona_tools.stack_test import (
    PhaseClock,
    StackSecrets,
    compose_variables,
    schedule_ids,
)

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def test_every_variable_compose_requires_or_the_alerts_need_is_supplied():
    compose = (ROOT / "docker-compose.yml").read_text()
    required = set(re.findall(r"\$\{(\w+):\?", compose))
    supplied = compose_variables(StackSecrets.fresh(), "http://127.0.0.1:1/bot")
    assert required and required <= supplied.keys()
    assert {"TELEGRAM_BOT_TOKEN", "TELEGRAM_CHAT_ID", "TELEGRAM_BASE_URL"} <= supplied.keys()
    assert all(supplied[name] for name in required), "a required variable is empty"


def test_fresh_secrets_differ_between_runs():
    assert StackSecrets.fresh() != StackSecrets.fresh()


def test_schedule_ids_read_from_the_mage_service_log():
    log = "\n".join(
        [
            "mage_1  | 2026-11-23 INFO persona.services.mage API trigger train_api of train: POST"
            " http://0.0.0.0:16789/api/pipeline_schedules/3/pipeline_runs/<token>",
            "mage_1  | 2026-11-23 INFO persona.services.mage API trigger monitor_api of monitor:"
            " POST http://0.0.0.0:16789/api/pipeline_schedules/12/pipeline_runs/<token>",
            "mage_1  | Scheduler status: running",
        ]
    )
    assert schedule_ids(log) == {"train_api": "3", "monitor_api": "12"}
    assert schedule_ids("nothing here") == {}


def test_phase_clock_names_the_phase_that_failed():
    clock = PhaseClock()
    with clock.phase("up"):
        pass
    with pytest.raises(RuntimeError), clock.phase("train"):
        raise RuntimeError("boom")
    assert list(clock.seconds) == ["up", "train"]
    assert clock.failed == "train"
    assert "FAILED in phase 'train'" in clock.table()
