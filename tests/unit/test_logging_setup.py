"""Logging is configured once per process, however many Mage blocks call the entry layer."""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Iterator

import pytest

from persona.logging_setup import configure_logging


@pytest.fixture(autouse=True)
def _levels() -> Iterator[None]:
    root, urllib3 = logging.getLogger(), logging.getLogger("urllib3")
    levels = root.level, urllib3.level
    yield
    root.setLevel(levels[0])  # conftest removes our handler after each test
    urllib3.setLevel(levels[1])


def _ours() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if getattr(h, "_persona", False)]


def test_second_call_with_the_same_level_is_a_no_op():
    first = io.StringIO()
    configure_logging("INFO", stream=first, only_prefixes=("persona",))
    handlers = list(logging.getLogger().handlers)
    filters = list(warnings.filters)
    logging.getLogger("urllib3").setLevel(logging.DEBUG)  # someone wants to see it, after all
    configure_logging("INFO", only_prefixes=("persona",))  # what every further block does
    configure_logging("INFO", stream=io.StringIO())
    assert logging.getLogger().handlers == handlers
    assert len(_ours()) == 1
    assert warnings.filters == filters and logging.getLogger("urllib3").level == logging.DEBUG

    logging.getLogger("persona.flows.train").info("fitted %d candidates", 3)
    logging.getLogger("mage_ai.scheduler").info("not ours")
    lines = first.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].endswith("INFO persona.flows.train: fitted 3 candidates")


def test_a_later_call_moves_only_the_level():
    stream = io.StringIO()
    configure_logging("INFO", stream=stream)
    configure_logging("warning", stream=io.StringIO())
    assert len(_ours()) == 1 and logging.getLogger().level == logging.WARNING
    logging.getLogger("persona.x").info("hidden")
    logging.getLogger("persona.x").warning("shown")
    assert stream.getvalue().count("\n") == 1 and "shown" in stream.getvalue()


def test_configured_again_after_the_handler_went():
    configure_logging("INFO", stream=io.StringIO())
    logging.getLogger().removeHandler(_ours()[0])
    stream = io.StringIO()
    configure_logging("INFO", stream=stream)
    logging.getLogger("persona.x").info("back")
    assert len(_ours()) == 1 and "back" in stream.getvalue()


def test_every_block_of_a_mage_run_shares_one_handler(monkeypatch, tmp_path, capsys):
    """Blocks call the entry layer one after another in one process: one line per record."""
    from persona.orchestration import blocks

    monkeypatch.setenv("PERSONA_ENV_FILE", str(tmp_path / "none.env"))
    monkeypatch.setenv("PERSONA_HOME", str(tmp_path))
    monkeypatch.setenv("PERSONA_LOG_LEVEL", "INFO")
    for _ in range(3):  # load -> validate -> train, say
        blocks._settings({})
    assert len(_ours()) == 1
    logging.getLogger("persona.orchestration.blocks").info("one line")
    assert capsys.readouterr().err.count("one line") == 1
