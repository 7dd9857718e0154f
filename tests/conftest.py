"""Shared fixtures: real PostgreSQL databases, a real MLflow server process, the GCS emulator.

Each folder's tests carry their marker automatically (tests/unit -> unit, ...). Optional tools
(Chromium, Docker) are fixtures: without the tool the tests that need it are skipped with the
reason, and the run's header says which tools were found and what they gate.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from persona.errors import ConfigurationError
from persona.services import processes
from persona.services.processes import ServiceProcess, free_port, stop_process, wait_http
from persona.settings import VARIABLES

ROOT = Path(__file__).resolve().parents[1]
VENVS = ROOT / ".venv"
PG_ADMIN_URL = os.environ.get("PERSONA_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432")

FOLDER_MARKERS = {"unit", "data", "model", "integration", "e2e", "chaos"}

# Tests never see the user's configuration (a .env that make exports, or the shell): a GCS
# bucket, database or Telegram token set there must not receive test artifacts or messages.
for _variable in VARIABLES.values():
    os.environ.pop(_variable.env, None)
# Nor a .env in the working directory, which persona.settings and make would read: every
# process the tests start inherits this empty env file.
os.environ[VARIABLES["env_file"].env] = os.devnull


@dataclass(frozen=True)
class OptionalTool:
    """A tool some tests need but `make test` does not install; they skip, with why, without it."""

    name: str
    find: Callable[[], str | None]  # where it is (or its version), None when missing
    install: str
    require_env: str = ""  # set to 1, a missing tool fails its tests instead (CI)


def _find_chromium() -> str | None:
    try:  # persona_tools is in the dev environment only; the scoring one runs no browser test
        from persona_tools.browser import find_chromium

        return find_chromium()
    except (ImportError, ConfigurationError):
        return None


def _run_ok(*command: str) -> bool:
    try:
        done = subprocess.run(command, capture_output=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _find_docker_engine() -> str | None:
    docker = shutil.which("docker")
    return docker if docker and _run_ok(docker, "info") else None


def _find_compose() -> str | None:
    if shutil.which("docker") and _run_ok("docker", "compose", "version"):
        return "docker compose"
    return shutil.which("docker-compose")


# Fixture name -> tool. A test needing one takes its fixture; `make test` lists them at start.
# PERSONA_TEST_HIDE_TOOLS=chromium,docker_engine makes them look missing, to check the skips.
OPTIONAL_TOOLS = {
    "chromium": OptionalTool(
        "Chromium",
        _find_chromium,
        "bash scripts/ensure_chromium.sh (apt-get install chromium)",
        "PERSONA_REQUIRE_BROWSER",
    ),
    "docker_engine": OptionalTool(
        "Docker engine", _find_docker_engine, "a running Docker engine (make test-stack)"
    ),
    "docker_compose": OptionalTool(
        "Docker Compose", _find_compose, "docker compose or docker-compose (make lint)"
    ),
}


def _hidden(fixture: str) -> bool:
    return fixture in os.environ.get("PERSONA_TEST_HIDE_TOOLS", "").replace(",", " ").split()


@cache
def optional_tool(fixture: str) -> str | None:
    return None if _hidden(fixture) else OPTIONAL_TOOLS[fixture].find()


def require_tool(fixture: str) -> str:
    """The tool's location; skips the test (or fails it, when its require_env is 1) without it."""
    found = optional_tool(fixture)
    if found:
        return found
    tool = OPTIONAL_TOOLS[fixture]
    reason = f"{tool.name} not found; install: {tool.install}"
    if tool.require_env and os.environ.get(tool.require_env) == "1":
        pytest.fail(f"{reason} ({tool.require_env}=1 requires it)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of a headless-capable Chromium (the Mage UI browser tests)."""
    return require_tool("chromium")


@pytest.fixture(scope="session")
def docker_engine() -> str:
    """Path of the docker CLI, with an engine answering it."""
    return require_tool("docker_engine")


@pytest.fixture(scope="session")
def docker_compose() -> str:
    """How to call Compose: `docker compose` or the docker-compose path."""
    return require_tool("docker_compose")


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = ["optional tools (a test that needs a missing one is skipped, saying why):"]
    for fixture, tool in OPTIONAL_TOOLS.items():
        found = optional_tool(fixture)
        hidden = " (hidden by PERSONA_TEST_HIDE_TOOLS)" if _hidden(fixture) else ""
        lines.append(f"  {tool.name}: {f'found ({found})' if found else 'missing'}{hidden}")
    return lines


def pytest_report_collectionfinish(config: pytest.Config, items: list[pytest.Item]) -> list[str]:
    """What the missing optional tools will skip in this run (or fail, when required)."""
    lines = []
    for fixture, tool in OPTIONAL_TOOLS.items():
        gated = [item.nodeid for item in items if fixture in getattr(item, "fixturenames", ())]
        if optional_tool(fixture):
            what = (
                f"runs the {len(gated)} test(s) that need it" if gated else "no test here needs it"
            )
            lines.append(f"{tool.name} found: {what}")
            continue
        if not gated:
            lines.append(f"{tool.name} missing: no test here needs it")
            continue
        required = bool(tool.require_env) and os.environ.get(tool.require_env) == "1"
        verb = f"will FAIL ({tool.require_env}=1)" if required else "will skip"
        lines.append(f"{tool.name} missing: {verb} {len(gated)} test(s) [install: {tool.install}]")
        lines += [f"  {nodeid}" for nodeid in gated]
    return lines


@pytest.fixture(autouse=True)
def _fresh_logging_handler() -> Iterator[None]:
    """Entry points add our log handler once per process, bound to the stderr of the moment;
    in-process calls in tests bind it to a captured stream that closes with the test."""
    yield
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_persona", False)]:
        root.removeHandler(handler)


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


def wait_until(
    condition: Callable[[], Any],
    timeout_s: float,
    what: str = "the condition",
    poll_s: float = 0.05,
) -> Any:
    """Wait on a condition, never for a fixed time: its first truthy answer, or an
    AssertionError naming what was awaited once ``timeout_s`` has passed."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = condition()
        if answer:
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(poll_s)


def processes_gone(pids: Iterable[int]) -> bool:
    """None of ``pids`` runs any more (a zombie waiting for its parent counts as gone)."""
    import psutil  # not in the scoring environment, whose route tests load this file too

    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            continue
    return True


def sessions_in_state(url: str, state: str = "idle in transaction") -> int:
    """Sessions of ``url``'s database in ``state`` (pg_stat_activity of ``url``'s own server,
    so a test's own cluster too)."""
    import sqlalchemy as sa

    target = sa.make_url(url)
    engine = sa.create_engine(target.set(database="postgres"))
    try:
        with engine.connect() as connection:
            return connection.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = :db AND state = :state"
                ),
                {"db": target.database, "state": state},
            ).scalar_one()
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def spark_cluster(tmp_path_factory) -> Iterator[Any]:
    """A real standalone Spark cluster for the whole session: a master and one worker (1 core,
    2 GiB) started with the commands ``make spark-up`` runs (``persona.services.spark_cluster``)
    on free ports, from the running Python's environment (the Spark tests run in .venv/spark);
    yields its ``ClusterLayout`` and stops both at the end."""
    from persona.services.local_stack import start
    from persona.services.spark_cluster import ClusterLayout, cluster_services, wait_for_workers
    from persona.settings import load_settings

    home = tmp_path_factory.mktemp("spark-cluster")
    layout = ClusterLayout(
        master_port=free_port(), master_ui_port=free_port(), worker_ui_ports=(free_port(),)
    )
    settings = load_settings(environ={"PERSONA_HOME": str(home)})
    started = []
    try:
        for service in cluster_services(layout, Path(sys.executable).parent, home / "work"):
            started.append(start(settings, service))
        wait_for_workers(layout.master_ui, len(layout.worker_ui_ports))
        yield layout
    finally:
        for service in reversed(started):
            stop_process(service.process)
