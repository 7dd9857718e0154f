"""Sessions of the Spark engine: on local[*] and on a real standalone master and worker."""

from __future__ import annotations

import os
import sys

import pytest

from persona.adapters.spark_session import check_master, spark_session
from persona.errors import ConfigurationError, UpstreamUnavailableError
from persona.services.processes import free_port

pytestmark = pytest.mark.spark


def _executor_pythons(session) -> set[str]:
    """The Python each task ran in, and the process it ran in."""
    rows = session.sparkContext.parallelize(range(8), 4).map(
        lambda _: (sys.executable, os.getpid())
    )
    return set(rows.collect())


def test_a_job_on_the_standalone_cluster_runs_in_the_workers_executor(spark_cluster):
    with spark_session(spark_cluster.master_url, "persona-test") as session:
        ran = _executor_pythons(session)
        executors = session.sparkContext._jsc.sc().getExecutorMemoryStatus().size()
    assert {python for python, _pid in ran} == {sys.executable}
    assert os.getpid() not in {pid for _python, pid in ran}
    assert executors == 2  # the driver and the worker's one executor


def test_local_mode_needs_no_cluster():
    with spark_session("local[2]", "persona-test") as session:
        assert session.range(1000).count() == 1000


def test_a_master_that_does_not_answer_is_one_line_naming_it():
    master = f"spark://127.0.0.1:{free_port()}"
    with pytest.raises(UpstreamUnavailableError, match=f"Spark master at {master} did not answer"):
        check_master(master)


def test_a_master_that_is_not_a_spark_url_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="SPARK_MASTER must be"):
        check_master("yarn")
