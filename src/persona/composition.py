"""The composition root: settings in, the flows' contexts out, with one adapter per port.

Entry points (the CLI, Mage blocks, the services, the demo) call these; nothing under
``persona.flows`` reads settings or builds an adapter itself.
"""

from __future__ import annotations

from persona.adapters.database import PostgresCustomers
from persona.adapters.drift_store import PostgresDriftStore
from persona.adapters.evidently_report import EvidentlyReports
from persona.adapters.mlflow_models import MlflowModels
from persona.adapters.telegram import TelegramNotifier
from persona.data.catalogue import load_catalogue
from persona.data.schema import DatasetSchema, load_schema
from persona.flows import demo
from persona.flows.demo import StackUrls
from persona.flows.monitor import MonitorContext
from persona.flows.train import TrainingContext
from persona.model.params import load_params
from persona.monitoring.drift import load_drift_config
from persona.ports import Notifier
from persona.settings import Settings


def mlflow_models(settings: Settings) -> MlflowModels:
    """The MLflow adapter (registry and tracking) for the configured model and experiment."""
    return MlflowModels(
        settings.mlflow_tracking_uri, settings.mlflow_experiment, settings.model_name
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
    return TelegramNotifier(
        settings.telegram_bot_token or None,
        settings.telegram_chat_id or None,
        base_url=settings.telegram_base_url or None,
        timeout=settings.telegram_timeout_seconds,
        retries=settings.telegram_retries,
    )


def monitor_context(settings: Settings, notifier: Notifier | None = None) -> MonitorContext:
    """``notifier`` replaces Telegram (tests pass one pointed at the Bot API stand-in)."""
    return MonitorContext(
        config=load_drift_config(settings.drift_config_path),
        training=training_context(settings),
        notifier=notifier or telegram_notifier(settings),
        drift_store=PostgresDriftStore(settings.project_database_url),
        reports=EvidentlyReports(settings.evidently_workspace_path, settings.evidently_project),
        workdir=settings.home / "monitoring",
    )


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
