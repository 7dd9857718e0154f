"""``python -m persona.services.evidently_ui``: the drift history UI, as local stack and Compose run it.

It serves the workspace the monitor pipeline adds its runs to; the workspace folder is created
first so the UI starts before the first drift check.
"""

from __future__ import annotations

import logging
import os
from typing import NoReturn

from persona.adapters.evidently_report import ui_command
from persona.entry import exit_entry
from persona.settings import Settings

logger = logging.getLogger(__name__)


def _serve(settings: Settings) -> None:
    workspace = settings.evidently_workspace_path
    workspace.mkdir(parents=True, exist_ok=True)
    command = ui_command(workspace, settings.evidently_host, settings.evidently_port)
    os.environ.setdefault("DO_NOT_TRACK", "1")  # no usage telemetry from an air-gapped stack
    logger.info("starting the Evidently UI: %s", " ".join(command))
    os.execv(command[0], command)


def main() -> NoReturn:
    exit_entry(_serve, logger)


if __name__ == "__main__":
    main()
