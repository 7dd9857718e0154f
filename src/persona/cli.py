"""The ``persona`` command: data, training, registry and pipeline runs from a terminal.

Entry point layer: reads settings, configures logging, maps PersonaError to exit codes and
prints results as JSON; no stack traces for expected failures.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from persona import cli_score, cli_segmentations
from persona.entry import run_entry
from persona.errors import (
    DataValidationError,
    PersonaError,
)
from persona.monitoring.owners import DEFAULT_STALE_AFTER
from persona.run_variables import (
    DEFAULT_MONTH,
    DEMO,
    MONITOR,
    SEGMENTATION,
    TRAIN,
    TRAIN_DEFAULTS,
    RunVariable,
)
from persona.settings import Settings, env_example_lines

logger = logging.getLogger("persona.cli")


def _emit(result: Any) -> None:
    from persona.values import to_plain

    sys.stdout.write(json.dumps(to_plain(result), indent=2, default=str) + "\n")


def _data_generate(args: argparse.Namespace, settings: Settings) -> Any:
    from persona.adapters import database
    from persona.data.catalogue import load_catalogue
    from persona.data.files import write_table
    from persona.data.generator import generate_snapshot

    catalogue = load_catalogue(settings.catalogue_path)
    outputs = []
    for month in args.month:
        frame = generate_snapshot(
            catalogue, args.rows, month, args.seed, args.scenario, args.missing_rate
        )
        if args.out:
            path = Path(str(args.out).format(month=month))
            write_table(frame, path)
            outputs.append({"month": month, "rows": len(frame), "file": str(path)})
        else:
            engine = database.make_engine(settings.project_database_url)
            table = args.table or settings.customers_table
            database.upsert_frame(
                engine, table, frame, catalogue.schema, step="persona data generate"
            )
            outputs.append(
                {
                    "month": month,
                    "rows": len(frame),
                    "table": table,
                    "table_rows": database.count_rows(engine, table),
                }
            )
    return outputs


def _load_user_frame(args: argparse.Namespace, settings: Settings):
    """The schema, the file's rows (month labelled) and how the file was read, for the JSON."""
    from datetime import date

    from persona.data.files import read_table_with_dialect
    from persona.data.schema import load_schema
    from persona.data.snapshot import label_months

    schema = load_schema(Path(args.schema) if args.schema else settings.schema_path)
    frame, dialect = read_table_with_dialect(
        Path(args.file),
        schema.id_column,
        text_columns=[*schema.categorical, *schema.date_columns],
        expected_columns=[schema.id_column, *schema.features],
        delimiter=args.delimiter,
        encoding=args.encoding,
    )
    frame, months = label_months(frame, schema.month_column, args.month, date.today())
    return schema, frame, {"file": dialect.to_dict(), **months.to_dict()}


def _data_validate(args: argparse.Namespace, settings: Settings) -> Any:
    from persona.data.validation import require_valid

    schema, frame, read = _load_user_frame(args, settings)
    return {**require_valid(frame, schema).to_dict(), **read}


def _data_ingest(args: argparse.Namespace, settings: Settings) -> Any:
    from persona.adapters import database
    from persona.data.validation import require_valid
    from persona.job_records import tracked_job

    schema, frame, read = _load_user_frame(args, settings)
    require_valid(frame, schema)
    frame = frame.drop(columns=[c for c in schema.excluded if c in frame.columns])
    engine = database.make_engine(settings.project_database_url)
    table = args.table or schema.table or settings.customers_table
    with tracked_job(settings, "ingest", f"{args.file} -> {table}") as job:
        written = database.upsert_frame(
            engine, table, frame, schema, step="persona data ingest", on_committed=job.progress
        )
    return {
        "rows": written,
        "table": table,
        "table_rows": database.count_rows(engine, table),
        **read,
    }


