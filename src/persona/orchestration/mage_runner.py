"""Run a Mage pipeline headless the way Mage's scheduler does, so conditionals are honoured.

``mage run`` executes blocks without a pipeline run, which skips conditional add-ons. Here a
worker process creates a real ``PipelineRun`` (with block runs) in Mage's database and hands
it to Mage's own pipeline executor, which evaluates conditionals and upstream failures between
blocks. The parent process only launches the worker and reads its JSON result, because Mage
binds its database URL and data folder at import time.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from persona.adapters.postgres_admin import ensure_database, set_database_defaults
from persona.errors import ConfigurationError, PersonaError
from persona.postgres_sessions import database_defaults
from persona.services import process_tree
from persona.settings import Settings

logger = logging.getLogger(__name__)

HEADLESS_TRIGGER = "headless ({pipeline})"
# A Mage server schedules every RUNNING run of a schedule whose repo_path is its own or NULL, so
# with `make local-up` running it would execute a headless run's blocks too (twice, or none when
# it queued them first). A run therefore executes under a schedule with this repo_path, which no
# server matches, and is filed under the visible HEADLESS_TRIGGER schedule once it has ended.
HEADLESS_RUNNING_REPO_PATH = "persona headless runner: runs in progress"


@dataclass(frozen=True)
class BlockOutcome:
    block: str
    status: str
    error: str | None = None


@dataclass(frozen=True)
class PipelineOutcome:
    pipeline: str
    pipeline_run_id: int | None
    status: str
    seconds: float
    blocks: list[BlockOutcome] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "completed"

    def failure_text(self) -> str:
        failed = [b for b in self.blocks if b.status == "failed"]
        if failed:
            return "; ".join(
                f"block {b.block} failed: {b.error or 'see its Mage log'}" for b in failed
            )
        return self.error or f"pipeline {self.pipeline} ended as {self.status}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PipelineOutcome:
        blocks = [BlockOutcome(**b) for b in data.pop("blocks", [])]
        return cls(blocks=blocks, **data)


def parse_variables(pairs: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` strings from the command line, with the offending one named on error."""
    variables: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigurationError(f"pipeline variable {pair!r} must look like KEY=VALUE")
        variables[key.strip()] = value
    return variables


