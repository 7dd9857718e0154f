"""Create a PostgreSQL database on first start, so services need no init script locally.

Only needs psycopg2 (present in the pipeline and mlflow-server environments), not SQLAlchemy.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit, urlunsplit

from persona.adapters.upstream import first_line
from persona.errors import UpstreamUnavailableError

logger = logging.getLogger(__name__)


def _admin_connection(url: str):
    """A psycopg2 autocommit connection to the server's ``postgres`` database; and the name."""
    import psycopg2

    parts = urlsplit(url.replace("+psycopg2", ""))
    admin = urlunsplit(parts._replace(path="/postgres"))
    try:
        connection = psycopg2.connect(admin)
    except psycopg2.OperationalError as exc:
        where = f"{parts.hostname or 'localhost'}:{parts.port or 5432}"
        raise UpstreamUnavailableError(
            f"PostgreSQL at {where} is not reachable: {first_line(exc)}".strip()
        ) from None
    connection.autocommit = True
    return connection, parts.path.lstrip("/")


def drop_database(url: str) -> None:
    """Remove a throw-away database (benchmarks), even with sessions still open."""
    if not url.startswith("postgresql"):
        return
    from psycopg2 import sql

    connection, name = _admin_connection(url)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
    finally:
        connection.close()


def ensure_database(url: str) -> bool:
    """Create the database named in ``url`` if missing; True when it was created.

    A non-PostgreSQL URL (SQLite) is left alone.
    """
    if not url.startswith("postgresql"):
        return False
    from psycopg2 import sql

    connection, name = _admin_connection(url)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cursor.fetchone() is not None:
                return False
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    finally:
        connection.close()
    logger.info("created database %s", name)
    return True


def set_database_defaults(url: str, parameters: dict[str, int]) -> None:
    """``ALTER DATABASE ... SET`` each parameter: every new session of it starts with them.

    For a database whose client replaces the connection options (Mage's). A non-PostgreSQL URL
    is left alone; a role that may not alter the database only gets a warning (the limits are
    a safety net, not a reason to refuse to start).
    """
    if not url.startswith("postgresql"):
        return
    import psycopg2
    from psycopg2 import sql

    connection, name = _admin_connection(url)
    try:
        with connection.cursor() as cursor:
            for parameter, value in parameters.items():
                cursor.execute(
                    sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                        sql.Identifier(name), sql.Identifier(parameter), sql.Literal(value)
                    )
                )
    except psycopg2.Error as exc:
        logger.warning("could not set session limits on database %s: %s", name, exc)
    finally:
        connection.close()