def _data_infer_schema(args: argparse.Namespace, settings: Settings) -> Any:
    from persona.data.files import read_table_with_dialect
    from persona.data.infer import infer_schema
    from persona.errors import InvalidInputError

    out = Path(args.out)
    if out.exists() and not args.force:
        raise InvalidInputError(f"{out} exists; pass --force to overwrite it")
    frame, dialect = read_table_with_dialect(
        Path(args.file), args.id, delimiter=args.delimiter, encoding=args.encoding
    )
    inferred = infer_schema(frame, id_column=args.id, month_column=args.month)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(inferred.to_yaml(Path(args.file).name, dialect.describe()), encoding="utf-8")
    return {"schema": str(out), **inferred.summary(), "file": dialect.to_dict()}


def _add_dialect_options(parser: argparse.ArgumentParser) -> None:
    """Overrides of what the reader detects in a text file (``persona.data.files``)."""
    parser.add_argument(
        "--delimiter",
        help="CSV delimiter: one character, or tab/comma/semicolon/pipe (default: detected)",
    )
    parser.add_argument(
        "--encoding", help="text encoding, e.g. utf-8, cp1252, latin-1 (default: detected)"
    )


def _train(args: argparse.Namespace, settings: Settings) -> Any:
    from persona.composition import reconcile_at_start, training_context
    from persona.flows.train import DataRequest, run_training

    reconcile_at_start(settings)
    context = training_context(settings, seed=args.seed)
    return run_training(context, DataRequest.from_variables(vars(args)))


def _monitor(args: argparse.Namespace, settings: Settings) -> Any:
    from persona.composition import monitor_context, reconcile_at_start
    from persona.flows.monitor import Decision, MonitorRequest, run_monitoring

    ignored = {"handler", "command", "monitor_command"}
    variables = {k: v for k, v in vars(args).items() if k not in ignored}
    reconcile_at_start(settings)
    outcome = run_monitoring(monitor_context(settings), MonitorRequest.from_variables(variables))
    if outcome.retrained is not None and outcome.retrained.failed:
        _emit(outcome)  # the run's record, then the failure as the exit code
        raise PersonaError(f"{outcome.retrained.reason} (run {outcome.run_id} recorded as failed)")
    if outcome.decision == Decision.DATA_QUALITY_FAILED:
        _emit(outcome)  # recorded and alerted; the exit code says the data is bad (3)
        raise DataValidationError(f"{outcome.detail} (run {outcome.run_id})")
    return outcome


def _monitor_report(args: argparse.Namespace, settings: Settings) -> Any:
    from persona.adapters.drift_store import PostgresDriftStore
    from persona.flows.persona_mix import write_trend_report

    default = settings.home / "reports" / f"persona-trend-{settings.model_name}.html"
    out = Path(args.out) if args.out else default
    path = write_trend_report(
        PostgresDriftStore(settings.project_database_url), settings.model_name, out
    )
    return {"report": str(path.resolve()), "segmentation": settings.segmentation}


def _demo(args: argparse.Namespace, settings: Settings) -> Any:
    from persona.composition import demo_stack, training_context
    from persona.flows.demo import DemoRequest, format_summary, run_demo
    from persona.monitoring.drift import load_drift_config

    request = DemoRequest.build(
        args.months,
        args.rows,
        args.sample,
        args.seed,
        args.scenario,
        min_rows=load_drift_config(settings.drift_config_path).min_rows,
        # The API checks the alias every poll interval, then downloads and compiles the model.
        serve_timeout_s=args.serve_timeout or 2 * settings.model_poll_seconds + 60,
    )
    report = run_demo(demo_stack(settings), training_context(settings, seed=args.seed), request)
    sys.stdout.write(format_summary(report) + "\n")
    return None


def _model_rollback(args: argparse.Namespace, settings: Settings) -> Any:
    from persona.composition import mlflow_models

    return vars(mlflow_models(settings).rollback(settings.model_alias, to=args.to))


def _model_promote(args: argparse.Namespace, settings: Settings) -> Any:
    from persona.composition import mlflow_models

    return vars(mlflow_models(settings).promote(args.version, settings.model_alias, args.reason))


def _model_show(args: argparse.Namespace, settings: Settings) -> Any:
    from persona.composition import mlflow_models

    return mlflow_models(settings).describe()


