"""The prologue every command shares: settings, logging once, failures as exit codes.

A ``main`` parses its arguments first (so ``--help`` needs no settings), then hands its body to
``run_entry``: settings are loaded, logging is configured, the body runs, and an expected
failure (``PersonaError``) becomes its ``exit_code`` with one error line and no traceback;
so does an outage a library raised (a lost database connection, MLflow not answering:
``persona.adapters.upstream.as_outage``), naming the step; Ctrl-C becomes 130. ``exit_entry``
does the same and exits, for mains that exit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import NoReturn, TextIO

from persona.adapters.upstream import as_outage
from persona.errors import PersonaError
from persona.logging_setup import configure_logging
from persona.settings import Settings, load_settings

INTERRUPTED = 130  # the shell's code for a process stopped by SIGINT

_logger = logging.getLogger(__name__)


def guarded(
    body: Callable[[], int | None],
    logger: logging.Logger | None = None,
    step: str | None = None,
) -> int:
    """Run ``body``; its code (``None`` = 0), or a failure's code after one error line.

    ``step`` names what ran (e.g. "persona data ingest") in the line of an outage.
    """
    log = logger or _logger
    try:
        code = body()
    except PersonaError as exc:
        log.error("%s", exc)
        return exc.exit_code
    except KeyboardInterrupt:
        log.error("interrupted")
        return INTERRUPTED
    except Exception as exc:
        outage = as_outage(exc, step or log.name)
        if outage is None:
            raise  # unexpected: the traceback is what a developer needs
        log.error("%s", outage)
        return outage.exit_code
    return 0 if code is None else code


def run_entry(
    body: Callable[[Settings], int | None],
    logger: logging.Logger | None = None,
    stream: TextIO | None = None,
    step: str | None = None,
) -> int:
    """Load settings, configure logging, run ``body(settings)``: the exit code it comes to.

    ``logger`` names the error line (the command's own logger); ``stream`` is where logging
    goes (default stderr via the handler's default); ``step`` names the command in an outage.
    """

    def start_then_run() -> int | None:
        settings = load_settings()
        configure_logging(settings.log_level, stream=stream)
        return body(settings)

    return guarded(start_then_run, logger, step)


def exit_entry(
    body: Callable[[Settings], int | None],
    logger: logging.Logger | None = None,
    stream: TextIO | None = None,
) -> NoReturn:
    """``run_entry``, then exit the process with its code."""
    raise SystemExit(run_entry(body, logger, stream))
