"""Headless Chromium through Playwright: Debian's ``chromium``, no browser download.

Mage's UI is a single-page app: the server's HTML holds none of its content, so screenshots
and browser tests need a real browser that runs the JavaScript and a way to wait until the
page has rendered. Playwright drives the Chromium found on PATH (``executable_path``), so
``playwright install`` is never needed; every wait is on a condition in the page.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from persona.errors import ConfigurationError, UpstreamUnavailableError

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Playwright

logger = logging.getLogger(__name__)

BINARIES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_HINT = "apt-get install chromium"

# Beside Playwright's own headless defaults (no sync, updates, first-run dialogs, sandbox,
# /dev/shm, scrollbars): no GPU and no QUIC, as in every headless run here.
FLAGS = ("--disable-gpu", "--disable-quic")

# How often a page condition is checked (Playwright polls it inside the page).
POLL_MS = 250

# True once the rendered page has not changed for ``quiet`` ms (its fingerprint: ready state and
# the sizes of the DOM and of the visible text), polled by Playwright.
_STABLE_JS = """quiet => {
  const b = document.body;
  const print = b ? document.readyState + ':' + b.innerHTML.length + ':' + b.innerText.length : '';
  const now = performance.now(), last = window.__personaStable;
  if (!last || last.print !== print) { window.__personaStable = {print, since: now}; return false; }
  return now - last.since >= quiet;
}"""


class BrowserError(UpstreamUnavailableError):
    """Chromium failed to start, crashed, or a page never reached the expected state."""


class BrowserTimeout(BrowserError):
    """A page did not reach the awaited state in time."""


def _short(message: str) -> str:
    """Playwright's error text without its launch command line and call log."""
    head, _, rest = message.partition("\n")
    browser_logs = rest.split("Call log:")[0].splitlines()
    detail = [line.strip() for line in browser_logs if line.strip()[:1] not in ("", "<")]
    detail = [line for line in detail if line != "Browser logs:"]
    return " ".join([head, *detail[-5:]])[:1000]


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
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._page: Page | None = None

    def __enter__(self) -> HeadlessChromium:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> None:
        """Launch Chromium and open its page; a no-op when already running."""
        if self._page is not None:
            return
        from playwright.sync_api import Error, sync_playwright

        try:
            self._playwright = sync_playwright().start()
            self._browser = self._playwright.chromium.launch(
                executable_path=self.binary, headless=True, args=list(FLAGS)
            )
            context = self._browser.new_context(
                viewport={"width": self.width, "height": self.height}
            )
            context.set_default_timeout(self.command_timeout_s * 1000)
            self._page = context.new_page()
        except Error as exc:
            self.close()
            raise BrowserError(
                f"chromium ({self.binary}) did not start: {_short(exc.message)}"
            ) from None
        logger.debug("chromium %s started through Playwright", self._browser.version)

    def close(self) -> None:
        from playwright.sync_api import Error

        browser, playwright = self._browser, self._playwright
        self._page = self._browser = self._playwright = None
        if browser is not None:
            with contextlib.suppress(Error):
                browser.close()
        if playwright is not None:
            with contextlib.suppress(Error):
                playwright.stop()

    @property
    def page(self) -> Page:
        if self._page is None:
            raise BrowserError("chromium is not running")
        return self._page

    @contextlib.contextmanager
    def _failing_as(self, what: str, timeout_message: str | None = None) -> Iterator[None]:
        """Playwright's errors (crash, closed page, timeout) as a BrowserError naming ``what``."""
        from playwright.sync_api import Error
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        try:
            yield
        except PlaywrightTimeout:
            raise BrowserTimeout(timeout_message or f"{what}: timed out") from None
        except Error as exc:
            raise BrowserError(f"{what}: {_short(exc.message)}") from None

    # -- page -----------------------------------------------------------------------------
    def set_cookie(self, url: str, name: str, value: str) -> None:
        """A cookie for ``url``'s site, set before the page that needs it is opened."""
        with self._failing_as(f"could not set cookie {name} for {url}"):
            self.page.context.add_cookies([{"url": url, "name": name, "value": value}])

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-serialisable values only)."""
        with self._failing_as("script failed in the page"):
            return self.page.evaluate(expression)

    def open(self, url: str, timeout_s: float = 30.0) -> None:
        """Navigate and wait for the document to load (the app may still be fetching data)."""
        with self._failing_as(f"could not open {url}"):
            self.page.goto(url, wait_until="load", timeout=timeout_s * 1000)

    def wait_for(self, predicate_js: str, timeout_s: float, what: str) -> None:
        """Wait until a JS predicate is true in the page, or fail naming ``what`` was awaited."""
        timed_out = f"timed out after {timeout_s:.0f}s waiting for {what}"
        with self._failing_as(f"waiting for {what}", timed_out):
            self.page.wait_for_function(predicate_js, timeout=timeout_s * 1000, polling=POLL_MS)

    def wait_until_stable(self, quiet_s: float = 1.5, timeout_s: float = 20.0) -> None:
        """Wait until the rendered page stops changing (spinners gone, data drawn)."""
        self.evaluate("delete window.__personaStable")
        try:
            with self._failing_as("waiting for a still page"):
                self.page.wait_for_function(
                    _STABLE_JS, arg=quiet_s * 1000, timeout=timeout_s * 1000, polling=POLL_MS
                )
        except BrowserTimeout:
            logger.warning("page still changing after %.0fs; capturing it anyway", timeout_s)

    def resize(self, width: int, height: int) -> None:
        """Change the viewport (``width``/``height`` stay the screenshot size)."""
        with self._failing_as("could not resize the page"):
            self.page.set_viewport_size({"width": width, "height": height})

    def text(self) -> str:
        """The page's visible text, as a user reads it."""
        return self.evaluate("document.body ? document.body.innerText : ''") or ""

    def html(self) -> str:
        """The rendered DOM (after JavaScript), not the server's HTML."""
        with self._failing_as("could not read the page"):
            return self.page.content()

    def url(self) -> str:
        return self.page.url

    def screenshot(self, path: Path) -> Path:
        """A PNG of the viewport."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._failing_as(f"could not take a screenshot into {path}"):
            self.page.screenshot(path=str(path), type="png")
        return path