def _pipeline_run(args: argparse.Namespace, settings: Settings) -> Any:
    from persona.orchestration.mage_runner import parse_variables, run_pipeline
    from persona.segmentation import DEFAULT

    variables = parse_variables(args.var)
    if settings.segmentation != DEFAULT:
        variables.setdefault("segmentation", settings.segmentation)
    result = run_pipeline(settings, args.pipeline, variables, timeout_s=args.timeout)
    if not result.ok:
        raise PersonaError(result.failure_text())
    return result.to_dict()


def _runs_reconcile(args: argparse.Namespace, settings: Settings) -> Any:
    from datetime import timedelta

    from persona.composition import reconcile_runs
    from persona.errors import ConfigurationError
    from persona.values import to_plain

    if args.stale_minutes <= 0:
        raise ConfigurationError(f"--stale-minutes must be positive, got {args.stale_minutes}")
    result = reconcile_runs(settings, timedelta(minutes=args.stale_minutes))
    return {"segmentation": settings.segmentation, **to_plain(result)}


def _env_init(args: argparse.Namespace, settings: Settings) -> Any:
    import os
    import secrets

    from persona.settings import new_env_lines

    path = Path(args.path)
    if path.exists():
        return {"env_file": str(path), "created": False}
    text = "\n".join(new_env_lines(lambda: secrets.token_urlsafe(24))) + "\n"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # holds secrets
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    return {"env_file": str(path), "created": True}


def _env_example(args: argparse.Namespace, settings: Settings) -> Any:
    sys.stdout.write("\n".join(env_example_lines()) + "\n")
    return None


def _add_run_variables(
    parser: argparse.ArgumentParser, table: dict[str, RunVariable], skip: tuple[str, ...] = ()
) -> None:
    """One option per run variable, its default and help from ``persona.run_variables``.

    Yes/no variables stay text here: the flow parses them (``parse_bool``) and names the
    variable when the word is wrong.
    """
    for variable in table.values():
        if variable.name in skip:
            continue
        shown = "" if variable.default == "" else f" (default: {variable.default})"
        parser.add_argument(
            variable.option,
            type=variable.kind if variable.kind in (int, float) else str,
            default=variable.default,
            choices=variable.choices or None,
            help=variable.help + shown,
        )


