"""Shared fixtures: real PostgreSQL databases, a real MLflow server process, the GCS emulator.

Each folder's tests carry their marker automatically (tests/unit -> unit, ...).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from persona.services import processes
from persona.services.processes import ServiceProcess, free_port, stop_process, wait_http
from persona.settings import VARIABLES

ROOT = Path(__file__).resolve().parents[1]
VENVS = ROOT / ".venv"
PG_ADMIN_URL = os.environ.get("PERSONA_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432")

FOLDER_MARKERS = {"unit", "data", "model", "integration", "e2e"}

# Tests never see the user's configuration (a .env that make exports, or the shell): a GCS
# bucket, database or Telegram token set there must not receive test artifacts or messages.
for _variable in VARIABLES.values():
    os.environ.pop(_variable.env, None)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        folder = Path(item.fspath).relative_to(ROOT / "tests").parts[0]
        if folder in FOLDER_MARKERS:
            item.add_marker(getattr(pytest.mark, folder))


def _admin_execute(statement: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(f"{PG_ADMIN_URL}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sa.text(statement))
    engine.dispose()


@pytest.fixture(scope="session")
def make_database() -> Iterator:
    """Factory of fresh PostgreSQL databases, dropped at the end of the session."""
    created: list[str] = []

    def create(prefix: str = "persona_test") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        _admin_execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        return f"{PG_ADMIN_URL}/{name}"

    yield create
    for name in created:
        try:
            _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except Exception as exc:  # noqa: BLE001 - cleanup must not mask test results
            print(f"could not drop {name}: {exc}", file=sys.stderr)


@pytest.fixture
def pg_url(make_database) -> str:
    return make_database()


def start_mlflow_server(
    tmp: Path,
    backend_url: str,
    artifacts: str | None = None,
    extra_env: dict | None = None,
    port: int | None = None,
) -> ServiceProcess:
    return processes.start_mlflow_server(
        VENVS / "mlflow/bin/python", tmp, backend_url, artifacts, extra_env, port=port
    )


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory, make_database) -> Iterator[ServiceProcess]:
    """One real `mlflow server` (Postgres backend, local artifacts) for the session."""
    server = start_mlflow_server(tmp_path_factory.mktemp("mlflow"), make_database("persona_mlflow"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory) -> Iterator[tuple[str, str]]:
    """The GCS emulator with a default bucket; yields (emulator URL, bucket)."""
    port, bucket = free_port(), "persona-artifacts-test"
    log = tmp_path_factory.mktemp("gcs") / "gcs.log"
    process = subprocess.Popen(
        [
            str(VENVS / "dev/bin/gcp-storage-emulator"),
            "start",
            "--host=127.0.0.1",
            f"--port={port}",
            "--in-memory",
            f"--default-bucket={bucket}",
        ],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/storage/v1/b", 30, process, log)
    yield url, bucket
    stop_process(process)


@pytest.fixture
def project_env(tmp_path, monkeypatch) -> dict[str, str]:
    """Environment of an isolated local project: its own PERSONA_HOME, repo config files."""
    env = {
        "PERSONA_HOME": str(tmp_path / "home"),
        "PERSONA_CATALOGUE": str(ROOT / "00_create_data/personas.yaml"),
        "PERSONA_SCHEMA": str(ROOT / "00_create_data/schema.yaml"),
        "PERSONA_PARAMS": str(ROOT / "01_model/params.yaml"),
        "PERSONA_MAGE_PROJECT": str(ROOT / "02_pipeline/persona_pipelines"),
        "MAGE_DATA_DIR": str(tmp_path / "home/mage_data"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env
