"""Apache Spark sessions for the Spark engine (scoring and drift statistics): the one adapter
that imports pyspark.

pyspark lives in its own environment (``make install-spark`` -> ``.venv/spark``), never in
Mage's or the API's: the pipeline blocks run ``PERSONA_SPARK_COMMAND`` as a subprocess. A
session here is the same whatever the master (``local[*]``, or ``spark://HOST:PORT`` of a
standalone cluster, ``make spark-up``): executors run this environment's Python (the same path
on every worker: one image, or one machine), one BLAS thread per executor core, Arrow on,
times in UTC. A master that does not answer, no Java, or no pyspark is one line naming what
to do, before any JVM waits on it.

A driver killed with kill -9 does not leave its JVM behind: pyspark starts the gateway
(spark-submit) with a pipe on its stdin, and the JVM exits at that pipe's EOF, which the kernel
delivers when the driver dies however it dies (about 3 s here); on a standalone cluster the
master then ends the application and the workers stop its executors
(tests/spark/test_spark_crash.py holds both in place).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import sys
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from persona.errors import ConfigurationError, UpstreamUnavailableError

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
# Spark's defaults are tuned for big clusters; these suit a laptop to a few workers. Every key
# can be overridden by the caller's ``conf`` (or spark-defaults.conf / SPARK_CONF_DIR).
DEFAULT_CONF: Mapping[str, str] = {
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.session.timeZone": "UTC",
    "spark.ui.showConsoleProgress": "false",
    "spark.executorEnv.OMP_NUM_THREADS": "1",
    "spark.executorEnv.OPENBLAS_NUM_THREADS": "1",
    "spark.executorEnv.MLFLOW_DISABLE_TELEMETRY": "true",
    "spark.python.worker.reuse": "true",
    "spark.sql.files.maxPartitionBytes": "32m",
    # MLflow's pydantic models warn on import in every Python worker, on the user's console
    "spark.executorEnv.PYTHONWARNINGS": "ignore::UserWarning:pydantic._internal._fields",
}


def check_master(master: str) -> None:
    """Fail fast and clearly when ``master`` cannot be used: Spark itself retries a dead
    standalone master for a minute and then reports it in a Java stack trace."""
    if master.startswith("local"):
        return
    parts = urlsplit(master)
    if parts.scheme != "spark" or not parts.hostname:
        raise ConfigurationError(
            f"SPARK_MASTER must be local[*], local[N] or spark://HOST:PORT, got {master!r}"
        )
    port = parts.port or 7077
    try:
        with socket.create_connection((parts.hostname, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise UpstreamUnavailableError(
            f"the Spark master at {master} did not answer ({exc.strerror or exc}); start one "
            "with make spark-up, or set SPARK_MASTER=local[*] to run Spark in this process"
        ) from exc


def _driver_address(master: str) -> dict[str, str]:
    """A driver for a master on this machine listens on loopback: by default Spark binds to the
    first non-loopback interface, which executors on this machine need not reach."""
    host = urlsplit(master).hostname if master.startswith("spark://") else "127.0.0.1"
    if host not in ("127.0.0.1", "localhost", "::1"):
        return {}
    return {"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"}


def _pyspark() -> Any:
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise ConfigurationError(
            "the Spark engine runs in the Spark environment: make install-spark, then run "
            ".venv/spark/bin/persona (pyspark is not in this environment on purpose)"
        ) from exc
    return SparkSession


@contextlib.contextmanager
def spark_session(
    master: str, app_name: str, conf: Mapping[str, str] | None = None
) -> Iterator[Any]:
    """A session on ``master`` for the length of the ``with``; stopped (executors released)
    however the block ends.

    A session already open in this process on the same master (a test module's, a notebook's)
    is used as it is, with ``conf``'s ``spark.sql.*`` keys set on it, and left running: a JVM
    has one Spark context, and starting one costs 10–15 s.
    """
    session_class = _pyspark()
    active = session_class.getActiveSession()
    if active is not None and active.sparkContext.master == master:
        for key, value in (conf or {}).items():
            if key.startswith("spark.sql."):
                active.conf.set(key, value)
        yield active
        return
    check_master(master)
    # pyspark's context reads the executors' Python from the environment, not from the conf
    python = os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if _driver_address(master):  # the JVM then neither looks for nor warns about another address
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    logging.getLogger("py4j").setLevel(logging.WARNING)  # one INFO line per closed connection
    builder = session_class.builder.master(master).appName(app_name)
    settings = {
        **DEFAULT_CONF,
        **_driver_address(master),
        "spark.pyspark.python": python,
        "spark.pyspark.driver.python": sys.executable,
        **(conf or {}),
    }
    for key, value in settings.items():
        builder = builder.config(key, value)
    try:
        session = builder.getOrCreate()
    except Exception as exc:  # py4j/JVM start failures carry pages of Java
        if "JAVA_GATEWAY_EXITED" in str(exc) or "Java gateway process exited" in str(exc):
            raise ConfigurationError(
                "Spark could not start its JVM: it needs Java 17 on PATH "
                "(bash scripts/ensure_java.sh installs Debian's openjdk-17-jre-headless)"
            ) from exc
        raise
    session.sparkContext.setLogLevel(os.environ.get("PERSONA_SPARK_LOG_LEVEL", "WARN"))
    logger.info(
        "Spark %s session on %s (%d cores by default parallelism)",
        session.version,
        master,
        session.sparkContext.defaultParallelism,
    )
    try:
        yield session
    finally:
        session.stop()


# persona's errors an executor raised, by the name Python's traceback gives them in the
# Java exception's text: the driver says them in one line, as the local engine would
_EXECUTOR_ERRORS = re.compile(
    r"persona\.errors\.(InvalidInputError|DataValidationError|UpstreamUnavailableError|"
    r"ConfigurationError|ModelUnavailableError): ([^\n]+)"
)


@contextlib.contextmanager
def executor_errors() -> Iterator[None]:
    """A persona error raised in an executor (a file that does not parse, a database that went
    away) comes out as the same error with its one line, not as pages of Java and Python."""
    try:
        yield
    except Exception as exc:
        if type(exc).__name__ not in ("PythonException", "Py4JJavaError", "SparkException") and (
            "pyspark" not in type(exc).__module__
        ):
            raise
        found = _EXECUTOR_ERRORS.search(str(exc))
        if found is None:
            raise
        import persona.errors as errors

        raise getattr(errors, found.group(1))(found.group(2).strip()) from None
