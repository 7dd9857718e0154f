"""``python -m persona.services.mlflow_server``: the MLflow server, as local stack and Compose run it.

Backend store in PostgreSQL (``postgresql+psycopg2://``) or SQLite, artifacts proxied by the
server to a local folder or ``gs://BUCKET/PREFIX``, job execution off (saves ~2.5 GB).
Runs in the mlflow-server environment, so it imports only the standard library and settings.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import NoReturn

from persona.adapters.postgres_admin import ensure_database
from persona.entry import exit_entry
from persona.settings import Settings

logger = logging.getLogger(__name__)


def server_command(settings: Settings) -> list[str]:
    destination = settings.artifacts_destination
    if "://" not in destination:
        Path(destination).mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        settings.backend_store_uri,
        "--artifacts-destination",
        destination,
        "--serve-artifacts",
        "--host",
        settings.mlflow_host,
        "--port",
        str(settings.mlflow_port),
        "--workers",
        str(settings.mlflow_workers),
    ]
    if settings.mlflow_allowed_hosts:
        command += ["--allowed-hosts", allowed_hosts(settings.mlflow_allowed_hosts)]
    return command


# MLflow's own defaults drop out as soon as --allowed-hosts is given; a browser on the
# published port (Host: 127.0.0.1:5000) must keep working when Compose adds its service name.
LOCAL_HOSTS = ("localhost", "localhost:*", "127.0.0.1", "127.0.0.1:*")


def allowed_hosts(extra: str) -> str:
    """The loopback names plus ``extra`` (comma list), for MLflow's Host-header check."""
    names = [*LOCAL_HOSTS, *(name.strip() for name in extra.split(","))]
    return ",".join(dict.fromkeys(name for name in names if name))


def _serve(settings: Settings) -> None:
    settings.home.mkdir(parents=True, exist_ok=True)
    ensure_database(settings.backend_store_uri)
    os.environ["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    command = server_command(settings)
    logger.info("starting MLflow server: %s", " ".join(command))
    os.execv(command[0], command)


def main() -> NoReturn:
    exit_entry(_serve, logger)


if __name__ == "__main__":
    main()
