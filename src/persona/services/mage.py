"""``python -m persona.services.mage``: Mage's UI, API and scheduler, as local stack and Compose run it.

Before handing over to ``mage start`` it creates Mage's database when it is PostgreSQL, runs
Mage's migrations and installs the API triggers with the token from PERSONA_TRIGGER_TOKEN.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import NoReturn

from persona.adapters.postgres_admin import ensure_database, set_database_defaults
from persona.entry import exit_entry
from persona.orchestration import mage_runner
from persona.postgres_sessions import database_defaults
from persona.settings import Settings

logger = logging.getLogger(__name__)


def _serve(settings: Settings) -> None:
    settings.home.mkdir(parents=True, exist_ok=True)
    ensure_database(settings.mage_db_url)
    set_database_defaults(settings.mage_db_url, database_defaults(settings.session_timeouts))
    os.environ.update(mage_runner.mage_environment(settings))  # Mage reads them at import
    project = settings.mage_project_path
    mage_runner.open_project(project)
    for pipeline, trigger, schedule_id in mage_runner.sync_api_triggers(
        project, settings.trigger_token
    ):
        logger.info(
            "API trigger %s of %s: POST http://%s:%s/api/pipeline_schedules/%s/pipeline_runs/<token>",
            trigger,
            pipeline,
            settings.mage_host,
            settings.mage_port,
            schedule_id,
        )
    mage = str(Path(sys.executable).with_name("mage"))
    command = [
        mage,
        "start",
        str(project),
        "--host",
        settings.mage_host,
        "--port",
        str(settings.mage_port),
    ]
    logger.info("starting Mage: %s", " ".join(command))
    os.execv(mage, command)


def main() -> NoReturn:
    exit_entry(_serve, logger)


if __name__ == "__main__":
    main()
