"""Drift runs filed by the adapter show up in a real ``evidently ui`` process."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from persona.adapters import evidently_report
from persona.data.catalogue import load_catalogue
from persona.data.generator import generate_snapshot
from persona.monitoring.drift import drift_config_from_dict
from persona.services.processes import ServiceProcess, free_port, start_service

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "persona-drift-test"


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200, url
        return response.read()


def _get_json(url: str):
    return json.loads(_get(url))


@pytest.fixture(scope="module")
def reports() -> Iterator:
    """Three small drift snapshots: two filed before the UI starts, one while it runs."""
    catalogue = load_catalogue(ROOT / "00_create_data/personas.yaml")
    config = drift_config_from_dict({"min_rows": 100, "reference_sample_rows": 100})
    reference = generate_snapshot(catalogue, 500, "2026-01", 1, progress=False)

    def make(month: str, scenario: str):
        current = generate_snapshot(catalogue, 300, month, 2, scenario, progress=False)
        return evidently_report.run_drift_report(reference, current, catalogue.schema, config)[0]

    yield [
        make("2026-02", "none"),
        make("2026-03", "channel_shift"),
        make("2026-04", "none"),
    ]


@pytest.fixture
def ui(tmp_path, reports) -> Iterator[tuple[ServiceProcess, Path]]:
    workspace = tmp_path / "evidently"
    counts = [
        evidently_report.add_to_workspace(workspace, PROJECT, snapshot, name=month)
        for snapshot, month in zip(reports[:2], ["2026-02", "2026-03"], strict=True)
    ]
    assert counts == [1, 2]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_service(
        evidently_report.ui_command(workspace, "127.0.0.1", port),
        {**os.environ, "DO_NOT_TRACK": "1"},
        tmp_path / "evidently-ui.log",
        url,
        f"{url}/api/version",
        timeout_s=120,
    )
    try:
        yield server, workspace
    finally:
        server.stop()


def _snapshots(url: str) -> tuple[str, list[dict]]:
    projects = [p for p in _get_json(f"{url}/api/projects") if p["name"] == PROJECT]
    assert len(projects) == 1, projects
    project_id = projects[0]["id"]
    return project_id, _get_json(f"{url}/api/projects/{project_id}/snapshots")


def test_ui_lists_the_project_and_its_runs(ui, reports):
    server, workspace = ui
    project_id, snapshots = _snapshots(server.url)
    assert sorted(s["name"] for s in snapshots) == ["2026-02", "2026-03"]
    page = _get(f"{server.url}/projects/{project_id}")
    assert b"<html" in page.lower()

    # The monitor pipeline files runs while the UI keeps serving: the UI watches its folder.
    assert evidently_report.add_to_workspace(workspace, PROJECT, reports[2], name="2026-04") == 3
    deadline = time.monotonic() + 30
    while len(snapshots) < 3 and time.monotonic() < deadline:
        time.sleep(0.5)
        _, snapshots = _snapshots(server.url)
    assert len(snapshots) == 3