def _add_segmentation(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(SEGMENTATION.option, default=SEGMENTATION.default, help=SEGMENTATION.help)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="persona", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser(
        "data", help="generate, validate, ingest customer data; infer a schema"
    )
    data_commands = data.add_subparsers(dest="data_command", required=True)
    generate = data_commands.add_parser("generate", help="synthetic monthly snapshots")
    generate.add_argument("--rows", type=int, default=TRAIN_DEFAULTS["rows"])
    generate.add_argument("--month", nargs="+", default=[DEFAULT_MONTH], help="one or more YYYY-MM")
    generate.add_argument("--seed", type=int, default=TRAIN_DEFAULTS["seed"])
    generate.add_argument(
        "--scenario",
        default=TRAIN_DEFAULTS["scenario"],
        choices=["none", "income_inflation", "mix_shift", "new_persona", "channel_shift"],
    )
    generate.add_argument("--missing-rate", type=float, default=0.0)
    generate.add_argument(
        "--out", help="CSV/Parquet path ({month} is replaced); default: the table"
    )
    generate.add_argument("--table", help="target table (default PERSONA_CUSTOMERS_TABLE)")
    _add_segmentation(generate)
    generate.set_defaults(handler=_data_generate)
    for name, handler, text in (
        ("validate", _data_validate, "check a customer file against a schema"),
        ("ingest", _data_ingest, "validate a customer file and upsert it into the table"),
    ):
        sub = data_commands.add_parser(name, help=text)
        sub.add_argument("--file", required=True, help="CSV/TSV/TXT, XLSX or Parquet")
        sub.add_argument("--schema", help="schema YAML (default PERSONA_SCHEMA)")
        sub.add_argument(
            "--month",
            help="set the month column to this YYYY-MM (a file without the column: default "
            "the current month)",
        )
        _add_dialect_options(sub)
        if name == "ingest":
            sub.add_argument("--table")
        _add_segmentation(sub)
        sub.set_defaults(handler=handler)
    infer = data_commands.add_parser(
        "infer-schema", help="write a first schema YAML for a file, with comments to check"
    )
    infer.add_argument("file", help="CSV/TSV/TXT, XLSX or Parquet")
    infer.add_argument("--out", required=True, help="schema YAML to write")
    infer.add_argument("--id", help="the id column (default: the best unique, non-empty one)")
    infer.add_argument(
        "--month", help="the file's YYYY-MM month column (default: none, --month at ingest)"
    )
    infer.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    _add_dialect_options(infer)
    infer.set_defaults(handler=_data_infer_schema)

    train = commands.add_parser("train", help="run the training flow in-process (no Mage)")
    # Always registers: the Mage pipeline's `register` variable gates a block this has not.
    _add_run_variables(train, TRAIN, skip=("register",))
    train.set_defaults(handler=_train)

    monitor = commands.add_parser(
        "monitor", help="run the drift check (and retraining, alert) in-process (no Mage)"
    )
    _add_run_variables(monitor, MONITOR)
    monitor.set_defaults(handler=_monitor)
    monitor_commands = monitor.add_subparsers(dest="monitor_command", required=False)
    report = monitor_commands.add_parser(
        "report",
        help="write the trend chart of persona shares and fit per month (HTML, opens offline) "
        "from the drift history",
    )
    report.add_argument(
        "--out", help="HTML file to write (default: PERSONA_HOME/reports/persona-trend-MODEL.html)"
    )
    _add_segmentation(report)
    report.set_defaults(handler=_monitor_report)

    score = commands.add_parser(
        "score", help="score customers with the production model: through the API or in process"
    )
    score.add_argument("--month", help="YYYY-MM to score (default: every month)")
    score.add_argument(
        "--file", help="CSV (any common dialect), Parquet or xlsx of customers instead of the table"
    )
    _add_dialect_options(score)
    score.add_argument("--out", help="write results to this CSV/Parquet instead of the table")
    score.add_argument("--url", help="scoring API (default PERSONA_SCORING_URL)")
    cli_score.add_engine_options(score)
    _add_segmentation(score)
    score.set_defaults(handler=cli_score.score)

    demo = commands.add_parser(
        "demo",
        help="on the running stack: generate 3 months (the third drifted), train, score over "
        "HTTP, monitor the drifted month, print where to look",
    )
    _add_run_variables(demo, DEMO)
    demo.add_argument(
        "--serve-timeout", type=float, help="seconds to wait for the API to serve the new model"
    )
    demo.set_defaults(handler=_demo)

    model = commands.add_parser("model", help="registry operations")
    model_commands = model.add_subparsers(dest="model_command", required=True)
    rollback = model_commands.add_parser(
        "rollback",
        help="move the served alias (PERSONA_MODEL_ALIAS) back to the version it replaced, "
        "also after a promotion in the MLflow UI",
    )
    rollback.add_argument("--to", help="roll back to this version instead (e.g. 3)")
    _add_segmentation(rollback)
    rollback.set_defaults(handler=_model_rollback)
    promote = model_commands.add_parser(
        "promote", help="move the served alias (PERSONA_MODEL_ALIAS) to VERSION, recorded"
    )
    promote.add_argument("version", help="registered version number, e.g. 3")
    promote.add_argument("--reason", help="recorded with the move (default: manual promote)")
    _add_segmentation(promote)
    promote.set_defaults(handler=_model_promote)
    show = model_commands.add_parser("show", help="which versions hold which alias")
    _add_segmentation(show)
    show.set_defaults(handler=_model_show)

    personas = commands.add_parser("personas", help="the personas a segmentation serves")
    persona_commands = personas.add_subparsers(dest="personas_command", required=True)
    listing = persona_commands.add_parser("list", help="ids, names and shares of the personas")
    _add_segmentation(listing)
    listing.set_defaults(handler=cli_segmentations.personas_list)
    rename = persona_commands.add_parser(
        "rename", help="give a persona a name; the API serves it, later retrains keep it"
    )
    _add_segmentation(rename)
    rename.add_argument("persona_id", type=int, help="its id (persona personas list)")
    rename.add_argument("name", help='e.g. "Affluent wine lovers"')
    rename.set_defaults(handler=cli_segmentations.personas_rename)

    pipeline = commands.add_parser("pipeline", help="Mage pipelines")
    pipeline_commands = pipeline.add_subparsers(dest="pipeline_command", required=True)
    run = pipeline_commands.add_parser("run", help="run a pipeline headless (honours conditionals)")
    run.add_argument("pipeline", help="pipeline uuid, e.g. train")
    run.add_argument("--var", action="append", default=[], help="run variable KEY=VALUE")
    run.add_argument("--timeout", type=float, default=3600.0, help="seconds before giving up")
    _add_segmentation(run)
    run.set_defaults(handler=_pipeline_run)

    runs = commands.add_parser("runs", help="runs left open by a killed process")
    runs_commands = runs.add_subparsers(dest="runs_command", required=True)
    reconcile = runs_commands.add_parser(
        "reconcile",
        help="close the runs whose owner is gone (drift history rows -> abandoned, MLflow "
        "runs -> KILLED, Mage pipeline runs -> failed) and print what was closed",
    )
    reconcile.add_argument(
        "--stale-minutes",
        type=float,
        default=DEFAULT_STALE_AFTER.total_seconds() / 60,
        help="a run owned on another host is gone after this long without a heartbeat "
        "(default: %(default)g)",
    )
    _add_segmentation(reconcile)
    reconcile.set_defaults(handler=_runs_reconcile)

    segmentation = commands.add_parser(
        "segmentation", help="several datasets side by side: add, list, remove segmentations"
    )
    segmentation_commands = segmentation.add_subparsers(dest="segmentation_command", required=True)
    add = segmentation_commands.add_parser(
        "add",
        help="a new segmentation: its own tables, registered model, experiment and drift history",
    )
    add.add_argument("name", help="lower-case letters, digits and _, e.g. marketing")
    add.add_argument("--schema", required=True, help="its dataset schema YAML")
    add.add_argument("--params", help="its search parameters (default: PERSONA_PARAMS)")
    add.add_argument("--drift", help="its drift thresholds (default: PERSONA_DRIFT_CONFIG)")
    add.add_argument("--replace", action="store_true", help="replace the files of an existing one")
    add.set_defaults(handler=cli_segmentations.segmentation_add)
    segmentation_commands.add_parser(
        "list", help="every segmentation, what it owns and the version it serves"
    ).set_defaults(handler=cli_segmentations.segmentation_list)
    remove = segmentation_commands.add_parser(
        "remove", help="forget a segmentation (its tables and model versions are kept)"
    )
    remove.add_argument("name")
    remove.add_argument(
        "--force", action="store_true", help="also when it serves a model: the API stops serving it"
    )
    remove.set_defaults(handler=cli_segmentations.segmentation_remove)

    commands.add_parser("env-example", help="print the .env.example text").set_defaults(
        handler=_env_example
    )
    env_init = commands.add_parser(
        "env-init", help="write a first .env (fresh random secrets); an existing one is kept"
    )
    env_init.add_argument("--path", default=".env")
    env_init.set_defaults(handler=_env_init)
    return parser


def _step(args: argparse.Namespace) -> str:
    """The command as typed ("persona data ingest"), for the line of an outage."""
    words = ["persona", args.command]
    sub = getattr(args, f"{args.command.replace('-', '_')}_command", None)
    return " ".join([*words, sub] if sub else words)


def _default_segmentation(args: argparse.Namespace, settings: Settings) -> bool:
    """The command works on the default segmentation, whose settings are the ones given: a
    `persona pipeline run` or `runs reconcile` need not import the composition root for it."""
    from persona.segmentation import DEFAULT

    return (args.segmentation or DEFAULT) == DEFAULT and settings.segmentation == DEFAULT


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body(settings: Settings) -> int:
        if hasattr(args, "segmentation") and not _default_segmentation(args, settings):
            from persona.composition import for_segmentation  # seconds of imports (MLflow, ...)

            settings = for_segmentation(settings, args.segmentation or None)
        result = args.handler(args, settings)
        if result is not None:
            _emit(result)
        if isinstance(result, dict) and result.get("failed_rows"):
            return 1  # partial success: the summary names the customers that were not scored
        return 0

    return run_entry(body, logger, step=_step(args))


if __name__ == "__main__":
    raise SystemExit(main())
