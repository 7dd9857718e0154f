"""Fail fast and say so: bounded waits for MLflow, outages in one line, months committed whole.

No real waiting: the probe's clock and sleep are injected; database failures are raised by a
SQLAlchemy event on SQLite at the moment a given month is written.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest
import requests
import sqlalchemy as sa
from mlflow.exceptions import MlflowException

from persona.adapters import database, mlflow_registry, upstream
from persona.adapters.upstream import Backoff, as_outage, request_bound_s, wait_for
from persona.data.schema import schema_from_dict
from persona.entry import guarded
from persona.errors import ConfigurationError, PartialWriteError, UpstreamUnavailableError

URL = "http://127.0.0.1:9"
MAX_SQL_PARAMETERS = "[parameters:"


class FakeTime:
    """A clock that only moves when slept on (or when an attempt takes its timeout)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_the_backoff_doubles_fits_its_budget_and_names_a_bad_value():
    assert Backoff(budget_s=25).delays() == (1.0, 2.0, 4.0, 8.0, 8.0)
    assert Backoff(budget_s=25).attempts == 6
    assert Backoff(budget_s=0.5).attempts == 1
    with pytest.raises(ConfigurationError, match=r"budget_s=0: must be a positive number"):
        Backoff(budget_s=0)


def test_a_closed_port_fails_within_the_budget_logging_each_retry(caplog):
    time = FakeTime()
    caplog.set_level(logging.INFO)
    with pytest.raises(UpstreamUnavailableError) as failure:
        wait_for(
            f"MLflow at {URL}",
            lambda timeout: "ConnectionError",
            Backoff(budget_s=25),
            clock=time.clock,
            sleep=time.sleep,
        )
    assert str(failure.value) == (
        f"MLflow at {URL} did not answer (ConnectionError); gave up after 6 attempt(s) in 23 s"
    )
    retries = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert retries[0] == (
        f"MLflow at {URL} did not answer (attempt 1 of 6: ConnectionError), retrying in 1 s"
    )
    assert len(retries) == 5 and "(attempt 5 of 6" in retries[-1]
    assert time.now <= 25


def test_a_host_that_never_answers_is_bounded_by_the_budget_too():
    """Each attempt takes its whole timeout (a black-holed address): the budget still holds."""
    time = FakeTime()

    def hangs(timeout: float) -> str:
        time.now += timeout
        return "ConnectTimeout"

    with pytest.raises(UpstreamUnavailableError, match="ConnectTimeout"):
        wait_for("MLflow at X", hangs, Backoff(budget_s=25), clock=time.clock, sleep=time.sleep)
    assert time.now <= 25


def test_a_server_that_comes_up_is_used_after_a_logged_retry(caplog):
    time = FakeTime()
    answers = iter(["ConnectionError", "HTTP 503 from /health", None])
    caplog.set_level(logging.INFO)
    wait_for("MLflow at X", lambda t: next(answers), Backoff(), clock=time.clock, sleep=time.sleep)
    assert time.slept == [1.0, 2.0]
    assert caplog.records[-1].getMessage() == "MLflow at X answered (attempt 3 of 5)"


def test_the_mlflow_probe_names_the_url(monkeypatch):
    def refused(url, timeout):
        raise requests.ConnectionError("refused")

    monkeypatch.setattr(mlflow_registry.requests, "get", refused)
    time = FakeTime()
    with pytest.raises(UpstreamUnavailableError, match=rf"^MLflow at {URL} did not answer"):
        mlflow_registry.probe(URL, clock=time.clock, sleep=time.sleep)
    assert time.now < 30


