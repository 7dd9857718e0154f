"""``python -m persona_tools.screenshots``: the Mage UI walkthrough's screenshots, by script.

The README's walkthrough shows what a user sees in Mage: the pipelines list, the `train` and
`monitor` pipelines, a run's block statuses and the triggers. Taking them by hand drifts out
of date; this drives headless Chromium (through Playwright: ``persona_tools.browser``) against
a running ``mage start`` (``make mage`` or ``make local-up``) and rewrites the PNGs in
``docs/images``. Mage's UI is a single-page app, so each page is waited for until its content
(pipeline, block or trigger names) is drawn and has stopped changing. ``make screenshots``
runs it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from persona.errors import ConfigurationError, UpstreamUnavailableError
from persona_tools.browser import (
    BrowserError,
    HeadlessChromium,
    cells_present_js,
    find_chromium,
)

logger = logging.getLogger(__name__)

# Mage's own browser app: its public OAuth client id (mage_ai.settings.server
# OAUTH2_APPLICATION_CLIENT_ID, shipped in the UI's JavaScript) and the cookie holding the session.
MAGE_CLIENT_ID = "zkWlN0PkIKSN0C11CfUHUj84OT5XOJ6tDZ6bDRO2"
MAGE_SESSION_COOKIE = "oauth_token"
# What `mage start` creates as owner when DEFAULT_OWNER_EMAIL/PASSWORD are unset or empty
# (mage_ai.settings.server): a public default, not a secret of ours.
MAGE_DEFAULT_EMAIL = "admin@admin.com"
MAGE_DEFAULT_PASSWORD = "admin"  # pragma: allowlist secret

# Clicks the "fit" button of Mage's block tree (the editor opens it at 100%, often cropped).
_FIT_TREE_JS = (
    "(() => { const b = document.querySelector('[class*=ZoomControlsStyle] button'); "
    "if (b) b.click(); return !!b; })()"
)


@dataclass(frozen=True)
class Shot:
    """One screenshot: the page, and the visible texts that prove it has rendered."""

    file: str
    path: str
    expect: tuple[str, ...]
    fit_tree: bool = False


@dataclass(frozen=True)
class Credentials:
    email: str
    password: str


def mage_base_url(host: str, port: int) -> str:
    """Where a browser on this machine reaches Mage (a wildcard bind address means loopback)."""
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def page_url(base_url: str, path: str) -> str:
    """``base_url`` (with or without a trailing slash or sub-path) joined with a UI path."""
    return base_url.rstrip("/") + "/" + path.lstrip("/")


def owner_credentials(environ: Mapping[str, str]) -> Credentials:
    """The login `mage start` gave its owner: DEFAULT_OWNER_EMAIL/PASSWORD, else Mage's defaults."""
    return Credentials(
        environ.get("DEFAULT_OWNER_EMAIL") or MAGE_DEFAULT_EMAIL,
        environ.get("DEFAULT_OWNER_PASSWORD") or MAGE_DEFAULT_PASSWORD,
    )


def block_names(metadata: Mapping[str, Any]) -> list[str]:
    """Block and conditional names of a pipeline's metadata.yaml, in file order."""
    blocks = list(metadata.get("blocks") or []) + list(metadata.get("conditionals") or [])
    return [block.get("name") or block["uuid"] for block in blocks]


def pick_run(runs: Sequence[Mapping[str, Any]]) -> int | None:
    """The run worth showing: the newest completed one, else the newest of any status."""
    if not runs:
        return None
    newest_first = sorted(runs, key=lambda run: int(run["id"]), reverse=True)
    for run in newest_first:
        if str(run.get("status", "")).lower() == "completed":
            return int(run["id"])
    return int(newest_first[0]["id"])


