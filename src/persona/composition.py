"""The composition root: settings in, the flows' contexts out, with one adapter per port.

Entry points (the CLI, Mage blocks, the services, the demo) call these; nothing under
``persona.flows`` reads settings or builds an adapter itself.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from persona.adapters import processes
from persona.adapters.database import PostgresCustomers
from persona.adapters.drift_store import PostgresDriftStore
from persona.adapters.evidently_report import EvidentlyReports, UnlinkedReports
from persona.adapters.mage_runs import MageRuns
from persona.adapters.mlflow_models import MlflowModels
from persona.adapters.mlflow_registry import CONNECT_BUDGET_S
from persona.adapters.segmentation_store import SqlSegmentations
from persona.data.catalogue import load_catalogue
from persona.data.schema import DatasetSchema, load_schema
from persona.errors import ConfigurationError, PersonaError
from persona.flows import demo
from persona.flows.demo import StackUrls
from persona.flows.monitor import MonitorContext
from persona.flows.reconcile import Judge, Reconciliation, reconcile
from persona.flows.train import TrainingContext
from persona.job_records import job_runs, tracked_job  # noqa: F401 - the entry points' import
from persona.model.params import load_params
from persona.monitoring.drift import load_drift_config
from persona.monitoring.owners import DEFAULT_STALE_AFTER
from persona.ports import Notifier
from persona.segmentation import DEFAULT, SEGMENTATION_TAG, Definition, check_name, suffixed
from persona.settings import Settings

if TYPE_CHECKING:  # python-telegram-bot is in the pipeline environment, not the Spark one
    from persona.adapters.telegram import TelegramNotifier

logger = logging.getLogger(__name__)

START_CONNECT_TIMEOUT_S = 5.0  # reconciliation at a run's start: MLflow answers quickly or is down
SEGMENTATION_FILES = ("schema.yaml", "params.yaml", "drift.yaml")


def segmentations(settings: Settings) -> SqlSegmentations:
    """The segmentations this stack holds (in the project database)."""
    return SqlSegmentations(settings.project_database_url)


def segmentation_folder(settings: Settings, name: str) -> Path:
    """Where a segmentation's files are written for the code that reads config files."""
    return settings.home / "segmentations" / name


def for_segmentation(settings: Settings, name: str | None = None) -> Settings:
    """The settings of segmentation ``name`` (default: ``settings.segmentation``).

    The default segmentation is the settings as they are. Another one has its own files
    (written from the database under PERSONA_HOME), tables, registered model, experiment and
    Evidently project: each name is the default one with the segmentation's name appended.
    Applying it twice changes nothing.
    """
    name = check_name(name or settings.segmentation)
    folder = segmentation_folder(settings, name)
    if name == DEFAULT or settings.schema_path == (folder / "schema.yaml").resolve():
        return (
            settings
            if settings.segmentation == name
            else settings.with_overrides(segmentation=name)
        )
    definition = segmentations(settings).get(name)
    if definition is None:
        known = [d.name for d in segmentations(settings).all()]
        raise ConfigurationError(
            f"no segmentation {name!r}; known: {', '.join([DEFAULT, *known])} "
            "(add one with `persona segmentation add NAME --schema FILE`)"
        )
    write_definition(folder, definition)
    return settings.with_overrides(
        segmentation=name,
        schema_path=folder / "schema.yaml",
        params_path=folder / "params.yaml",
        drift_config_path=folder / "drift.yaml",
        catalogue_path=folder / "personas.yaml",  # none: its personas are named from profiles
        customers_table=suffixed(settings.customers_table, name),
        scores_table=suffixed(settings.scores_table, name),
        scoring_log_table=suffixed(settings.scoring_log_table, name),
        model_name=suffixed(settings.model_name, name, "-"),
        mlflow_experiment=suffixed(settings.mlflow_experiment, name, "-"),
        evidently_project=suffixed(settings.evidently_project, name, "-"),
    )


def write_definition(folder: Path, definition: Definition) -> None:
    """The definition's three files, rewritten only when they changed (runs may share them)."""
    folder.mkdir(parents=True, exist_ok=True)
    texts = (definition.schema_text, definition.params_text, definition.drift_text)
    for file_name, text in zip(SEGMENTATION_FILES, texts, strict=True):
        path = folder / file_name
        if not path.exists() or path.read_text() != text:
            scratch = path.with_suffix(f".{os.getpid()}.tmp")
            scratch.write_text(text)
            scratch.replace(path)  # atomic: a concurrent reader sees the old or the new file


def mlflow_models(settings: Settings, connect_timeout_s: float = CONNECT_BUDGET_S) -> MlflowModels:
    """The MLflow adapter (registry and tracking) for the configured model and experiment."""
    return MlflowModels(
        settings.mlflow_tracking_uri,
        settings.mlflow_experiment,
        settings.model_name,
        connect_timeout_s=connect_timeout_s,
        model_tags={SEGMENTATION_TAG: settings.segmentation},
        owner=str(processes.this_owner()),
    )


