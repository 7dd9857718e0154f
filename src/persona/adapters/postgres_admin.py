"""Create a PostgreSQL database on first start, so services need no init script locally.

Only needs psycopg2 (present in the pipeline and mlflow-server environments), not SQLAlchemy.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit, urlunsplit

from persona.errors import UpstreamUnavailableError

logger = logging.getLogger(__name__)


def ensure_database(url: str) -> bool:
    """Create the database named in ``url`` if missing; True when it was created.

    A non-PostgreSQL URL (SQLite) is left alone.
    """
    if not url.startswith("postgresql"):
        return False
    import psycopg2
    from psycopg2 import sql

    parts = urlsplit(url.replace("+psycopg2", ""))
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    try:
        connection = psycopg2.connect(admin)
    except psycopg2.OperationalError as exc:
        where = f"{parts.hostname or 'localhost'}:{parts.port or 5432}"
        raise UpstreamUnavailableError(
            f"PostgreSQL at {where} is not reachable: {exc}".strip()
        ) from None
    connection.autocommit = True
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
