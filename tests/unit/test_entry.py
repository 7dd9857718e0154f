"""The shared prologue of every command: settings, logging, failures as exit codes."""

import logging

import pytest

from persona import entry
from persona.errors import ConfigurationError, ModelUnavailableError, PersonaError
from persona.settings import Settings

LOGGER = logging.getLogger("persona.test_entry")


def _errors(caplog):
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_the_body_gets_settings_and_its_code_is_the_exit_code(monkeypatch, tmp_path):
    monkeypatch.setenv("PERSONA_HOME", str(tmp_path))
    seen = []
    assert entry.run_entry(lambda settings: seen.append(settings)) == 0  # None means 0
    assert isinstance(seen[0], Settings) and seen[0].home == tmp_path.resolve()
    assert entry.run_entry(lambda settings: 1) == 1


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (PersonaError("boom"), 1),
        (ConfigurationError("boom"), 2),
        (ModelUnavailableError("boom"), 4),
    ],
)
def test_an_expected_failure_is_its_exit_code_and_one_line_without_traceback(
    error, code, caplog, capsys
):
    def body(settings):
        raise error

    assert entry.run_entry(body, LOGGER) == code
    (record,) = _errors(caplog)
    assert (record.name, record.getMessage(), record.exc_info) == (LOGGER.name, "boom", None)
    assert "Traceback" not in caplog.text + capsys.readouterr().err


def test_bad_settings_fail_the_same_way_before_the_body_runs(monkeypatch, caplog):
    monkeypatch.setenv("PERSONA_SCORING_LOG", "ture")
    ran = []
    assert entry.run_entry(ran.append) == ConfigurationError.exit_code
    assert not ran
    (record,) = _errors(caplog)
    assert record.getMessage().startswith("PERSONA_SCORING_LOG must be true or false")


def test_ctrl_c_is_130(caplog):
    def body(settings):
        raise KeyboardInterrupt

    assert entry.run_entry(body) == entry.INTERRUPTED == 130
    assert [r.getMessage() for r in _errors(caplog)] == ["interrupted"]


def test_an_unexpected_error_is_not_hidden():
    def body(settings):
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        entry.run_entry(body)


def test_exit_entry_exits_with_the_code():
    def misconfigured(settings):
        raise ConfigurationError("x")

    with pytest.raises(SystemExit) as exited:
        entry.exit_entry(lambda settings: None)
    assert exited.value.code == 0
    with pytest.raises(SystemExit) as exited:
        entry.exit_entry(misconfigured)
    assert exited.value.code == 2


def test_guarded_needs_no_settings(monkeypatch):
    monkeypatch.setenv("PERSONA_SCORING_LOG", "ture")  # never read
    assert entry.guarded(lambda: None) == 0
    assert entry.guarded(lambda: 3) == 3


def test_commands_keep_help_without_settings(monkeypatch, capsys):
    """Arguments are parsed before settings, so --help works with a broken environment."""
    from persona import cli, iac
    from persona.services import local_stack

    monkeypatch.setenv("PERSONA_SCORING_LOG", "ture")
    for main in (cli.main, iac.main, local_stack.main):
        with pytest.raises(SystemExit) as exited:
            main(["--help"])
        assert exited.value.code == 0
    assert "usage:" in capsys.readouterr().out