def mage_environment(settings: Settings, environ: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for any Mage process: its database and data folder come from settings."""
    env = dict(os.environ if environ is None else environ)
    env["MAGE_DATABASE_CONNECTION_URL"] = settings.mage_db_url
    env.setdefault("MAGE_DATA_DIR", str(settings.home / "mage_data"))
    env.pop("ENV", None)  # ENV=test_mage would point Mage at a test.db in the working folder
    return env


def run_pipeline(
    settings: Settings, pipeline: str, variables: dict[str, Any], timeout_s: float = 3600.0
) -> PipelineOutcome:
    """Run ``pipeline`` in a Mage worker process; block statuses stream to the log as they end."""
    project = settings.mage_project_path
    if not (project / "pipelines" / pipeline / "metadata.yaml").is_file():
        known = sorted(
            p.name for p in (project / "pipelines").glob("*") if (p / "metadata.yaml").is_file()
        )
        raise ConfigurationError(
            f"no Mage pipeline {pipeline!r} in {project} (known: {', '.join(known) or 'none'})"
        )
    settings.home.mkdir(parents=True, exist_ok=True)
    ensure_database(settings.mage_db_url)
    set_database_defaults(settings.mage_db_url, database_defaults(settings.session_timeouts))
    log_path = settings.home / "logs" / f"mage-{pipeline}-{datetime.now():%Y%m%dT%H%M%S}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="persona-mage-") as scratch:
        result_path = Path(scratch) / "result.json"
        command = [
            sys.executable,
            "-m",
            "persona.orchestration.mage_runner",
            "--project",
            str(project),
            "--pipeline",
            pipeline,
            "--variables",
            json.dumps(variables),
            "--result",
            str(result_path),
            "--log",
            str(log_path),
        ]
        logger.info(
            "running Mage pipeline %s with %s", pipeline, variables or "its default variables"
        )
        try:  # the worker and all it forks (block subprocess, joblib workers) end with it
            returncode = process_tree.run_group(
                command,
                mage_environment(settings),
                process_tree.records_folder(settings.home),
                timeout_s,
            )
        except subprocess.TimeoutExpired:
            raise PersonaError(
                f"pipeline {pipeline} did not finish within {timeout_s:.0f} s"
            ) from None
        if not result_path.exists():
            raise PersonaError(worker_lost_text(pipeline, returncode, log_path))
        outcome = PipelineOutcome.from_dict(json.loads(result_path.read_text()))
    logger.info("Mage's own output (tracebacks included) is in %s", log_path)
    return outcome


def worker_lost_text(pipeline: str, returncode: int, log_path: Path) -> str:
    """Why there is no outcome, in one line: a worker killed by a signal (``kill -9``, the OOM
    killer) is named so, with what closes the runs it left open and what to do next."""
    if returncode < 0:
        try:
            how = f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            how = f"was killed by signal {-returncode}"
    else:
        how = f"exited with code {returncode}"
    return (
        f"the Mage worker for {pipeline} {how} before reporting; rerun it: the next run "
        f"closes what this one left open (so does `persona runs reconcile`); Mage's output "
        f"is in {log_path}"
    )


# --- worker side: everything below runs inside the Mage process -----------------------------


def _error_text(error: BaseException) -> str:
    if isinstance(error, PersonaError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def open_project(project: Path) -> None:
    """Point Mage at ``project`` and bring its database schema up to date (idempotent)."""
    from mage_ai.settings.repo import set_repo_path

    set_repo_path(str(project))
    from mage_ai.orchestration.db import db_connection
    from mage_ai.orchestration.db.database_manager import database_manager

    database_manager.run_migrations(log_level=logging.WARNING)
    db_connection.start_session()


def sync_api_triggers(project: Path, token: str) -> list[tuple[str, str, int]]:
    """Load every triggers.yaml into Mage's DB and give API triggers ``token``.

    The token lives in the environment, never in the YAML; Mage keeps a stored token when the
    YAML has none, so this survives Mage's own trigger sync. Returns (pipeline, trigger, id).
    """
    from mage_ai.data_preparation.models.triggers import ScheduleType, get_triggers_by_pipeline
    from mage_ai.orchestration.db.models.schedules import PipelineSchedule

    api_triggers = []
    for triggers_file in sorted((project / "pipelines").glob("*/triggers.yaml")):
        pipeline_uuid = triggers_file.parent.name
        triggers = get_triggers_by_pipeline(pipeline_uuid, repo_path=str(project))
        PipelineSchedule.create_or_update_batch(triggers)
        for trigger in triggers:
            if trigger.schedule_type != ScheduleType.API:
                continue
            # Several checkouts may share one Mage database: each has its own schedule row.
            schedule = (
                PipelineSchedule.query.filter(
                    PipelineSchedule.pipeline_uuid == pipeline_uuid,
                    PipelineSchedule.name == trigger.name,
                    PipelineSchedule.repo_path == str(project),
                )
                .order_by(PipelineSchedule.id.desc())
                .first()
            )
            if token and schedule.token != token:
                schedule.update(token=token)
            api_triggers.append((pipeline_uuid, trigger.name, schedule.id))
    return api_triggers


def _execute(project: Path, pipeline_uuid: str, variables: dict[str, Any]) -> PipelineOutcome:
    open_project(project)
    from mage_ai.data_preparation.executors.executor_factory import ExecutorFactory
    from mage_ai.data_preparation.models.pipeline import Pipeline
    from mage_ai.data_preparation.models.triggers import (
        ScheduleInterval,
        ScheduleStatus,
        ScheduleType,
    )
    from mage_ai.orchestration.db.models.schedules import PipelineRun, PipelineSchedule

    from persona.adapters.mage_runs import OWNER_KEY
    from persona.adapters.processes import this_owner

    pipeline = Pipeline.get(pipeline_uuid, repo_path=str(project))

    def headless_schedule(name: str, repo_path: str | None) -> PipelineSchedule:
        return PipelineSchedule.query.filter(
            PipelineSchedule.pipeline_uuid == pipeline_uuid, PipelineSchedule.name == name
        ).first() or PipelineSchedule.create(
            name=name,
            pipeline_uuid=pipeline_uuid,
            schedule_type=ScheduleType.API,
            schedule_interval=ScheduleInterval.ONCE,
            status=ScheduleStatus.INACTIVE,
            repo_path=repo_path,
        )

    name = HEADLESS_TRIGGER.format(pipeline=pipeline_uuid)
    schedule = headless_schedule(name, None)
    running = headless_schedule(f"{name}, running", HEADLESS_RUNNING_REPO_PATH)
    now = datetime.now(tz=UTC)
    partition = f"{schedule.id}/{now:%Y%m%dT%H%M%S_%f}"
    pipeline_run = PipelineRun.create(
        pipeline_schedule_id=running.id,
        pipeline_uuid=pipeline_uuid,
        execution_date=now,
        started_at=now,
        status=PipelineRun.PipelineRunStatus.RUNNING,
        variables={**variables, "execution_partition": partition},
        metrics={OWNER_KEY: str(this_owner())},  # a killed worker's run is closed by reconcile
    )
    started = time.perf_counter()
    raised: BaseException | None = None
    try:
        ExecutorFactory.get_pipeline_executor(pipeline, execution_partition=partition).execute(
            analyze_outputs=False,
            global_vars=pipeline_run.get_variables(),
            pipeline_run_id=pipeline_run.id,
            run_sensors=True,
            run_tests=False,
            update_status=False,
        )
    except Exception as exc:  # a failing block re-raises its error through the executor
        raised = exc
    pipeline_run.refresh()
    pipeline_run.update_block_run_statuses(pipeline_run.initial_block_runs)
    pipeline_run.refresh()

    blocks = []
    for block_run in sorted(pipeline_run.block_runs, key=lambda b: b.id):
        status = str(
            block_run.status.value if hasattr(block_run.status, "value") else block_run.status
        )
        error = _error_text(raised) if status == "failed" and raised is not None else None
        blocks.append(BlockOutcome(block=block_run.block_uuid, status=status, error=error))
    ok = raised is None and all(b.status in ("completed", "condition_failed") for b in blocks)
    if ok:
        pipeline_run.complete()
    else:
        pipeline_run.update(
            status=PipelineRun.PipelineRunStatus.FAILED, completed_at=datetime.now(tz=UTC)
        )
    pipeline_run.update(pipeline_schedule_id=schedule.id)  # ended: now listed in the Mage UI
    return PipelineOutcome(
        pipeline=pipeline_uuid,
        pipeline_run_id=pipeline_run.id,
        status="completed" if ok else "failed",
        seconds=round(time.perf_counter() - started, 2),
        blocks=blocks,
        error=None if ok or raised is None else _error_text(raised),
    )


def _worker(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Mage pipeline worker (started by run_pipeline)")
    parser.add_argument("--project", required=True, type=Path)
    parser.add_argument("--pipeline", required=True)
    parser.add_argument("--variables", default="{}")
    parser.add_argument("--result", required=True, type=Path)
    parser.add_argument("--log", required=True, type=Path, help="file for Mage's own output")
    args = parser.parse_args(argv)
    process_tree.install_group_teardown()  # a stopped worker takes its block subprocess along
    from persona.logging_setup import configure_logging

    # Our log lines (block progress, statuses) go to the terminal; Mage prints tracebacks and
    # chatter on stdout/stderr, which go to the log file so users see one clear error.
    console = os.fdopen(os.dup(2), "w", buffering=1)
    with args.log.open("a") as mage_output:
        os.dup2(mage_output.fileno(), 1)
        os.dup2(mage_output.fileno(), 2)
    configure_logging(
        os.environ.get("PERSONA_LOG_LEVEL", "INFO"),
        stream=console,
        only_prefixes=("persona", __name__),
    )
    logging.getLogger().addHandler(logging.StreamHandler(sys.stderr))  # everything, to the file
    outcome = _execute(args.project.resolve(), args.pipeline, json.loads(args.variables))
    for block in outcome.blocks:
        shown = "skipped by its condition" if block.status == "condition_failed" else block.status
        logger.info("block %-20s %s", block.block, shown)
    args.result.write_text(json.dumps(outcome.to_dict()))
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    raise SystemExit(_worker())