def test_mlflow_client_requests_are_bounded_unless_the_operator_chose(monkeypatch):
    for name in mlflow_registry.REQUEST_BOUNDS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    mlflow_registry.bound_requests()
    import os

    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "3"
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "2"
    bounds = {k: float(v) for k, v in mlflow_registry.REQUEST_BOUNDS.items()}
    worst = request_bound_s(
        int(bounds["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]),
        bounds["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"],
        bounds["MLFLOW_HTTP_REQUEST_TIMEOUT"],
    )
    assert worst < 30
    # MLflow's own defaults: 7 retries, factor 2, 120 s timeout -> minutes
    assert request_bound_s(7, 2, 0) > 240


def _lost_connection() -> sa.exc.OperationalError:
    return sa.exc.OperationalError(
        "INSERT INTO customers (customer_id, snapshot_month) VALUES (%(customer_id)s, ...)",
        {"customer_id": "C0000001", "income": 51234.0},
        Exception(
            "terminating connection due to administrator command\n"
            "server closed the connection unexpectedly"
        ),
    )


def test_a_lost_database_connection_is_one_line_naming_the_step():
    outage = as_outage(_lost_connection(), "persona score")
    assert str(outage) == (
        "persona score: lost the database connection (terminating connection due to "
        "administrator command); nothing after the last commit was kept, a rerun is safe"
    )
    assert outage.exit_code == UpstreamUnavailableError.exit_code
    assert as_outage(ValueError("a bug"), "persona score") is None


def test_mlflow_giving_up_is_one_line_naming_the_server():
    exc = MlflowException(
        f"API request to {URL}/api/2.0/mlflow/registered-models/get failed with exception "
        "HTTPConnectionPool(host='127.0.0.1', port=9): Max retries exceeded with url: /api "
        "(Caused by NewConnectionError('<urllib3.connection.HTTPConnection>: Failed to "
        "establish a new connection: [Errno 111] Connection refused'))"
    )
    outage = as_outage(exc, "persona train")
    assert str(outage) == (
        f"persona train: MLflow at {URL} did not answer (NewConnectionError); a rerun is safe"
    )
    assert as_outage(MlflowException("RESOURCE_DOES_NOT_EXIST: no model"), "x") is None


def test_the_entry_guard_turns_an_outage_into_its_exit_code_and_one_line(caplog):
    def body():
        raise _lost_connection()

    assert guarded(body, step="persona data ingest") == UpstreamUnavailableError.exit_code
    (line,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert line.startswith("persona data ingest: lost the database connection")
    assert "\n" not in line and MAX_SQL_PARAMETERS not in line and "C0000001" not in line

    def bug():
        raise KeyError("a bug keeps its traceback")

    with pytest.raises(KeyError):
        guarded(bug)


SCHEMA = schema_from_dict(
    {
        "id_column": "customer_id",
        "month_column": "snapshot_month",
        "numeric_features": {"income": {}},
    }
)


def _months(*months: str, rows: int = 7) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [f"C{i:05d}" for _ in months for i in range(rows)],
            "snapshot_month": [m for m in months for _ in range(rows)],
            "income": [float(i) for _ in months for i in range(rows)],
        }
    )


def _count(engine: sa.Engine) -> pd.Series:
    with engine.connect() as connection:
        frame = pd.read_sql("SELECT snapshot_month FROM customers", connection)
    return frame["snapshot_month"].value_counts().sort_index()


def test_ingest_commits_month_by_month_and_a_lost_connection_keeps_whole_months(tmp_path):
    engine = database.make_engine(f"sqlite:///{tmp_path / 'project.db'}")
    frame = _months("2026-01", "2026-02", "2026-03")
    lose_on = {"month": "2026-02"}

    @sa.event.listens_for(engine, "before_cursor_execute")
    def lose(conn, cursor, statement, parameters, context, executemany):
        writing = statement.startswith("INSERT") and executemany and lose_on["month"]
        if writing and any(row[1] == lose_on["month"] for row in parameters):
            raise _lost_connection()

    with pytest.raises(PartialWriteError) as failure:
        database.upsert_frame(engine, "customers", frame, SCHEMA, step="persona data ingest")
    error = failure.value
    assert str(error) == (
        "persona data ingest: lost the database connection while writing month 2026-02 of "
        "'customers' (terminating connection due to administrator command); month 2026-02 was "
        "rolled back, committed 1 of 3 months (7 rows: 2026-01); a rerun is safe"
    )
    assert (error.committed, error.committed_rows, error.rolled_back) == (
        ("2026-01",),
        7,
        "2026-02",
    )
    assert _count(engine).to_dict() == {"2026-01": 7}  # no partial month

    lose_on["month"] = None
    assert database.upsert_frame(engine, "customers", frame, SCHEMA) == 21
    assert _count(engine).to_dict() == {"2026-01": 7, "2026-02": 7, "2026-03": 7}


def test_each_committed_month_is_logged(tmp_path, caplog):
    engine = database.make_engine(f"sqlite:///{tmp_path / 'project.db'}")
    caplog.set_level(logging.INFO, logger=database.__name__)
    database.upsert_frame(engine, "customers", _months("2026-01", "2026-02"), SCHEMA)
    said = [r.getMessage() for r in caplog.records]
    assert "customers: month 2026-01 committed (7 rows; 1 of 2 months)" in said
    assert "customers: month 2026-02 committed (7 rows; 2 of 2 months)" in said


def test_upstream_module_is_free_of_heavy_imports():
    """entry.py imports it in every process (the scoring API too): stdlib and errors only."""
    text = Path(upstream.__file__).read_text(encoding="utf-8")
    assert "import sqlalchemy" not in text and "import mlflow" not in text


def test_a_connection_lost_in_the_first_month_leaves_the_table_empty(tmp_path):
    engine = database.make_engine(f"sqlite:///{tmp_path / 'project.db'}")

    @sa.event.listens_for(engine, "before_cursor_execute")
    def lose(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("INSERT") and executemany:
            raise _lost_connection()

    with pytest.raises(PartialWriteError, match=r"2026-01 was rolled back, nothing was commit"):
        database.upsert_frame(engine, "customers", _months("2026-01", "2026-02"), SCHEMA)
    assert _count(engine).empty
