"""The one settings object. Every knob comes from the environment, with local defaults.

Defaults run with no Docker and no cloud: SQLite files and local folders under
``PERSONA_HOME``. Compose and CI only override variables. Precedence, as in Docker Compose and
the Makefile, tested: run variable (explicit override) > environment > ``.env`` > default; an
empty value means "the default".
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from persona.errors import ConfigurationError
from persona.flags import parse_bool
from persona.postgres_sessions import SessionTimeouts, with_session_timeouts
from persona.serving.options import EXTRA_COLUMNS


@dataclass(frozen=True)
class _Var:
    env: str
    default: str
    kind: type
    help: str


# The registry of environment variables; .env.example must list exactly these (tested).
VARIABLES: dict[str, _Var] = {
    "env_file": _Var(
        "PERSONA_ENV_FILE",
        ".env",
        Path,
        "Dotenv file read below the environment; name it in the environment or on the make "
        "command line (a line in the file itself is ignored).",
    ),
    "home": _Var("PERSONA_HOME", ".persona", Path, "Local state: SQLite files, artifacts, logs."),
    "catalogue_path": _Var(
        "PERSONA_CATALOGUE", "00_create_data/personas.yaml", Path, "Persona catalogue YAML."
    ),
    "schema_path": _Var(
        "PERSONA_SCHEMA", "00_create_data/schema.yaml", Path, "Dataset schema YAML (columns)."
    ),
    "params_path": _Var("PERSONA_PARAMS", "01_model/params.yaml", Path, "Model search config."),
    "segmentation": _Var(
        "PERSONA_SEGMENTATION",
        "default",
        str,
        "Segmentation that commands and pipelines work on (`persona segmentation list`); "
        "`default` is the one the variables above and below configure.",
    ),
    "database_url": _Var(
        "PERSONA_DATABASE_URL",
        "",
        str,
        "SQLAlchemy URL of the project tables; empty = SQLite file under PERSONA_HOME.",
    ),
    "customers_table": _Var(
        "PERSONA_CUSTOMERS_TABLE", "customers", str, "Table holding monthly customer snapshots."
    ),
    "scores_table": _Var(
        "PERSONA_SCORES_TABLE", "customer_personas", str, "Table the batch scoring job writes."
    ),
    "mlflow_tracking_uri": _Var(
        "MLFLOW_TRACKING_URI", "http://127.0.0.1:5000", str, "MLflow server clients talk to."
    ),
    "mlflow_experiment": _Var(
        "MLFLOW_EXPERIMENT_NAME", "persona-segmentation", str, "Experiment of training runs."
    ),
    "model_name": _Var("PERSONA_MODEL_NAME", "persona-segmentation", str, "Registered model."),
    "mlflow_backend_store_uri": _Var(
        "MLFLOW_BACKEND_STORE_URI",
        "",
        str,
        "Server only: registry/tracking DB; empty = SQLite file under PERSONA_HOME.",
    ),
    "mlflow_artifacts_destination": _Var(
        "MLFLOW_ARTIFACTS_DESTINATION",
        "",
        str,
        "Server only: artifact root (folder or gs://BUCKET/PREFIX); empty = PERSONA_HOME/mlartifacts.",
    ),
    "mlflow_host": _Var("MLFLOW_HOST", "127.0.0.1", str, "Server only: bind address."),
    "mlflow_port": _Var("MLFLOW_PORT", "5000", int, "Server only: port."),
    "mlflow_workers": _Var("MLFLOW_WORKERS", "2", int, "Server only: worker processes."),
    "mlflow_allowed_hosts": _Var(
        "MLFLOW_ALLOWED_HOSTS", "", str, "Server only: extra Host headers to accept (comma list)."
    ),
    "gcs_bucket": _Var(
        "GCS_BUCKET", "", str, "GCS bucket for artifacts (Terraform output); empty = local."
    ),
    "gcs_prefix": _Var("GCS_PREFIX", "mlflow", str, "Folder inside GCS_BUCKET for artifacts."),
    "storage_emulator_host": _Var(
        "STORAGE_EMULATOR_HOST",
        "",
        str,
        "GCS emulator URL (tests/offline), e.g. http://127.0.0.1:9023.",
    ),
    "mage_project_path": _Var(
        "PERSONA_MAGE_PROJECT", "02_pipeline/persona_pipelines", Path, "The Mage project folder."
    ),
    "mage_database_url": _Var(
        "MAGE_DATABASE_CONNECTION_URL",
        "",
        str,
        "Mage's own DB; empty = SQLite file under PERSONA_HOME.",
    ),
    "mage_host": _Var("PERSONA_MAGE_HOST", "127.0.0.1", str, "Mage UI/API bind address."),
    "mage_port": _Var("PERSONA_MAGE_PORT", "6789", int, "Mage UI/API port."),
    "trigger_token": _Var(
        "PERSONA_TRIGGER_TOKEN",
        "",
        str,
        "Token of the Mage API triggers (a secret); empty = Mage makes a random one.",
    ),
    "scoring_host": _Var("PERSONA_SCORING_HOST", "127.0.0.1", str, "Scoring API bind address."),
    "scoring_port": _Var("PERSONA_SCORING_PORT", "8080", int, "Scoring API port."),
    "scoring_url": _Var(
        "PERSONA_SCORING_URL", "http://127.0.0.1:8080", str, "Scoring API the batch job calls."
    ),
    "scoring_workers": _Var("PERSONA_SCORING_WORKERS", "2", int, "Gunicorn worker processes."),
    "scoring_threads": _Var("PERSONA_SCORING_THREADS", "4", int, "Threads per Gunicorn worker."),
    "spark_master": _Var(
        "SPARK_MASTER",
        "local[*]",
        str,
        "Where the Spark engine runs (`persona score --engine spark`, Spark drift): local[*] in "
        "the command's own process, spark://HOST:7077 for a standalone cluster (make spark-up "
        "prints the URL; the Makefile's stack targets pass it while that cluster runs and "
        "SPARK_MASTER is not set).",
    ),
    "spark_host": _Var(
        "PERSONA_SPARK_HOST",
        "127.0.0.1",
        str,
        "Address the Spark master and workers of make spark-up bind and advertise (Compose: "
        "each node's service name).",
    ),
    "spark_master_port": _Var(
        "PERSONA_SPARK_MASTER_PORT", "7077", int, "Port of the Spark master (make spark-up)."
    ),
    "spark_master_ui_port": _Var(
        "PERSONA_SPARK_MASTER_UI_PORT", "8090", int, "Web UI (and /json/) of the Spark master."
    ),
    "spark_worker_ui_port": _Var(
        "PERSONA_SPARK_WORKER_UI_PORT",
        "8091",
        int,
        "Web UI port of the first Spark worker; the next workers take the ports after it.",
    ),
    "spark_workers": _Var(
        "PERSONA_SPARK_WORKERS", "2", int, "Spark workers make spark-up starts (at least 1)."
    ),
    "spark_worker_cores": _Var(
        "PERSONA_SPARK_WORKER_CORES", "1", int, "Cores each Spark worker offers its executors."
    ),
    "spark_worker_memory": _Var(
        "PERSONA_SPARK_WORKER_MEMORY",
        "2g",
        str,
        "Memory each Spark worker offers its executors (Spark's size format: 512m, 2g).",
    ),
    "spark_command": _Var(
        "PERSONA_SPARK_COMMAND",
        ".venv/spark/bin/persona",
        str,
        "The persona command of the Spark environment (make install-spark), which the Mage "
        "blocks run for Spark work so pyspark never enters Mage's own environment.",
    ),
    "model_alias": _Var(
        "PERSONA_MODEL_ALIAS",
        "production",
        str,
        "Registry alias training promotes to, monitoring checks and the API serves.",
    ),
    "model_poll_seconds": _Var(
        "PERSONA_MODEL_POLL_SECONDS", "30", float, "How often each worker checks the alias."
    ),
    "max_batch_rows": _Var(
        "PERSONA_MAX_BATCH_ROWS", "100000", int, "Rows per request (413 above)."
    ),
    "max_body_bytes": _Var(
        "PERSONA_MAX_BODY_BYTES",
        "67108864",
        int,
        "Largest request body in bytes (413 above; checked before reading, chunked bodies too).",
    ),
    "extra_columns": _Var(
        "PERSONA_EXTRA_COLUMNS",
        "reject",
        str,
        "Request columns that are not model inputs nor declared in the schema: reject | ignore.",
    ),
    "api_token": _Var(
        "PERSONA_API_TOKEN", "", str, "Bearer token for /predict (a secret); empty = open."
    ),
    "scoring_log": _Var(
        "PERSONA_SCORING_LOG",
        "false",
        bool,
        "Log every scored row to PostgreSQL (off the request path) for drift checks.",
    ),
    "scoring_log_table": _Var(
        "PERSONA_SCORING_LOG_TABLE", "scoring_log", str, "Table of the scoring log."
    ),
    "admin_token": _Var(
        "PERSONA_ADMIN_TOKEN", "", str, "Bearer token for /admin/* (a secret); empty = disabled."
    ),
    "drift_config_path": _Var(
        "PERSONA_DRIFT_CONFIG", "04_monitoring/drift.yaml", Path, "Drift thresholds YAML."
    ),
    "evidently_workspace": _Var(
        "PERSONA_EVIDENTLY_WORKSPACE",
        "",
        str,
        "Evidently UI workspace folder; empty = PERSONA_HOME/evidently.",
    ),
    "evidently_project": _Var(
        "PERSONA_EVIDENTLY_PROJECT", "persona-drift", str, "Evidently UI project of drift runs."
    ),
    "evidently_host": _Var("PERSONA_EVIDENTLY_HOST", "127.0.0.1", str, "Evidently UI address."),
    "evidently_port": _Var("PERSONA_EVIDENTLY_PORT", "8001", int, "Evidently UI port."),
    "telegram_bot_token": _Var(
        "TELEGRAM_BOT_TOKEN", "", str, "Bot token (a secret); empty = alerts are only logged."
    ),
    "telegram_chat_id": _Var("TELEGRAM_CHAT_ID", "", str, "Chat that receives drift alerts."),
    "telegram_base_url": _Var(
        "TELEGRAM_BASE_URL", "", str, "Bot API base URL; empty = https://api.telegram.org/bot."
    ),
    "telegram_timeout_seconds": _Var(
        "TELEGRAM_TIMEOUT_SECONDS", "10", float, "Timeout of each Bot API call."
    ),
    "telegram_retries": _Var(
        "TELEGRAM_RETRIES", "3", int, "Retries of a failed alert (with backoff)."
    ),
    "db_idle_in_transaction_timeout_seconds": _Var(
        "PERSONA_DB_IDLE_IN_TRANSACTION_TIMEOUT_SECONDS",
        "300",
        float,
        "PostgreSQL ends a project session idle inside a transaction this long (a killed run's "
        "locks); 0 = never. No step waits inside a transaction.",
    ),
    "db_statement_timeout_seconds": _Var(
        "PERSONA_DB_STATEMENT_TIMEOUT_SECONDS",
        "1800",
        float,
        "PostgreSQL cancels one statement running longer (project, MLflow and Mage databases); "
        "0 = never.",
    ),
    "log_level": _Var("PERSONA_LOG_LEVEL", "INFO", str, "Logging level of entry points."),
    # Read by Compose (and Mage) only; registered so .env.example documents them.
    "postgres_password": _Var(
        "POSTGRES_PASSWORD",
        "",
        str,
        "Compose only: password of the `persona` PostgreSQL role (a secret; make up generates it).",
    ),
    "mage_owner_email": _Var(
        "DEFAULT_OWNER_EMAIL", "admin@persona.local", str, "Compose only: Mage UI owner login."
    ),
    "mage_owner_password": _Var(
        "DEFAULT_OWNER_PASSWORD",
        "",
        str,
        "Compose only: Mage UI owner password (a secret; make up generates it).",
    ),
    "bind_address": _Var(
        "PERSONA_BIND", "127.0.0.1", str, "Compose only: host address the published ports bind."
    ),
    "pipeline_spark": _Var(
        "PERSONA_PIPELINE_SPARK",
        "false",
        bool,
        "Compose only: build the Mage image with the Spark environment (/opt/spark-env, Java "
        "17) for the `spark` profile; false keeps the image without Java and pyspark.",
    ),
}

# Secrets `persona env-init` fills with fresh random values when it writes a new .env.
GENERATED_SECRETS = (
    "POSTGRES_PASSWORD",
    "DEFAULT_OWNER_PASSWORD",
    "PERSONA_TRIGGER_TOKEN",
    "PERSONA_ADMIN_TOKEN",
)


@dataclass(frozen=True)
class Settings:
    env_file: Path
    home: Path
    catalogue_path: Path
    schema_path: Path
    params_path: Path
    segmentation: str
    database_url: str
    customers_table: str
    scores_table: str
    mlflow_tracking_uri: str
    mlflow_experiment: str
    model_name: str
    mlflow_backend_store_uri: str
    mlflow_artifacts_destination: str
    mlflow_host: str
    mlflow_port: int
    mlflow_workers: int
    mlflow_allowed_hosts: str
    gcs_bucket: str
    gcs_prefix: str
    storage_emulator_host: str
    mage_project_path: Path
    mage_database_url: str
    mage_host: str
    mage_port: int
    trigger_token: str
    scoring_host: str
    scoring_port: int
    scoring_url: str
    scoring_workers: int
    scoring_threads: int
    spark_master: str
    spark_command: str
    spark_host: str
    spark_master_port: int
    spark_master_ui_port: int
    spark_worker_ui_port: int
    spark_workers: int
    spark_worker_cores: int
    spark_worker_memory: str
    model_alias: str
    model_poll_seconds: float
    max_batch_rows: int
    max_body_bytes: int
    extra_columns: str
    api_token: str
    scoring_log: bool
    scoring_log_table: str
    admin_token: str
    drift_config_path: Path
    evidently_workspace: str
    evidently_project: str
    evidently_host: str
    evidently_port: int
    telegram_bot_token: str
    telegram_chat_id: str
    telegram_base_url: str
    telegram_timeout_seconds: float
    telegram_retries: int
    db_idle_in_transaction_timeout_seconds: float
    db_statement_timeout_seconds: float
    log_level: str
    postgres_password: str
    mage_owner_email: str
    mage_owner_password: str
    bind_address: str
    pipeline_spark: bool

    @property
    def session_timeouts(self) -> SessionTimeouts:
        return SessionTimeouts(
            self.db_idle_in_transaction_timeout_seconds, self.db_statement_timeout_seconds
        )

    @property
    def project_database_url(self) -> str:
        """The project database; a PostgreSQL URL carries the session timeouts."""
        url = self.database_url or f"sqlite:///{self.home / 'persona.db'}"
        return with_session_timeouts(url, self.session_timeouts)

    @property
    def backend_store_uri(self) -> str:
        """MLflow's backend store; a PostgreSQL URL carries the session timeouts."""
        url = self.mlflow_backend_store_uri or f"sqlite:///{self.home / 'mlflow.db'}"
        return with_session_timeouts(url, self.session_timeouts)

    @property
    def artifacts_destination(self) -> str:
        if self.mlflow_artifacts_destination:
            return self.mlflow_artifacts_destination
        if self.gcs_bucket:
            return f"gs://{self.gcs_bucket}/{self.gcs_prefix.strip('/')}"
        return str(self.home / "mlartifacts")

    @property
    def evidently_workspace_path(self) -> Path:
        if self.evidently_workspace:
            return Path(self.evidently_workspace).expanduser().resolve()
        return self.home / "evidently"

    @property
    def mage_db_url(self) -> str:
        return self.mage_database_url or f"sqlite:///{self.home / 'mage.db'}"

    def with_overrides(self, **overrides: Any) -> Settings:
        """Run variables win over the environment (the documented precedence)."""
        return load_settings(environ={}, base=self, overrides=overrides)


