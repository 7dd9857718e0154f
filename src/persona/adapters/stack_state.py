"""What a walk through the running stack asks its services over plain HTTP: are you up, which
model version do you serve. For ``persona.flows.demo``; a failure names what to do.
"""

from __future__ import annotations

import logging

import requests

from persona.errors import UpstreamUnavailableError
from persona.services.processes import ServiceStartError, wait_http

logger = logging.getLogger(__name__)


def require_answer(name: str, url: str, timeout_s: float = 30.0) -> None:
    """Fail with the fix (start the stack) when a service does not answer its health URL."""
    try:
        wait_http(url, timeout_s)
    except ServiceStartError:
        raise UpstreamUnavailableError(
            f"{name} does not answer at {url}; start the stack with `make local-up` "
            "(`make local-status` tells what answers, logs are under PERSONA_HOME/logs)"
        ) from None


def read_ready(scoring_url: str, timeout_s: float = 5.0) -> tuple[str | None, str]:
    """(served version, detail) from the API's /ready, on a fresh connection each time.

    A fresh connection lets the kernel hand the request to any worker: each worker follows
    the alias on its own, so asking one keep-alive connection would ask one worker only.
    """
    url = f"{scoring_url.rstrip('/')}/ready"
    try:
        response = requests.get(url, timeout=timeout_s, headers={"Connection": "close"})
        body = response.json()
    except (requests.RequestException, ValueError) as exc:
        return None, f"{url}: {type(exc).__name__}"
    if response.status_code == 200 and body.get("ready"):
        return str(body.get("version")), ""
    return None, str(body.get("reason") or f"HTTP {response.status_code}")