def walkthrough(run: tuple[str, int] | None) -> list[Shot]:
    """The screenshots of the README walkthrough; the runs page only when a run exists."""
    shots = [
        Shot("mage-pipelines.png", "/pipelines", ("train", "monitor")),
        Shot(
            "mage-train.png",
            "/pipelines/train/edit",
            ("load_customers", "validate_customers", "register_model"),
            fit_tree=True,
        ),
        Shot(
            "mage-monitor.png",
            "/pipelines/monitor/edit",
            ("check_drift", "retrain_on_drift", "alert_no_retrain", "when_retraining"),
            fit_tree=True,
        ),
    ]
    if run is not None:
        pipeline, run_id = run
        shots.append(Shot("mage-runs.png", f"/pipelines/{pipeline}/runs/{run_id}", ("Block runs",)))
    shots.append(
        Shot("mage-triggers.png", "/pipelines/monitor/triggers", ("monitor_api", "monitor_monthly"))
    )
    return shots


class MageClient:
    """The few Mage HTTP calls the walkthrough needs: status, login, pipeline runs."""

    def __init__(self, base_url: str, timeout_s: float = 15.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.session_token: str | None = None

    def _request(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        headers = {"X-API-KEY": MAGE_CLIENT_ID, "Content-Type": "application/json"}
        if self.session_token:
            headers["Cookie"] = f"{MAGE_SESSION_COOKIE}={self.session_token}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(page_url(self.base_url, path), data, headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                payload = json.loads(response.read() or b"{}")
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise UpstreamUnavailableError(
                f"Mage not answering at {self.base_url} ({reason}): start it with "
                "`make mage` or `make local-up`, or pass --url"
            ) from None
        except json.JSONDecodeError:
            raise UpstreamUnavailableError(
                f"{self.base_url} answered {path} with something other than Mage's JSON API"
            ) from None
        return payload

    def requires_login(self) -> bool:
        """True when Mage runs with user authentication (its default, and Compose's)."""
        statuses = self._request("/api/status").get("statuses") or [{}]
        return bool(statuses[0].get("require_user_authentication", True))

    def login(self, credentials: Credentials) -> str:
        """A session token for the browser's cookie; a clear error on a wrong login."""
        payload = self._request(
            "/api/sessions",
            {"session": {"email": credentials.email, "password": credentials.password}},
        )
        token = (payload.get("session") or {}).get("token")
        if not token:
            message = (payload.get("error") or {}).get("message") or "no session returned"
            raise ConfigurationError(
                f"Mage login failed for {credentials.email} ({message}): pass --email/--password "
                "or set DEFAULT_OWNER_EMAIL/DEFAULT_OWNER_PASSWORD as Mage was started with"
            )
        self.session_token = token
        return token

    def pipeline_runs(self, pipeline: str, limit: int = 30) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode({"pipeline_uuid": pipeline, "_limit": limit})
        payload = self._request(f"/api/pipeline_runs?{query}")
        if "error" in payload:
            raise UpstreamUnavailableError(
                f"Mage refused to list runs of {pipeline}: {payload['error'].get('message')}"
            )
        return list(payload.get("pipeline_runs") or [])


def connect(base_url: str, credentials: Credentials) -> MageClient:
    """A client of the Mage at ``base_url``, logged in when Mage asks for a login."""
    client = MageClient(base_url)
    if client.requires_login():
        client.login(credentials)
        logger.info("logged in to Mage at %s as %s", base_url, credentials.email)
    return client


def open_browser(client: MageClient, **browser_options: Any) -> HeadlessChromium:
    """A started headless Chromium that carries the client's Mage session (if any)."""
    browser = HeadlessChromium(**browser_options)
    browser.start()
    try:
        if client.session_token:
            browser.set_cookie(client.base_url, MAGE_SESSION_COOKIE, client.session_token)
    except BrowserError:
        browser.close()
        raise
    return browser


def show(browser: HeadlessChromium, base_url: str, shot: Shot, timeout_s: float = 90.0) -> None:
    """Open a Mage page and wait until it is drawn, its tree fitted and nothing moves any more."""
    url = page_url(base_url, shot.path)
    browser.open(url, timeout_s)
    try:
        browser.wait_for(cells_present_js(shot.expect), timeout_s, f"{shot.expect} on {url}")
    except BrowserError:
        if "sign-in" in browser.url():
            raise ConfigurationError(
                f"Mage showed its sign-in page for {url}: the session was not accepted"
            ) from None
        raise
    browser.wait_until_stable(quiet_s=2.0)
    # Mage fits its block trees to their panel only on some renders: a resize triggers it on
    # the runs and triggers pages; the editor has a "fit" button.
    browser.resize(browser.width - 40, browser.height)
    browser.wait_until_stable(quiet_s=0.5, timeout_s=5.0)
    browser.resize(browser.width, browser.height)
    if shot.fit_tree and not browser.evaluate(_FIT_TREE_JS):
        logger.debug("no tree zoom controls on %s", url)
    browser.wait_until_stable(quiet_s=1.5)


def latest_run(
    client: MageClient, pipelines: Sequence[str] = ("train", "monitor")
) -> tuple[str, int] | None:
    """(pipeline, run id) of the first pipeline that has a run, preferring a completed one."""
    for pipeline in pipelines:
        run_id = pick_run(client.pipeline_runs(pipeline))
        if run_id is not None:
            return pipeline, run_id
    return None


def take_screenshots(
    base_url: str,
    out_dir: Path,
    credentials: Credentials,
    chromium: str | None = None,
    width: int = 1440,
    height: int = 900,
    timeout_s: float = 90.0,
) -> list[Path]:
    """Every walkthrough PNG into ``out_dir``; the runs page is skipped (with a warning) if no run."""
    chromium = find_chromium(chromium)  # before anything else: the likeliest thing to be missing
    client = connect(base_url, credentials)
    run = latest_run(client)
    if run is None:
        logger.warning("no pipeline run in Mage yet: mage-runs.png not taken (run `make train`)")
    written = []
    with open_browser(client, binary=chromium, width=width, height=height) as browser:
        for shot in walkthrough(run):
            started = time.monotonic()
            show(browser, base_url, shot, timeout_s)
            path = browser.screenshot(Path(out_dir) / shot.file)
            logger.info(
                "%s <- %s (%.1fs, %d KB)",
                path,
                shot.path,
                time.monotonic() - started,
                path.stat().st_size // 1024,
            )
            written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    from persona.entry import run_entry
    from persona.settings import Settings

    parser = argparse.ArgumentParser(
        prog="python -m persona_tools.screenshots",
        description="Screenshots of the Mage UI (pipelines, train, monitor, a run, triggers).",
    )
    parser.add_argument("--url", help="Mage base URL (default: PERSONA_MAGE_HOST/PORT)")
    parser.add_argument("--out", type=Path, default=Path("docs/images"), help="output folder")
    parser.add_argument("--email", help="Mage login (default: DEFAULT_OWNER_EMAIL or Mage's)")
    parser.add_argument(
        "--password", help="Mage password (default: DEFAULT_OWNER_PASSWORD or Mage's)"
    )
    parser.add_argument("--chromium", help="Chromium binary (default: chromium on PATH)")
    parser.add_argument("--width", type=int, default=1440)
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds per page")
    args = parser.parse_args(argv)

    def body(settings: Settings) -> None:
        base_url = args.url or mage_base_url(settings.mage_host, settings.mage_port)
        owner = owner_credentials(os.environ)
        credentials = Credentials(args.email or owner.email, args.password or owner.password)
        started = time.monotonic()
        written = take_screenshots(
            base_url, args.out, credentials, args.chromium, args.width, args.height, args.timeout
        )
        elapsed = time.monotonic() - started
        logger.info("%d screenshots in %s (%.0fs)", len(written), args.out, elapsed)

    return run_entry(body, logger)


if __name__ == "__main__":
    raise SystemExit(main())
