"""What the benchmarks share: a throw-away MLflow server and the arguments that choose it, and a
model searched in memory like the served one."""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from persona.adapters.postgres_admin import drop_database, ensure_database
from persona.data.catalogue import Catalogue
from persona.data.generator import generate_snapshot
from persona.model.build import train_in_memory
from persona.model.holdout import split_holdout
from persona.model.naming import catalogue_personas
from persona.model.params import load_params
from persona.model.pyfunc import PersonaModel
from persona.services.processes import start_mlflow_server
from persona_tools import REPO_ROOT

logger = logging.getLogger(__name__)

VENVS = Path(sys.executable).parents[2]  # .venv/<service>/bin/python -> .venv
FAST_PARAMS = REPO_ROOT / "tests/fixtures/params_fast.yaml"


def fast_model(
    catalogue: Catalogue, rows: int, month: str, seed: int
) -> tuple[PersonaModel, pd.DataFrame, str]:
    """A model like the served one, searched in memory with the fast test parameters on
    ``rows`` synthetic customers: the model, the rows it was fitted on, the winner's name."""
    schema = catalogue.schema
    params = load_params(FAST_PARAMS)
    frame = generate_snapshot(catalogue, rows, month, seed, progress=False)
    train = split_holdout(frame, schema, params.holdout_fraction).train
    built, winner = train_in_memory(train, schema, params, catalogue_personas(catalogue))
    return built.model, train, winner


def add_postgres_argument(parser: argparse.ArgumentParser, what: str) -> None:
    """``--postgres``: the PostgreSQL server holding a benchmark's throw-away ``what``."""
    parser.add_argument(
        "--postgres",
        default="postgresql+psycopg2://postgres@127.0.0.1:5432",
        help=f"PostgreSQL server for the throw-away {what}",
    )


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tracking-uri", help="use this MLflow server instead of a throw-away one")
    add_postgres_argument(parser, "registry database")
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
