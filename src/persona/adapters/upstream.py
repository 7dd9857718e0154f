"""Fail fast and say so: a bounded wait for a service, and outages told in one line.

Two things every entry point needs when MLflow or PostgreSQL is down: a probe that retries on
a short, logged schedule and then names the service (instead of MLflow's own client retrying
for minutes in silence), and a reading of a third-party exception as an outage
(``UpstreamUnavailableError``: one line, the exit code of an unavailable upstream) instead of a
traceback with a dump of SQL parameters.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from persona.errors import ConfigurationError, UpstreamUnavailableError

logger = logging.getLogger(__name__)

RERUN_IS_SAFE = "a rerun is safe"


@dataclass(frozen=True)
class Backoff:
    """How long to wait for a service: doubling delays, each attempt and the whole bounded.

    ``budget_s`` bounds the whole wait (attempts and delays); an attempt never runs past it.
    """

    budget_s: float = 20.0
    first_delay_s: float = 1.0
    max_delay_s: float = 8.0
    attempt_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        for name in ("budget_s", "first_delay_s", "max_delay_s", "attempt_timeout_s"):
            value = getattr(self, name)
            if not value > 0:
                raise ConfigurationError(f"backoff {name}={value!r}: must be a positive number")

    def delays(self) -> tuple[float, ...]:
        """The waits between attempts when every attempt fails at once (a closed port)."""
        delays: list[float] = []
        delay = self.first_delay_s
        while sum(delays) + delay < self.budget_s:
            delays.append(delay)
            delay = min(2 * delay, self.max_delay_s)
        return tuple(delays)

    @property
    def attempts(self) -> int:
        return len(self.delays()) + 1


def wait_for(
    what: str,
    attempt: Callable[[float], str | None],
    backoff: Backoff,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Call ``attempt(timeout_s)`` until it returns None (answered) or the budget is spent.

    ``attempt`` returns what went wrong (e.g. "ConnectionError") or None. Each retry is logged
    while it waits; the end is one ``UpstreamUnavailableError`` naming ``what``.
    """
    start = clock()
    deadline = start + backoff.budget_s
    delays = backoff.delays()
    total = len(delays) + 1
    for number in range(1, total + 1):
        timeout = max(0.1, min(backoff.attempt_timeout_s, deadline - clock()))
        problem = attempt(timeout)
        if problem is None:
            if number > 1:
                logger.info("%s answered (attempt %d of %d)", what, number, total)
            return
        if number == total:
            break
        delay = delays[number - 1]
        if clock() + delay >= deadline:
            break
        logger.warning(
            "%s did not answer (attempt %d of %d: %s), retrying in %.0f s",
            what,
            number,
            total,
            problem,
            delay,
        )
        sleep(delay)
    raise UpstreamUnavailableError(
        f"{what} did not answer ({problem}); gave up after {number} attempt(s) "
        f"in {clock() - start:.0f} s"
    )


def request_bound_s(retries: int, backoff_factor: float, timeout_s: float) -> float:
    """The longest one MLflow client request can take (urllib3's retry schedule).

    urllib3 2 waits 0 s before the first retry, then ``factor * 2**(n-1)`` before the n-th
    consecutive one; every attempt may wait ``timeout_s`` for a host that does not answer.
    """
    waits = sum(backoff_factor * 2 ** (n - 1) for n in range(2, retries + 1))
    return (retries + 1) * timeout_s + waits


# -------------------------------------------------------------------- outages in one line

_DISCONNECT = re.compile(
    r"server closed the connection|terminating connection|connection (refused|reset|timed out)"
    r"|could not connect|connection already closed|SSL SYSCALL|no connection to the server"
    r"|Connection is closed|could not translate host name",
    re.IGNORECASE,
)
_MLFLOW_UNANSWERED = re.compile(
    r"API request to (?P<url>https?://[^/\s]+)\S* failed with exception (?P<detail>.*)",
    re.DOTALL,
)


def first_line(text: object, limit: int = 200) -> str:
    """The first non-empty line of an error text, cut short (no SQL, no parameter dump)."""
    for line in str(text).splitlines():
        if line.strip():
            return line.strip()[:limit]
    return ""


def short_reason(exc: BaseException) -> str:
    """A database error in one line: the driver's first line, never SQLAlchemy's appended
    statement and parameter dump."""
    orig = getattr(exc, "orig", None)
    return first_line(orig if orig is not None else exc) or type(exc).__name__


def _is_instance(exc: BaseException, module: str, *names: str) -> bool:
    """isinstance against a class of an already imported module (importing nothing here)."""
    loaded = sys.modules.get(module)
    classes = tuple(getattr(loaded, name) for name in names if hasattr(loaded, name))
    return bool(classes) and isinstance(exc, classes)


def database_disconnect(exc: BaseException) -> str | None:
    """The driver's one-line reason when ``exc`` is a lost or refused database connection."""
    if _is_instance(exc, "sqlalchemy.exc", "DBAPIError"):
        if getattr(exc, "connection_invalidated", False) or _is_instance(
            exc, "sqlalchemy.exc", "OperationalError", "InterfaceError"
        ):
            return short_reason(exc)
        return None
    if _is_instance(exc, "psycopg2", "OperationalError", "InterfaceError"):
        return first_line(exc) or type(exc).__name__
    if _is_instance(exc, "sqlalchemy.exc", "SQLAlchemyError") and _DISCONNECT.search(str(exc)):
        return first_line(exc)
    return None


def mlflow_unanswered(exc: BaseException) -> str | None:
    """ "MLflow at URL did not answer (…)" when ``exc`` is the client giving up on the server."""
    if _is_instance(exc, "mlflow.exceptions", "MlflowException"):
        found = _MLFLOW_UNANSWERED.search(str(exc))
        if found is None:
            return None
        detail = found["detail"]
        reason = re.search(r"Caused by (\w+)|(Read timed out)|(\w+Error)", detail)
        said = next((g for g in reason.groups() if g), "no answer") if reason else "no answer"
        return f"MLflow at {found['url']} did not answer ({said})"
    if _is_instance(exc, "requests.exceptions", "ConnectionError", "Timeout"):
        request = getattr(exc, "request", None)
        url = getattr(request, "url", None) or ""
        host = re.match(r"https?://[^/]+", url)
        return f"{host.group(0) if host else 'a service'} did not answer ({type(exc).__name__})"
    return None


def as_outage(exc: BaseException, step: str) -> UpstreamUnavailableError | None:
    """``exc`` (or what caused it) as one line naming the step, when it is an outage.

    None for anything else: an unexpected failure keeps its traceback.
    """
    seen: BaseException | None = exc
    for _ in range(5):  # the exception and what caused it, a few levels deep
        if seen is None:
            break
        if isinstance(seen, UpstreamUnavailableError):
            return seen
        reason = database_disconnect(seen)
        if reason is not None:
            return UpstreamUnavailableError(
                f"{step}: lost the database connection ({reason}); "
                f"nothing after the last commit was kept, {RERUN_IS_SAFE}"
            )
        said = mlflow_unanswered(seen)
        if said is not None:
            return rerun_is_safe(step, said)
        seen = seen.__cause__ or seen.__context__
    return None


def rerun_is_safe(step: str, said: str) -> UpstreamUnavailableError:
    """The line of an outage that struck before ``step`` wrote anything: a rerun is safe."""
    return UpstreamUnavailableError(f"{step}: {said}; {RERUN_IS_SAFE}")
