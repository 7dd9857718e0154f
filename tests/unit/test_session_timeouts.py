"""Every PostgreSQL URL the settings hand out carries the session limits; SQLite is untouched."""

from urllib.parse import parse_qs, urlsplit

import pytest

from persona.errors import ConfigurationError
from persona.postgres_sessions import SessionTimeouts, database_defaults, with_session_timeouts
from persona.settings import load_settings

PG = "postgresql+psycopg2://persona@127.0.0.1:5432/persona"


def options(url: str) -> str:
    return parse_qs(urlsplit(url).query)["options"][0]


def test_project_and_mlflow_urls_carry_both_limits_in_milliseconds():
    settings = load_settings(
        environ={"PERSONA_DATABASE_URL": PG, "MLFLOW_BACKEND_STORE_URI": PG + "_mlflow"}
    )
    expected = "-c idle_in_transaction_session_timeout=300000 -c statement_timeout=1800000"
    assert options(settings.project_database_url) == expected
    assert options(settings.backend_store_uri) == expected
    assert settings.database_url == PG  # the configured value itself is unchanged


def test_spaces_are_percent_encoded_for_libpq():
    url = with_session_timeouts(PG, SessionTimeouts(1, 2))
    assert "+" not in urlsplit(url).query and "%20" in url


def test_sqlite_urls_are_left_alone(tmp_path):
    settings = load_settings(environ={"PERSONA_HOME": str(tmp_path)})
    assert settings.project_database_url == f"sqlite:///{tmp_path / 'persona.db'}"


def test_other_query_parameters_and_an_operators_own_limit_are_kept():
    url = with_session_timeouts(
        PG + "?sslmode=disable&options=-c%20statement_timeout%3D5000", SessionTimeouts(60, 120)
    )
    query = parse_qs(urlsplit(url).query)
    assert query["sslmode"] == ["disable"]
    assert query["options"] == [
        "-c statement_timeout=5000 -c idle_in_transaction_session_timeout=60000"
    ]


def test_values_come_from_the_environment_and_zero_turns_a_limit_off():
    settings = load_settings(
        environ={
            "PERSONA_DATABASE_URL": PG,
            "PERSONA_DB_IDLE_IN_TRANSACTION_TIMEOUT_SECONDS": "1.5",
            "PERSONA_DB_STATEMENT_TIMEOUT_SECONDS": "0",
        }
    )
    assert options(settings.project_database_url) == (
        "-c idle_in_transaction_session_timeout=1500 -c statement_timeout=0"
    )


def test_a_negative_limit_names_the_variable():
    with pytest.raises(
        ConfigurationError,
        match="PERSONA_DB_STATEMENT_TIMEOUT_SECONDS must be 0 \\(off\\) or a positive number",
    ):
        load_settings(environ={"PERSONA_DB_STATEMENT_TIMEOUT_SECONDS": "-1"})


def test_mage_database_idle_limit_is_never_below_the_statement_limit():
    """Mage may hold one transaction for a whole block (a training): do not cut a live run."""
    assert database_defaults(SessionTimeouts(300, 1800)) == {
        "idle_in_transaction_session_timeout": 1800000,
        "statement_timeout": 1800000,
    }
    assert database_defaults(SessionTimeouts(300, 0))["idle_in_transaction_session_timeout"] == (
        300000
    )
