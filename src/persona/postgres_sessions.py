"""Server-side time limits on every PostgreSQL session the project opens.

A process killed mid-transaction (or an orphan that lives on) keeps its session ``idle in
transaction``: it holds its locks and snapshot until the server ends it. PostgreSQL does that
only when the session carries ``idle_in_transaction_session_timeout``; ``statement_timeout``
bounds a statement that hangs. Both travel as libpq ``options`` in the connection URL, which
SQLAlchemy (``postgresql+psycopg2://``), psycopg2 and the MLflow server's backend store all pass
to the server at connect time. Standard library only: the MLflow server environment imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from persona.errors import ConfigurationError

IDLE_PARAMETER = "idle_in_transaction_session_timeout"
STATEMENT_PARAMETER = "statement_timeout"


@dataclass(frozen=True)
class SessionTimeouts:
    """Seconds; 0 turns a limit off (PostgreSQL's own meaning of 0)."""

    idle_in_transaction_s: float
    statement_s: float

    def __post_init__(self) -> None:
        for key, value in (
            ("PERSONA_DB_IDLE_IN_TRANSACTION_TIMEOUT_SECONDS", self.idle_in_transaction_s),
            ("PERSONA_DB_STATEMENT_TIMEOUT_SECONDS", self.statement_s),
        ):
            if value < 0:
                raise ConfigurationError(f"{key} must be 0 (off) or a positive number, got {value}")

    def parameters(self) -> dict[str, int]:
        """Server parameters in milliseconds, as PostgreSQL reads a bare number."""
        return {
            IDLE_PARAMETER: round(self.idle_in_transaction_s * 1000),
            STATEMENT_PARAMETER: round(self.statement_s * 1000),
        }


def with_session_timeouts(url: str, timeouts: SessionTimeouts) -> str:
    """``url`` whose sessions set ``timeouts``; a non-PostgreSQL URL (SQLite) is returned as is.

    Parameters the URL's own ``options`` already set win: an operator who wrote one meant it.
    """
    if not url.startswith("postgresql"):
        return url
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    given = next((value for key, value in query if key == "options"), "")
    added = [
        f"-c {name}={value}"
        for name, value in timeouts.parameters().items()
        if f"{name}=" not in given
    ]
    if not added:
        return url
    options = " ".join([given, *added]) if given else " ".join(added)
    query = [(key, value) for key, value in query if key != "options"] + [("options", options)]
    # %20, not +, for spaces: libpq reads a URI's query without form decoding.
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


def database_defaults(timeouts: SessionTimeouts) -> dict[str, int]:
    """What ``ALTER DATABASE ... SET`` gives a database whose clients we cannot configure.

    Mage replaces the URL's ``options`` with its own (``-c timezone=utc``), so its database
    carries the limits itself. Its ORM session may stay in one transaction while a block runs,
    for as long as a training takes, so its idle-in-transaction limit is never below the
    statement limit: a live run is not cut, and an orphan's session still ends.
    """
    parameters = timeouts.parameters()
    statement = parameters[STATEMENT_PARAMETER]
    idle = parameters[IDLE_PARAMETER]
    if statement and idle:
        parameters[IDLE_PARAMETER] = max(idle, statement)
    return parameters