def project_tables(settings: Settings, schema: DatasetSchema) -> PostgresCustomers:
    """The customers table (the schema's, else the setting) and the scoring log."""
    return PostgresCustomers(
        settings.project_database_url,
        schema.table or settings.customers_table,
        settings.scoring_log_table,
    )


def training_context(settings: Settings, seed: int | None = None) -> TrainingContext:
    schema = load_schema(settings.schema_path)
    catalogue = None
    if settings.catalogue_path.exists():
        catalogue = load_catalogue(settings.catalogue_path)
    models = mlflow_models(settings)
    return TrainingContext(
        schema=schema,
        params=load_params(settings.params_path),
        catalogue=catalogue,
        alias=settings.model_alias,
        registry=models,
        tracker=models,
        customers=project_tables(settings, schema),
        workdir=settings.home / "runs",
        reference_rows=load_drift_config(settings.drift_config_path).reference_sample_rows,
    ).with_seed(seed)


def telegram_notifier(settings: Settings) -> TelegramNotifier:
    from persona.adapters.telegram import TelegramNotifier

    return TelegramNotifier(
        settings.telegram_bot_token or None,
        settings.telegram_chat_id or None,
        base_url=settings.telegram_base_url or None,
        timeout=settings.telegram_timeout_seconds,
        retries=settings.telegram_retries,
    )


def monitor_context(settings: Settings, notifier: Notifier | None = None) -> MonitorContext:
    """``notifier`` replaces Telegram (tests pass one pointed at the Bot API stand-in)."""
    owner = str(processes.this_owner())
    return MonitorContext(
        config=load_drift_config(settings.drift_config_path),
        training=training_context(settings),
        notifier=notifier or telegram_notifier(settings),
        drift_store=PostgresDriftStore(settings.project_database_url),
        reports=EvidentlyReports(
            settings.evidently_workspace_path, settings.evidently_project, owner
        ),
        workdir=settings.home / "monitoring",
        owner=owner,
    )


def reconcile_runs(
    settings: Settings, stale_after: timedelta | None = None, connect_timeout_s: float = 30.0
) -> Reconciliation:
    """Close the runs whose owner is gone: this segmentation's drift history, experiment and
    Evidently reports, registrations cut short, the ingest and score jobs, and Mage's pipeline
    runs (at the start of every train and monitor run, and ``persona runs reconcile``)."""
    judge_by = Judge(processes.this_owner(), processes.is_alive, stale_after or DEFAULT_STALE_AFTER)
    drift_store = PostgresDriftStore(settings.project_database_url)
    reports = UnlinkedReports(
        settings.evidently_workspace_path, settings.evidently_project, drift_store.kept_report_names
    )  # after the drift rows: the reports of the rows abandoned just now go too
    models = mlflow_models(settings, connect_timeout_s)
    return reconcile(
        judge_by,
        drift_store,
        [
            models,
            models.cut_registrations(),
            MageRuns(settings.mage_db_url),
            reports,
            job_runs(settings),
        ],
    )


def reconcile_at_start(settings: Settings) -> Reconciliation | None:
    """Reconciliation as a run starts: what it closed is logged; a store it cannot reach is
    logged too and left to the run itself (which says what it needs, or does not need it)."""
    try:  # a registry that is down is the run's own first error: it is not waited for twice
        return reconcile_runs(settings, connect_timeout_s=START_CONNECT_TIMEOUT_S)
    except PersonaError as exc:
        logger.warning("runs not reconciled at start: %s", exc)
        return None


def stack_urls(settings: Settings) -> StackUrls:
    """Where a person opens each service (bind addresses such as 0.0.0.0 made into URLs)."""
    return demo.stack_urls(
        settings.mage_host,
        settings.mage_port,
        settings.mlflow_tracking_uri,
        settings.scoring_url,
        settings.evidently_host,
        settings.evidently_port,
    )


def demo_stack(settings: Settings) -> demo.DemoStack:
    """The running stack as ``make demo`` walks it: MLflow, the tables, Mage, the API."""
    from functools import partial

    from persona.adapters import stack_state
    from persona.orchestration.mage_runner import run_pipeline
    from persona.serving.client import ScoringClient

    schema = load_schema(settings.schema_path)
    return demo.DemoStack(
        urls=stack_urls(settings),
        models=mlflow_models(settings),
        tables=project_tables(settings, schema),
        scorer=ScoringClient(settings.scoring_url, settings.api_token),
        run_pipeline=lambda pipeline, variables, timeout_s: run_pipeline(
            settings, pipeline, variables, timeout_s=timeout_s
        ),
        require_answer=stack_state.require_answer,
        read_ready=partial(stack_state.read_ready, settings.scoring_url),
        scoring_workers=settings.scoring_workers,
        model_poll_seconds=settings.model_poll_seconds,
        scoring_log=str(settings.home / "logs" / "scoring.log"),
    )
