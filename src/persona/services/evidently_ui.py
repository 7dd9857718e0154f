"""``python -m persona.services.evidently_ui``: the drift history UI, as local stack and Compose run it.

It serves the workspace the monitor pipeline adds its runs to; the workspace folder is created
first so the UI starts before the first drift check.
"""

from __future__ import annotations

import logging
import os

from persona.adapters.evidently_report import ui_command
from persona.logging_setup import configure_logging
from persona.settings import load_settings

logger = logging.getLogger(__name__)


def main() -> None:
    settings = load_settings()
    configure_logging(settings.log_level)
    workspace = settings.evidently_workspace_path
    workspace.mkdir(parents=True, exist_ok=True)
    command = ui_command(workspace, settings.evidently_host, settings.evidently_port)
    os.environ.setdefault("DO_NOT_TRACK", "1")  # no usage telemetry from an air-gapped stack
    logger.info("starting the Evidently UI: %s", " ".join(command))
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
