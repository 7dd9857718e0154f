"""What the benchmarks share: a throw-away MLflow server and the arguments that choose it."""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from persona.adapters.postgres_admin import drop_database, ensure_database
from persona.services.processes import start_mlflow_server

logger = logging.getLogger(__name__)

VENVS = Path(sys.executable).parents[2]  # .venv/<service>/bin/python -> .venv


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tracking-uri", help="use this MLflow server instead of a throw-away one")
    parser.add_argument(
        "--postgres",
        default="postgresql+psycopg2://postgres@127.0.0.1:5432",
        help="PostgreSQL server for the throw-away registry database",
    )
    parser.add_argument(
        "--mlflow-python",
        default=str(VENVS / "mlflow/bin/python"),
        help="python of the mlflow-server environment",
    )


@contextmanager
def throwaway_database(postgres: str, prefix: str) -> Iterator[str]:
    """A fresh PostgreSQL database for one benchmark run, dropped afterwards."""
    url = f"{postgres.rstrip('/')}/{prefix}_{uuid.uuid4().hex[:8]}"
    ensure_database(url)
    try:
        yield url
    finally:
        drop_database(url)


@contextmanager
def tracking_server(args: argparse.Namespace) -> Iterator[str]:
    """``args.tracking_uri``, or a fresh server (own PostgreSQL database) for this run."""
    if args.tracking_uri:
        yield args.tracking_uri
        return
    with (
        throwaway_database(args.postgres, "persona_bench") as backend,
        tempfile.TemporaryDirectory(prefix="persona-bench-") as scratch,
    ):
        server = start_mlflow_server(Path(args.mlflow_python), Path(scratch), backend, workers=2)
        logger.info("throw-away MLflow server at %s (registry %s)", server.url, backend)
        try:
            yield server.url
        finally:
            server.stop()
