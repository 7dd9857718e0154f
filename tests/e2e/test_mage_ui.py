"""The Mage UI in a real headless Chromium, against a real ``mage start`` (login on, as by default).

Mage's UI is a single-page app: the server's HTML names no pipeline, so finding `train` and
`monitor` on the page proves the JavaScript ran, logged in and drew the project's pipelines.
Only the tests that take the ``chromium`` fixture (tests/conftest.py) need the browser: without
it they are skipped, unless PERSONA_REQUIRE_BROWSER=1 (CI), which turns the skip into a failure.
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, free_port

from persona.errors import ConfigurationError, UpstreamUnavailableError
from persona.services.processes import start_service
from persona_tools.browser import BrowserError, HeadlessChromium, cells_present_js, missing_cells
from persona_tools.screenshots import (
    Credentials,
    MageClient,
    Shot,
    block_names,
    connect,
    open_browser,
    owner_credentials,
    show,
)

PIPELINES = ROOT / "02_pipeline/persona_pipelines/pipelines"
PYTHON = str(ROOT / ".venv/dev/bin/python")


@pytest.fixture(scope="module")
def mage_url(tmp_path_factory) -> Iterator[str]:
    """A real Mage (``python -m persona.services.mage``) on a free port, own SQLite database."""
    home = tmp_path_factory.mktemp("mage-ui") / "home"
    home.mkdir()
    port = free_port()
    env = {
        **os.environ,
        "PERSONA_HOME": str(home),
        "PERSONA_MAGE_PROJECT": str(ROOT / "02_pipeline/persona_pipelines"),
        "MAGE_DATA_DIR": str(home / "mage_data"),
        "PERSONA_MAGE_HOST": "127.0.0.1",
        "PERSONA_MAGE_PORT": str(port),
        "REQUIRE_USER_AUTHENTICATION": "1",  # Mage's default, stated: the test logs in
    }
    base = f"http://127.0.0.1:{port}"
    mage = start_service(
        [PYTHON, "-m", "persona.services.mage"],
        env,
        home.parent / "mage-server.log",
        base,
        f"{base}/api/status",
        240,
    )
    try:
        yield base
    finally:
        mage.stop()


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def test_pipelines_page_lists_train_and_monitor_once_rendered(chromium, mage_url, tmp_path):
    with urllib.request.urlopen(f"{mage_url}/pipelines", timeout=30) as response:
        raw = response.read().decode()
    # The server's page is an empty app shell: the names can only come from the browser.
    assert not re.search(r"\b(train|monitor)\b", raw)

    client = connect(mage_url, owner_credentials({}))
    assert client.session_token, "Mage runs with login here; the walkthrough must log in"
    with open_browser(client, binary=chromium) as browser:
        show(browser, mage_url, Shot("pipelines.png", "/pipelines", ("train", "monitor")), 120)
        assert missing_cells(browser.text(), ["train", "monitor"]) == []
        assert "sign-in" not in browser.url()
        assert re.search(r">\s*train\s*<", browser.html())  # in the rendered DOM
        shot = browser.screenshot(tmp_path / "pipelines.png")
        assert png_size(shot) == (1440, 900)

        train_blocks = block_names(yaml.safe_load((PIPELINES / "train/metadata.yaml").read_text()))
        expected = [name for name in train_blocks if name != "register_when_enabled"]
        assert {"load_customers", "train_candidates", "register_model"} <= set(expected)
        show(browser, mage_url, Shot("train.png", "/pipelines/train/edit", ("load_customers",)))
        assert missing_cells(browser.text(), expected) == []


def test_the_browser_waits_on_page_conditions_and_names_what_it_waited_for(chromium, tmp_path):
    """Playwright on Debian's chromium: no fixed sleeps, a timeout says what never appeared."""
    page = tmp_path / "late.html"
    page.write_text(
        "<body><p>loading</p><script>setTimeout(() => document.body.innerHTML ="
        " '<table><tr><td>train</td><td>monitor</td></tr></table>', 700)</script></body>"
    )
    with HeadlessChromium(binary=chromium, width=800, height=600) as browser:
        browser.open(page.as_uri(), 30)
        assert missing_cells(browser.text(), ["train"]) == ["train"]  # not drawn yet
        browser.wait_for(cells_present_js(["train", "monitor"]), 30, "the table")
        browser.wait_until_stable(quiet_s=0.5, timeout_s=10)
        assert missing_cells(browser.text(), ["train", "monitor"]) == []
        assert png_size(browser.screenshot(tmp_path / "late.png")) == (800, 600)
        with pytest.raises(BrowserError, match="timed out after 1s waiting for register_model"):
            browser.wait_for(cells_present_js(["register_model"]), 1, "register_model")
        with pytest.raises(BrowserError, match="script failed in the page"):
            browser.evaluate("no_such_function()")


def test_wrong_login_is_named(mage_url):
    with pytest.raises(ConfigurationError, match="Mage login failed for nobody@example.com"):
        MageClient(mage_url).login(Credentials("nobody@example.com", "wrong"))


def test_the_mage_client_names_a_mage_that_does_not_answer():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(UpstreamUnavailableError, match=f"Mage not answering at {url}"):
        MageClient(url).requires_login()


def screenshots(url: str, out: Path, *extra: str) -> subprocess.CompletedProcess:
    """``python -m persona_tools.screenshots`` (what make screenshots runs) into ``out``."""
    return subprocess.run(
        [PYTHON, "-m", "persona_tools.screenshots", "--url", url, "--out", str(out), *extra],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_screenshot_command_names_a_mage_that_does_not_answer(chromium, tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    result = screenshots(url, tmp_path, "--chromium", chromium)
    assert result.returncode == UpstreamUnavailableError.exit_code
    assert f"Mage not answering at {url}" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_screenshot_command_without_chromium_says_how_to_install_it(tmp_path):
    """Checked first, before Mage is asked anything: the likeliest thing to be missing."""
    url = f"http://127.0.0.1:{free_port()}"
    result = screenshots(url, tmp_path, "--chromium", str(tmp_path / "no-chromium"))
    assert result.returncode == ConfigurationError.exit_code
    assert "chromium not found" in result.stderr and "apt-get install chromium" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []
