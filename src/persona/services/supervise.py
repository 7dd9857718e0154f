"""``python -m persona.services.supervise -- COMMAND ...``: one pid that stops a whole service.

``make local-up`` starts each service through it, as a session leader, and writes its pid to
the service's pid file. The service's own entry command runs as its child (so ``exec`` chains
such as ``mlflow server`` -> uvicorn -> workers stay below it). SIGTERM, SIGINT or SIGHUP to
this pid stops the whole process group and every descendant (it is their subreaper, so even an
orphaned grandchild comes back to it), then it exits; when the service's main process exits on
its own, what it leaves behind is stopped too. Its child dies with it if it is SIGKILLed
(``PR_SET_PDEATHSIG``); ``make local-status`` reports anything left after that.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence

from persona.services.process_tree import (
    STOP_SIGNALS,
    become_subreaper,
    die_with_parent,
    stop_group,
)

logger = logging.getLogger(__name__)


def supervise(command: Sequence[str], grace_s: float = 20.0) -> int:
    """Run ``command`` until it exits or this process is asked to stop; then stop the group."""
    become_subreaper()
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signum)
        stop.set()

    for sig in STOP_SIGNALS:
        signal.signal(sig, on_signal)
    child = subprocess.Popen(list(command), preexec_fn=die_with_parent(signal.SIGTERM))
    while child.poll() is None and not stop.wait(0.5):
        pass
    code = child.poll()
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    stopped = stop_group(os.getpgid(0), grace_s)
    if stopped:
        logger.info("stopped %d process(es) of the service: %s", len(stopped), stopped)
    if received:
        return 128 + received[0]
    return code if code is not None and code >= 0 else 128 - (code or 0)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        sys.stderr.write("usage: python -m persona.services.supervise -- COMMAND [ARG ...]\n")
        return 2
    logging.basicConfig(level=logging.INFO, format="supervise: %(message)s")
    return supervise(args)


if __name__ == "__main__":
    raise SystemExit(main())
