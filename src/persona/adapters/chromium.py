"""Headless Chromium driven over the DevTools protocol on a pipe: no Python dependency.

Mage's UI is a single-page app: the server's HTML holds none of its content, so screenshots
and browser tests need a real browser that runs the JavaScript and a way to wait until the
page has rendered. Chromium's ``--remote-debugging-pipe`` speaks DevTools JSON messages
(NUL-terminated) on file descriptors 3 and 4; this module is the only place that knows it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from persona.errors import ConfigurationError, UpstreamUnavailableError

logger = logging.getLogger(__name__)

BINARIES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_HINT = "apt-get install chromium"

# Flags for a quiet, self-contained headless run (no sync, updates or first-run dialogs).
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
    "--remote-debugging-pipe",
)

# Chromium must read commands on fd 3 and write replies on fd 4: the shell maps our stdin/stdout
# pipes there and gives the browser /dev/null instead, so no preexec_fn is needed.
_LAUNCH = 'exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>/dev/null'

# A fingerprint of the rendered page, compared between polls to know it stopped changing.
_FINGERPRINT_JS = (
    "(() => { const b = document.body; if (!b) return ''; "
    "return document.readyState + ':' + b.innerHTML.length + ':' + b.innerText.length; })()"
)


class BrowserError(UpstreamUnavailableError):
    """Chromium failed to start, crashed, or a page never reached the expected state."""


def find_chromium(explicit: str | None = None) -> str:
    """Path of the Chromium binary, or a ConfigurationError telling how to install it."""
    if explicit:
        found = shutil.which(explicit)
        if not found:
            raise ConfigurationError(f"chromium not found at {explicit!r}: {INSTALL_HINT}")
        return found
    for name in BINARIES:
        found = shutil.which(name)
        if found:
            return found
    raise ConfigurationError(f"chromium not found: {INSTALL_HINT}")


def visible_cells(text: str) -> set[str]:
    """The cells of a page's visible text: its lines and tab-separated table cells, trimmed.

    Matching whole cells, not substrings, keeps "train" from being found in "training".
    """
    return {cell.strip() for line in text.splitlines() for cell in line.split("\t")} - {""}


def missing_cells(text: str, expected: Sequence[str]) -> list[str]:
    """Those of ``expected`` that are not a cell of the visible ``text``."""
    cells = visible_cells(text)
    return [name for name in expected if name not in cells]


def cells_present_js(expected: Sequence[str]) -> str:
    """A JS predicate: every one of ``expected`` is a cell of the page (as ``visible_cells``)."""
    return (
        "(() => { const t = document.body ? document.body.innerText : ''; "
        "const cells = new Set(t.split(/[\\t\\n]/).map(s => s.trim())); "
        f"return {json.dumps(list(expected))}.every(s => cells.has(s)); }})()"
    )


class HeadlessChromium:
    """One headless browser with one page; use as a context manager so the process always ends."""

    def __init__(
        self,
        binary: str | None = None,
        width: int = 1440,
        height: int = 900,
        command_timeout_s: float = 30.0,
    ) -> None:
        self.binary = find_chromium(binary)
        self.width, self.height = width, height
        self.command_timeout_s = command_timeout_s
        self._process: subprocess.Popen | None = None
        self._profile: tempfile.TemporaryDirectory | None = None
        self._stderr: Any = None
        self._buffer = b""
        self._next_id = 0
        self._session: str | None = None

    # -- process --------------------------------------------------------------------------
    def __enter__(self) -> HeadlessChromium:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> None:
        """Launch Chromium and open its page; a no-op when already running."""
        if self._process is not None:
            return
        self._profile = tempfile.TemporaryDirectory(
            prefix="persona-chromium-", ignore_cleanup_errors=True
        )
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        command = [
            "/bin/sh",
            "-c",
            _LAUNCH,
            self.binary,
            *FLAGS,
            f"--user-data-dir={self._profile.name}",
            f"--window-size={self.width},{self.height}",
            "about:blank",
        ]
        logger.debug("starting %s", " ".join(command))
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            start_new_session=True,
        )
        try:
            target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)
            attached = self.send(
                "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}, False
            )
            self._session = attached["sessionId"]
            self.send("Page.enable")
            self.send("Runtime.enable")
            self.resize(self.width, self.height)
        except BrowserError:
            self.close()
            raise

    def close(self) -> None:
        process, self._process, self._session = self._process, None, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(BrowserError):
                self.send("Browser.close", session=False, process=process, timeout_s=5)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if process is not None:
            for stream in (process.stdin, process.stdout):
                if stream:
                    stream.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        if self._profile is not None:
            self._profile.cleanup()
            self._profile = None

    def _stderr_tail(self, chars: int = 1500) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-chars:]

    # -- protocol -------------------------------------------------------------------------
    def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session: bool = True,
        process: subprocess.Popen | None = None,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """Send one DevTools command and return its result (events in between are dropped)."""
        process = process or self._process
        if process is None or process.stdin is None or process.stdout is None:
            raise BrowserError("chromium is not running")
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session and self._session:
            message["sessionId"] = self._session
        try:
            process.stdin.write(json.dumps(message).encode() + b"\0")
            process.stdin.flush()
        except (BrokenPipeError, ValueError):
            raise BrowserError(f"chromium exited: {self._stderr_tail()}") from None
        deadline = time.monotonic() + (timeout_s or self.command_timeout_s)
        while True:
            reply = self._read_message(process, deadline, method)
            if reply.get("id") == message["id"]:
                if "error" in reply:
                    raise BrowserError(f"{method} failed: {reply['error'].get('message')}")
                return reply.get("result", {})

    def _read_message(
        self, process: subprocess.Popen, deadline: float, method: str
    ) -> dict[str, Any]:
        assert process.stdout is not None
        fd = process.stdout.fileno()
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrowserError(f"chromium did not answer {method} in time")
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                raise BrowserError(f"chromium exited: {self._stderr_tail()}")
            self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(raw)

    # -- page -----------------------------------------------------------------------------
    def set_cookie(self, url: str, name: str, value: str) -> None:
        """A cookie for ``url``'s site, set before the page that needs it is opened."""
        result = self.send("Network.setCookie", {"url": url, "name": name, "value": value})
        if result.get("success") is False:
            raise BrowserError(f"could not set cookie {name} for {url}")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-serialisable values only)."""
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            detail = result["exceptionDetails"].get("exception", {}).get("description")
            raise BrowserError(f"script failed in the page: {detail or result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    def open(self, url: str, timeout_s: float = 30.0) -> None:
        """Navigate and wait for the document to load (the app may still be fetching data)."""
        result = self.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise BrowserError(f"could not open {url}: {result['errorText']}")
        self.wait_for("document.readyState === 'complete'", timeout_s, f"{url} to load")

    def wait_for(self, predicate_js: str, timeout_s: float, what: str) -> None:
        """Poll a JS predicate until it is true, or fail naming ``what`` was awaited."""
        deadline = time.monotonic() + timeout_s
        while not self.evaluate(predicate_js):
            if time.monotonic() > deadline:
                raise BrowserError(f"timed out after {timeout_s:.0f}s waiting for {what}")
            time.sleep(0.25)

    def wait_until_stable(self, quiet_s: float = 1.5, timeout_s: float = 20.0) -> None:
        """Wait until the rendered page stops changing (spinners gone, data drawn)."""
        deadline = time.monotonic() + timeout_s
        last, since = None, time.monotonic()
        while time.monotonic() < deadline:
            current = self.evaluate(_FINGERPRINT_JS)
            if current != last:
                last, since = current, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                return
            time.sleep(0.25)
        logger.warning("page still changing after %.0fs; capturing it anyway", timeout_s)

    def resize(self, width: int, height: int) -> None:
        """Change the viewport (``width``/``height`` stay the screenshot size)."""
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )

    def text(self) -> str:
        """The page's visible text, as a user reads it."""
        return self.evaluate("document.body ? document.body.innerText : ''") or ""

    def html(self) -> str:
        """The rendered DOM (after JavaScript), not the server's HTML."""
        return self.evaluate("document.documentElement.outerHTML") or ""

    def url(self) -> str:
        return self.evaluate("location.href") or ""

    def screenshot(self, path: Path) -> Path:
        """A PNG of the viewport."""
        result = self.send("Page.captureScreenshot", {"format": "png"})
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(result["data"]))
        return path
