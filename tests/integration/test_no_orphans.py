"""No orphans, no stuck sessions: real PostgreSQL sessions, a real MLflow server, real trees.

- a session left idle inside a transaction is ended by the server (the URL's session limits);
- Mage's database hands its limits to a client that replaces the connection options;
- ``kill $(cat PERSONA_HOME/run/mlflow.pid)`` stops the whole MLflow server, workers included;
- ``local-status`` names a service whose main process is gone while its children answer, and
  ``--clean`` stops them.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import urllib.request
from functools import partial

import psutil
import psycopg2
import pytest
import sqlalchemy as sa
from conftest import PG_ADMIN_URL, VENVS, free_port, processes_gone
from conftest import wait_until as shared_wait_until

from persona.adapters.database import make_engine
from persona.adapters.postgres_admin import set_database_defaults
from persona.adapters.scoring_log import _dsn
from persona.postgres_sessions import database_defaults
from persona.services import local_stack
from persona.services.local_stack import LocalService
from persona.settings import load_settings

wait_until = partial(shared_wait_until, timeout_s=90, poll_s=0.1)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def backend_exists(pid: int) -> bool:
    admin = sa.create_engine(f"{PG_ADMIN_URL}/postgres")
    try:
        with admin.connect() as connection:
            return bool(
                connection.execute(
                    sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
                ).scalar_one()
            )
    finally:
        admin.dispose()


def test_a_session_left_idle_in_a_transaction_is_ended_by_the_server(pg_url):
    settings = load_settings(
        environ={
            "PERSONA_DATABASE_URL": pg_url,
            "PERSONA_DB_IDLE_IN_TRANSACTION_TIMEOUT_SECONDS": "0.5",
            "PERSONA_DB_STATEMENT_TIMEOUT_SECONDS": "2",
        }
    )
    engine = make_engine(settings.project_database_url)
    try:
        connection = engine.connect()
        transaction = connection.begin()
        backend = connection.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        assert connection.execute(sa.text("SHOW statement_timeout")).scalar_one() == "2s"
        # ... and the session now idles inside its transaction, as a killed block's did
        wait_until(lambda: not backend_exists(backend))
        with pytest.raises(sa.exc.OperationalError):
            connection.execute(sa.text("SELECT 1"))
        transaction.rollback()
        connection.close()
        with engine.connect() as fresh:  # the pool hands out a live connection again
            assert fresh.execute(sa.text("SELECT 1")).scalar_one() == 1
    finally:
        engine.dispose()


def test_the_scoring_logs_psycopg2_connections_carry_the_limits(pg_url):
    settings = load_settings(environ={"PERSONA_DATABASE_URL": pg_url})
    connection = psycopg2.connect(_dsn(settings.project_database_url), connect_timeout=5)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SHOW idle_in_transaction_session_timeout")
            assert cursor.fetchone()[0] == "5min"
            cursor.execute("SHOW statement_timeout")
            assert cursor.fetchone()[0] == "30min"
    finally:
        connection.close()


def test_mages_database_carries_the_limits_for_a_client_that_replaces_the_options(pg_url):
    settings = load_settings(environ={"MAGE_DATABASE_CONNECTION_URL": pg_url})
    set_database_defaults(settings.mage_db_url, database_defaults(settings.session_timeouts))
    # Mage connects with connect_args options='-c timezone=utc', which replace the URL's.
    engine = sa.create_engine(pg_url, connect_args={"options": "-c timezone=utc"})
    try:
        with engine.connect() as connection:
            shown = {
                name: connection.execute(sa.text(f"SHOW {name}")).scalar_one()
                for name in ("idle_in_transaction_session_timeout", "statement_timeout", "timezone")
            }
        assert shown == {
            "idle_in_transaction_session_timeout": "30min",
            "statement_timeout": "30min",
            "timezone": "UTC",
        }
    finally:
        engine.dispose()


def test_kill_of_the_mlflow_pid_file_stops_the_whole_server(tmp_path, make_database, monkeypatch):
    """As make local-up starts it, on PostgreSQL with the session limits in its store URL."""
    environ = {
        "PERSONA_HOME": str(tmp_path / "home"),
        "MLFLOW_PORT": str(free_port()),
        "MLFLOW_WORKERS": "2",
        "MLFLOW_BACKEND_STORE_URI": make_database("persona_mlflow"),
    }
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    settings = load_settings(environ=environ)
    mlflow = local_stack.services(settings, VENVS)[0]
    assert mlflow.name == "mlflow"
    local_stack.up(settings, [mlflow])
    pid_file = settings.home / "run/mlflow.pid"
    supervisor = int(pid_file.read_text())
    tree = [supervisor, *(p.pid for p in psutil.Process(supervisor).children(recursive=True))]
    try:
        assert answers(mlflow.health_url) and len(tree) >= 4  # supervisor, mlflow, uvicorn, 2
        assert "options=" in " ".join(psutil.Process(tree[1]).cmdline())

        subprocess.run(["kill", pid_file.read_text().strip()], check=True)  # as the docs say

        wait_until(lambda: processes_gone(tree) and not answers(mlflow.health_url))
        assert local_stack.service_state(settings, mlflow).describe() == (
            f"stopped (pid {supervisor} exited)"
        )
    finally:
        local_stack.down(settings, [mlflow], grace_s=10)


def test_status_names_children_that_answer_after_their_main_process_died_and_cleans_them(
    tmp_path, caplog
):
    """The supervisor is SIGKILLed, the main process dies with it, its child keeps the port."""
    settings = load_settings(environ={"PERSONA_HOME": str(tmp_path / "home")})
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = f"[sys.executable, '-m', 'http.server', '--bind', '127.0.0.1', '{port}']"
    main = f"import subprocess, sys, time; subprocess.Popen({server}); time.sleep(600)"
    service = LocalService("stub", [sys.executable, "-c", main], url, f"{url}/", 60)
    local_stack.up(settings, [service])
    supervisor = int((settings.home / "run/stub.pid").read_text())
    children = psutil.Process(supervisor).children(recursive=True)
    try:
        os.kill(supervisor, signal.SIGKILL)
        wait_until(lambda: processes_gone([supervisor, children[0].pid]))
        listener = children[1].pid
        assert answers(f"{url}/")

        caplog.set_level(logging.INFO, logger="persona.services.local_stack")
        assert local_stack.status(settings, [service]) is False  # not through its main
        assert (
            f"main process {supervisor} gone but children still answer on {port} "
            f"(pids {listener})"
        ) in caplog.text

        local_stack.status(settings, [service], clean=True)
        wait_until(lambda: processes_gone([listener]) and not answers(f"{url}/"))
        assert local_stack.service_state(settings, service).describe() == "stopped"
    finally:
        for child in children:
            if not processes_gone([child.pid]):
                child.kill()
