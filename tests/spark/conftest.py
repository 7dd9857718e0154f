"""A real standalone Spark cluster for the tests that need one: a master and one worker, started
with the commands ``make spark-up`` runs (``persona.services.spark_cluster``), on free ports."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from persona.services.local_stack import start
from persona.services.processes import free_port, stop_process
from persona.services.spark_cluster import ClusterLayout, cluster_services, wait_for_workers
from persona.settings import load_settings


def _load_shared(name: str = "shared_conftest") -> ModuleType:
    """tests/conftest.py as the module ``shared_conftest``: this file is imported as
    ``conftest`` too and hides it, so the test modules here import its helpers (wait_until,
    processes_gone, ROOT) from that name."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[1] / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


_load_shared()


@pytest.fixture(scope="session")
def spark_cluster(tmp_path_factory) -> Iterator[ClusterLayout]:
    """A master and one worker (1 core, 2 GiB) for the whole session; stopped at its end."""
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
