"""The cluster ``make spark-up`` starts comes from settings, and a bad layout is one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from persona.errors import ConfigurationError
from persona.services.spark_cluster import (
    MASTER_CLASS,
    WORKER_CLASS,
    ClusterLayout,
    cluster_services,
)
from persona.settings import load_settings


def test_the_layout_follows_the_settings():
    settings = load_settings(
        environ={
            "PERSONA_SPARK_MASTER_PORT": "17077",
            "PERSONA_SPARK_MASTER_UI_PORT": "18090",
            "PERSONA_SPARK_WORKER_UI_PORT": "18091",
            "PERSONA_SPARK_WORKERS": "3",
            "PERSONA_SPARK_WORKER_CORES": "2",
            "PERSONA_SPARK_WORKER_MEMORY": "512m",
        }
    )
    layout = ClusterLayout.from_settings(settings)
    assert layout.master_url == "spark://127.0.0.1:17077"
    assert layout.master_ui == "http://127.0.0.1:18090"
    assert layout.worker_ui_ports == (18091, 18092, 18093)
    services = cluster_services(layout, Path("/opt/env/bin"), Path("/w"), to_start=False)
    assert [s.name for s in services] == [
        "spark-master",
        "spark-worker-1",
        "spark-worker-2",
        "spark-worker-3",
    ]
    assert services[0].command[:2] == ["/opt/env/bin/spark-class", MASTER_CLASS]
    worker = services[3].command
    assert worker[1] == WORKER_CLASS and worker[-1] == "spark://127.0.0.1:17077"
    assert worker[worker.index("--cores") + 1] == "2"
    assert worker[worker.index("--memory") + 1] == "512m"
    assert worker[worker.index("--work-dir") + 1] == "/w/worker-3"


def test_the_default_layout_is_two_one_core_workers_beside_a_master_on_7077():
    layout = ClusterLayout.from_settings(load_settings(environ={}))
    assert (layout.master_port, layout.master_ui_port) == (7077, 8090)
    assert layout.worker_ui_ports == (8091, 8092)
    assert (layout.worker_cores, layout.worker_memory) == (1, "2g")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("PERSONA_SPARK_WORKERS", "0", "PERSONA_SPARK_WORKERS must be at least 1, got 0"),
        ("PERSONA_SPARK_WORKER_CORES", "0", "PERSONA_SPARK_WORKER_CORES must be at least 1"),
        ("PERSONA_SPARK_WORKER_MEMORY", "2 GB", "PERSONA_SPARK_WORKER_MEMORY must be a size"),
        ("PERSONA_SPARK_MASTER_PORT", "x", "PERSONA_SPARK_MASTER_PORT must be an integer"),
    ],
)
def test_a_bad_layout_names_its_variable(key, value, message):
    with pytest.raises(ConfigurationError, match=message):
        load_settings(environ={key: value})
