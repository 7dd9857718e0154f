"""Pure helpers of the Mage UI screenshots and browser test: URLs, logins, runs, page text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from persona.errors import ConfigurationError
from persona_tools.browser import (
    _short,
    cells_present_js,
    find_chromium,
    missing_cells,
    visible_cells,
)
from persona_tools.screenshots import (
    MAGE_DEFAULT_EMAIL,
    MAGE_DEFAULT_PASSWORD,
    Credentials,
    block_names,
    mage_base_url,
    owner_credentials,
    page_url,
    pick_run,
    walkthrough,
)

ROOT = Path(__file__).resolve().parents[2]
README_FILES = {
    "mage-pipelines.png",
    "mage-train.png",
    "mage-monitor.png",
    "mage-runs.png",
    "mage-triggers.png",
}


@pytest.mark.parametrize(
    ("host", "port", "url"),
    [
        ("127.0.0.1", 6789, "http://127.0.0.1:6789"),
        ("0.0.0.0", 26789, "http://127.0.0.1:26789"),
        ("", 6789, "http://127.0.0.1:6789"),
        ("mage", 6789, "http://mage:6789"),
        ("::1", 6789, "http://[::1]:6789"),
    ],
)
def test_mage_base_url_is_reachable_from_this_machine(host, port, url):
    assert mage_base_url(host, port) == url


def test_page_url_joins_without_double_slashes():
    assert page_url("http://h:1/", "/pipelines") == "http://h:1/pipelines"
    assert (
        page_url("http://h:1/mage", "pipelines/train/edit")
        == "http://h:1/mage/pipelines/train/edit"
    )


def test_owner_credentials_follow_mage_fallbacks():
    assert owner_credentials({}) == Credentials(MAGE_DEFAULT_EMAIL, MAGE_DEFAULT_PASSWORD)
    # An empty value (as in a fresh .env.example) means Mage's default too.
    assert owner_credentials({"DEFAULT_OWNER_EMAIL": "", "DEFAULT_OWNER_PASSWORD": ""}) == (
        Credentials("admin@admin.com", "admin")
    )
    password = "not-the-default"  # pragma: allowlist secret
    chosen = {"DEFAULT_OWNER_EMAIL": "me@x.org", "DEFAULT_OWNER_PASSWORD": password}
    assert owner_credentials(chosen) == Credentials("me@x.org", password)


def test_block_names_of_the_real_pipelines_include_conditionals():
    pipelines = ROOT / "02_pipeline/persona_pipelines/pipelines"
    train = block_names(yaml.safe_load((pipelines / "train/metadata.yaml").read_text()))
    monitor = block_names(yaml.safe_load((pipelines / "monitor/metadata.yaml").read_text()))
    assert train[0] == "load_customers" and "register_when_enabled" in train
    assert {"retrain_on_drift", "when_retraining", "when_not_retraining"} <= set(monitor)


def test_pick_run_prefers_the_newest_completed_run():
    runs = [
        {"id": 1, "status": "completed"},
        {"id": 3, "status": "failed"},
        {"id": 2, "status": "completed"},
    ]
    assert pick_run(runs) == 2
    assert pick_run([{"id": 4, "status": "failed"}, {"id": 5, "status": "running"}]) == 5
    assert pick_run([]) is None


def test_walkthrough_uses_the_readme_file_names():
    with_run = walkthrough(("train", 7))
    assert {shot.file for shot in with_run} == README_FILES
    runs = next(shot for shot in with_run if shot.file == "mage-runs.png")
    assert runs.path == "/pipelines/train/runs/7"
    without = walkthrough(None)
    assert {shot.file for shot in without} == README_FILES - {"mage-runs.png"}
    assert all(shot.expect for shot in with_run)


def test_cells_are_whole_names_not_substrings():
    text = "Name\tTags\n\tmonitor\t\tmonitoring\n\ttrain \ttraining\nload_customers\n"
    assert {"monitor", "train", "training", "load_customers"} <= visible_cells(text)
    assert missing_cells(text, ["train", "monitor", "register_model"]) == ["register_model"]
    assert missing_cells("\ttraining\t", ["train"]) == ["train"]


def test_cells_present_js_embeds_the_names_as_json():
    script = cells_present_js(['a "quoted" name', "train"])
    assert json.dumps(['a "quoted" name', "train"]) in script
    assert "split(/[\\t\\n]/)" in script


def test_missing_chromium_tells_how_to_install_it(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ConfigurationError, match="chromium not found: apt-get install chromium"):
        find_chromium()
    with pytest.raises(ConfigurationError, match="apt-get install chromium"):
        find_chromium("my-chromium")


def test_playwright_launch_errors_keep_the_browser_output_not_the_command_line():
    message = (
        "BrowserType.launch: Target page, context or browser has been closed\n"
        "Browser logs:\n\n<launching> /usr/bin/chromium --headless --no-sandbox\n"
        "<launched> pid=7\n[pid=7][err] cannot open display\n"
        "Call log:\n  - <launching> /usr/bin/chromium --headless\n  - [pid=7] <kill>\n"
    )
    assert _short(message) == (
        "BrowserType.launch: Target page, context or browser has been closed"
        " [pid=7][err] cannot open display"
    )
    assert (
        _short("Page.goto: net::ERR_CONNECTION_REFUSED") == "Page.goto: net::ERR_CONNECTION_REFUSED"
    )
