import pytest

from persona.errors import ConfigurationError
from persona.flags import parse_bool
from persona.flows import monitor, train
from persona.orchestration.blocks import registration_enabled
from persona.settings import load_settings


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        *[(word, True) for word in ("true", "TRUE", " yes ", "On", "1", True)],
        *[(word, False) for word in ("false", "False", " no", "OFF", "0", False)],
    ],
)
def test_the_accepted_words(value, expected):
    assert parse_bool(value, "X") is expected


@pytest.mark.parametrize("blank", [None, "", "   "])
def test_blank_is_the_default(blank):
    assert parse_bool(blank, "X", True) is True
    assert parse_bool(blank, "X", False) is False
    assert parse_bool(blank, "X") is None


@pytest.mark.parametrize("value", ["ture", "y", "2", "truee", "enabled", 2])
def test_anything_else_is_refused_naming_the_variable_and_the_words(value):
    with pytest.raises(ConfigurationError) as raised:
        parse_bool(value, "SOME_FLAG")
    message = str(raised.value)
    assert message.startswith("SOME_FLAG must be true or false")
    assert "true, false, 1, 0, yes, no, on, off" in message and repr(value) in message


def test_a_run_variable_typo_is_refused_not_taken_as_true():
    with pytest.raises(ConfigurationError, match=r"run variable 'retrain' must be .*'ture'"):
        monitor.MonitorRequest.from_variables({"month": "2026-02", "retrain": "ture"})
    with pytest.raises(ConfigurationError, match=r"run variable 'all_clear_alert'.*'flase'"):
        monitor.MonitorRequest.from_variables({"month": "2026-02", "all_clear_alert": "flase"})
    with pytest.raises(ConfigurationError, match=r"run variable 'register' must be .*'ture'"):
        registration_enabled({"register": "ture"})


def test_run_flags_keep_their_defaults():
    assert train.run_flag({}, "register") is True
    assert train.run_flag({"register": ""}, "register", default=False) is False
    assert registration_enabled({"register": "no"}) is False
    assert registration_enabled({"register": True}) is True
    request = monitor.MonitorRequest.from_variables({"month": "2026-02", "all_clear_alert": ""})
    assert request.retrain is True and request.all_clear_alert is None


def test_settings_and_run_variables_share_the_parser():
    assert load_settings(environ={"PERSONA_SCORING_LOG": "yes"}).scoring_log is True
    with pytest.raises(ConfigurationError, match=r"PERSONA_SCORING_LOG must be .*'ture'"):
        load_settings(environ={"PERSONA_SCORING_LOG": "ture"})