_NUMBER_WORDS = {int: "an integer", float: "a number"}


def _convert(name: str, var: _Var, raw: str) -> Any:
    if var.kind in _NUMBER_WORDS:
        try:
            return var.kind(raw)
        except ValueError:
            raise ConfigurationError(
                f"{var.env} must be {_NUMBER_WORDS[var.kind]}, got {raw!r}"
            ) from None
    if var.kind is bool:
        return parse_bool(raw, var.env, default=False)
    if var.kind is Path:
        return Path(raw).expanduser().resolve()
    return raw


def read_env_file(path: Path | str) -> dict[str, str]:
    """The assignments of a dotenv file as Compose reads them; a missing file has none.

    python-dotenv parses comments, blank lines, ``export``, quotes and duplicates (the last one
    wins) like Compose. Values are taken literally, without ``${VAR}`` interpolation, so that
    the Makefile, which reads the same file, gets the same values.
    """
    path = Path(path)
    if not path.is_file():
        return {}
    values = dotenv_values(path, interpolate=False)
    return {key: value for key, value in values.items() if value is not None}


def environment_with_env_file(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` over the dotenv file it names (``PERSONA_ENV_FILE``, default ``.env``).

    The file only fills variables the environment does not set, as ``make`` and Compose do; a
    variable set to an empty value in the environment still hides the file's value.
    """
    name = VARIABLES["env_file"].env
    from_file = read_env_file(environ.get(name, "") or VARIABLES["env_file"].default)
    from_file.pop(name, None)  # only the environment or the command line names the file
    return {**from_file, **environ}


def load_settings(
    environ: Mapping[str, str] | None = None,
    base: Settings | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build settings from ``environ``; unknown overrides fail.

    Without ``environ``, the process environment over the ``.env`` file is read: explicit
    overrides > environment > ``.env`` > default, with an empty value meaning the default.
    """
    environ = environment_with_env_file(os.environ) if environ is None else environ
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(VARIABLES))
    if unknown:
        raise ConfigurationError(f"unknown setting(s): {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for name, var in VARIABLES.items():
        if name in overrides and overrides[name] is not None:
            raw = str(overrides[name])
        elif environ.get(var.env, "") != "":  # empty, as in a copied .env.example = default
            raw = environ[var.env]
        elif base is not None:
            values[name] = getattr(base, name)
            continue
        else:
            raw = var.default
        values[name] = _convert(name, var, raw)
    settings = Settings(**values)
    if settings.extra_columns not in EXTRA_COLUMNS:
        raise ConfigurationError(
            f"PERSONA_EXTRA_COLUMNS must be {' or '.join(EXTRA_COLUMNS)}, "
            f"got {settings.extra_columns!r}"
        )
    if settings.max_body_bytes < 1:
        raise ConfigurationError(
            f"PERSONA_MAX_BODY_BYTES must be a positive integer, got {settings.max_body_bytes}"
        )
    _check_spark_layout(settings)
    settings.session_timeouts  # noqa: B018 - a negative timeout fails here, naming its key
    if settings.log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ConfigurationError(
            f"PERSONA_LOG_LEVEL must be a logging level, got {settings.log_level!r}"
        )
    return settings


_SPARK_SIZE = re.compile(r"[1-9][0-9]*[kmgt]", re.IGNORECASE)


def _check_spark_layout(settings: Settings) -> None:
    """The cluster of make spark-up: counts at least 1, sizes as Spark reads them."""
    for key in ("spark_workers", "spark_worker_cores"):
        if getattr(settings, key) < 1:
            raise ConfigurationError(
                f"{VARIABLES[key].env} must be at least 1, got {getattr(settings, key)}"
            )
    if not _SPARK_SIZE.fullmatch(settings.spark_worker_memory):
        raise ConfigurationError(
            "PERSONA_SPARK_WORKER_MEMORY must be a size such as 512m or 2g, "
            f"got {settings.spark_worker_memory!r}"
        )


def env_example_lines() -> list[str]:
    """The text of .env.example, so the committed file can be checked against the registry."""
    lines = [
        "# Every variable the persona stack reads. Copy to .env; empty or absent = local default.",
        "# Generated from persona.settings.VARIABLES (a test checks the two agree).",
    ]
    for var in VARIABLES.values():
        lines.append(f"# {var.help}")
        lines.append(f"{var.env}={var.default}")
    return lines


# How the README names each kind of value in its configuration table.
_KIND_NAMES = {Path: "path", int: "integer", float: "number", bool: "true/false", str: "text"}
CONFIG_REFERENCE_START = "<!-- config-reference:start -->"
CONFIG_REFERENCE_END = "<!-- config-reference:end -->"


def config_reference_markdown() -> str:
    """The README's table of every variable, generated so the docs cannot drift from the registry.

    The development tools' ``devtools config-reference --write README.md`` (tools/, not shipped)
    puts it between the config-reference markers; a unit test fails when the README holds
    another table.
    """
    lines = ["| variable | default | type | meaning |", "|---|---|---|---|"]
    for var in VARIABLES.values():
        default = f"`{var.default}`" if var.default else "*(empty)*"
        meaning = var.help.replace("|", "\\|")
        lines.append(f"| `{var.env}` | {default} | {_KIND_NAMES[var.kind]} | {meaning} |")
    return "\n".join(lines) + "\n"


def new_env_lines(secret: Callable[[], str]) -> list[str]:
    """A first .env for Compose: the example with fresh values for the generated secrets."""
    lines = []
    for line in env_example_lines():
        key, sep, value = line.partition("=")
        if sep and key in GENERATED_SECRETS and not value:
            line = f"{key}={secret()}"
        lines.append(line)
    return lines
