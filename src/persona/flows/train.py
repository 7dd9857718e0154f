"""Training steps: load -> validate -> search candidates -> select -> register/promote.

Each step takes plain inputs and returns a JSON-able dict (or a DataFrame), so Mage blocks can
pass results between processes and ``run_training`` can chain them in one process.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd

from persona.adapters import database, mlflow_registry
from persona.data.catalogue import Catalogue, load_catalogue
from persona.data.files import read_table
from persona.data.generator import generate_snapshot
from persona.data.schema import DatasetSchema, load_schema
from persona.data.validation import require_valid
from persona.errors import ConfigurationError
from persona.flags import parse_bool
from persona.model.build import build_persona_model
from persona.model.evaluate import decide_promotion
from persona.model.naming import Persona, catalogue_personas
from persona.model.params import SearchParams, load_params
from persona.model.preprocess import prepare_features
from persona.model.profile import plot_profiles, profile_table
from persona.model.pyfunc import PersonaModel, load_estimator, save_estimator
from persona.model.search import Candidate, run_search
from persona.model.selection import select_winner
from persona.monitoring.drift import load_drift_config
from persona.run_variables import DEFAULT_MONTH, TRAIN_DEFAULTS
from persona.settings import Settings

logger = logging.getLogger(__name__)

SERVING_PACKAGES = ("mlflow-skinny", "numpy", "pandas", "scikit-learn", "scipy", "skops")
# Drift is measured against what the model was fitted on: a sample of it travels with the run.
REFERENCE_FOLDER = "reference"
REFERENCE_FILE = "reference.parquet"
REFERENCE_ARTIFACT = f"{REFERENCE_FOLDER}/{REFERENCE_FILE}"


def reference_sample(
    train: pd.DataFrame, schema: DatasetSchema, rows: int, seed: int
) -> pd.DataFrame:
    """The rows drift checks compare against: features, id and month of the fitted split."""
    columns = [c for c in (schema.id_column, schema.month_column, *schema.features) if c in train]
    sample = train if len(train) <= rows else train.sample(n=rows, random_state=seed)
    return sample[columns].reset_index(drop=True)


def run_flag(variables: Mapping[str, Any], name: str, default: bool = True) -> bool:
    """The yes/no run variable ``name``: text from the CLI/API or a bool from the Mage UI.

    Absent or blank is ``default``; a word other than true/false/1/0/yes/no/on/off fails
    naming the variable (``parse_bool``), so ``retrain=ture`` is refused, not taken as true.
    """
    return parse_bool(variables.get(name), f"run variable {name!r}", default)


@dataclass(frozen=True)
class DataRequest:
    """Where training data comes from (the pipeline's run variables)."""

    source: str = TRAIN_DEFAULTS["source"]  # table | file | synthetic
    months: tuple[str, ...] = ()
    path: str | None = None
    rows: int = TRAIN_DEFAULTS["rows"]
    seed: int = TRAIN_DEFAULTS["seed"]
    scenario: str = TRAIN_DEFAULTS["scenario"]

    @classmethod
    def from_variables(cls, variables: dict[str, Any]) -> DataRequest:
        months = variables.get("months") or variables.get("month") or ()
        if isinstance(months, str):
            months = tuple(m.strip() for m in months.split(",") if m.strip())
        source = str(variables.get("source", TRAIN_DEFAULTS["source"]))
        if source not in {"table", "file", "synthetic"}:
            raise ConfigurationError(f"source must be table|file|synthetic, got {source!r}")
        return cls(
            source=source,
            months=tuple(months),
            path=variables.get("path") or None,
            rows=int(variables.get("rows", TRAIN_DEFAULTS["rows"])),
            seed=int(variables.get("seed", TRAIN_DEFAULTS["seed"])),
            scenario=str(variables.get("scenario", TRAIN_DEFAULTS["scenario"])),
        )


@dataclass(frozen=True)
class TrainingContext:
    """Everything the steps need, built once by an entry point from settings."""

    settings: Settings
    schema: DatasetSchema
    params: SearchParams
    catalogue: Catalogue | None
    alias: str  # the registry alias a promotion moves and the API serves (model_alias)
    reference_rows: int = 20_000

    @classmethod
    def from_settings(cls, settings: Settings, seed: int | None = None) -> TrainingContext:
        schema = load_schema(settings.schema_path)
        params = load_params(settings.params_path)
        if seed is not None:
            params = SearchParams(**{**vars(params), "seed": int(seed)})
        catalogue = None
        if settings.catalogue_path.exists():
            catalogue = load_catalogue(settings.catalogue_path)
        reference_rows = load_drift_config(settings.drift_config_path).reference_sample_rows
        return cls(
            settings,
            schema,
            params,
            catalogue,
            alias=settings.model_alias,
            reference_rows=reference_rows,
        )

    @property
    def catalogue_matches_schema(self) -> bool:
        return self.catalogue is not None and list(self.catalogue.schema.features) == list(
            self.schema.features
        )


def load_step(
    context: TrainingContext, request: DataRequest, progress: bool | None = None
) -> pd.DataFrame:
    schema = context.schema
    if request.source == "synthetic":
        if context.catalogue is None:
            raise ConfigurationError("source=synthetic needs the persona catalogue")
        months = request.months or (DEFAULT_MONTH,)
        return pd.concat(
            [
                generate_snapshot(
                    context.catalogue,
                    request.rows,
                    m,
                    request.seed,
                    request.scenario,
                    progress=progress,
                )
                for m in months
            ],
            ignore_index=True,
        )
    if request.source == "file":
        if not request.path:
            raise ConfigurationError("source=file needs the variable 'path'")
        frame = read_table(Path(request.path), schema.id_column)
        if request.months and schema.month_column in frame.columns:
            frame = frame[frame[schema.month_column].isin(request.months)].reset_index(drop=True)
        return frame
    engine = database.make_engine(context.settings.project_database_url)
    table = schema.table or context.settings.customers_table
    return database.read_months(engine, table, schema, request.months or None)


def validate_step(frame: pd.DataFrame, schema: DatasetSchema) -> pd.DataFrame:
    require_valid(frame, schema)
    return frame


def split_holdout(
    frame: pd.DataFrame, schema: DatasetSchema, fraction: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hash of the customer id decides: the same customers are held out whatever the row order."""
    hashed = pd.util.hash_pandas_object(frame[schema.id_column].astype(str), index=False).to_numpy()
    held = (hashed % 10_000) < int(fraction * 10_000)
    return frame[~held].reset_index(drop=True), frame[held].reset_index(drop=True)


def _workdir(settings: Settings, run_id: str) -> Path:
    path = settings.home / "runs" / run_id
    path.mkdir(parents=True, exist_ok=True)
    return path


def search_step(
    context: TrainingContext, frame: pd.DataFrame, progress: bool | None = None
) -> dict[str, Any]:
    """Fit every candidate on the training split, log a nested run each, keep them on disk."""
    settings, schema, params = context.settings, context.schema, context.params
    train, holdout = split_holdout(frame, schema, params.holdout_fraction)
    mlflow_registry.connect(settings.mlflow_tracking_uri, settings.mlflow_experiment)
    months = (
        sorted(frame[schema.month_column].astype(str).unique())
        if schema.month_column in frame
        else []
    )
    run_name = f"train-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    with mlflow.start_run(run_name=run_name) as parent:
        mlflow.set_tags({"persona.stage": "training", "persona.months": ",".join(months)})
        mlflow.log_params(
            {
                **params.to_flat_dict(),
                "n_rows": len(frame),
                "n_train": len(train),
                "n_holdout": len(holdout),
            }
        )
        result = run_search(train, schema, params, progress=progress)
        workdir = _workdir(settings, parent.info.run_id)
        result.table().to_csv(workdir / "candidates.csv", index=False)
        mlflow.log_artifact(str(workdir / "candidates.csv"))
        candidates = []
        for candidate in result.candidates:
            child_id = mlflow_registry.log_candidate_run(
                candidate.name, {"family": candidate.family, **candidate.params}, candidate.metrics
            )
            path = save_estimator(candidate.estimator, workdir / f"{candidate.name}.skops")
            candidates.append(
                {
                    "name": candidate.name,
                    "family": candidate.family,
                    "k": candidate.k,
                    "params": candidate.params,
                    "metrics": candidate.metrics,
                    "path": str(path),
                    "run_id": child_id,
                }
            )
    return {
        "run_id": parent.info.run_id,
        "months": months,
        "n_train": len(train),
        "n_holdout": len(holdout),
        "search_seconds": result.seconds,
        "candidates": candidates,
    }


def _production_references(context: TrainingContext, client) -> tuple[list[Persona], str | None]:
    name = context.settings.model_name
    current = mlflow_registry.production_version(client, name, context.alias)
    if current is not None:
        model = mlflow_registry.load_model(f"models:/{name}@{context.alias}")
        personas = {p.name: p for p in model.unwrap_python_model().personas.values()}
        return list(personas.values()), current.version
    if context.catalogue_matches_schema:
        return catalogue_personas(context.catalogue), None
    return [], None


def select_step(
    context: TrainingContext, search: dict[str, Any], frame: pd.DataFrame
) -> dict[str, Any]:
    """Pick the winner among this session's candidates, name its personas, log the pyfunc."""
    settings, schema, params = context.settings, context.schema, context.params
    pool = [
        Candidate(c["name"], c["family"], c["k"], c["params"], c["metrics"], estimator=None)
        for c in search["candidates"]
    ]
    winner = select_winner(pool, params)
    entry = next(c for c in search["candidates"] if c["name"] == winner.name)
    estimator = load_estimator(Path(entry["path"]))
    train, _ = split_holdout(frame, schema, params.holdout_fraction)

    client = mlflow_registry.connect(settings.mlflow_tracking_uri, settings.mlflow_experiment)
    references, reference_version = _production_references(context, client)
    built = build_persona_model(estimator, train, schema, params, references)
    workdir = _workdir(settings, search["run_id"])
    (workdir / "personas.json").write_text(json.dumps(built.table, indent=2, default=str))
    profile = profile_table(train, built.names, schema)
    profile.to_csv(workdir / "persona_profile.csv")
    profile.to_html(workdir / "persona_profile.html")
    plot_profiles(profile, train, schema, workdir / "persona_profile.png")

    reference = reference_sample(train, schema, context.reference_rows, params.seed)
    reference.to_parquet(workdir / REFERENCE_FILE, index=False)

    example = prepare_features(train.head(5), schema)
    with mlflow.start_run(run_id=search["run_id"]):
        mlflow.set_tags(
            {
                "persona.winner": winner.name,
                "persona.naming_reference": (
                    f"@{context.alias} v{reference_version}"
                    if reference_version
                    else ("catalogue" if references else "none")
                ),
            }
        )
        mlflow.log_metrics({f"winner_{k}": v for k, v in winner.metrics.items() if v == v})
        mlflow.log_params(
            {"winner": winner.name, "winner_family": winner.family, "winner_k": winner.k}
        )
        for name in (
            "persona_profile.csv",
            "persona_profile.html",
            "persona_profile.png",
            "personas.json",
        ):
            mlflow.log_artifact(str(workdir / name), artifact_path="profile")
        mlflow.log_artifact(str(workdir / REFERENCE_FILE), artifact_path=REFERENCE_FOLDER)
        model_uri = mlflow_registry.log_pyfunc_model(
            PersonaModel(),
            {"estimator": entry["path"], "personas": str(workdir / "personas.json")},
            example,
            built.model.predict(None, example),
            [f"{package}=={version(package)}" for package in SERVING_PACKAGES],
        )
    logger.info("winner %s (k=%d) logged as %s", winner.name, winner.k, model_uri)
    return {
        "run_id": search["run_id"],
        "winner": winner.name,
        "k": winner.k,
        "metrics": winner.metrics,
        "model_uri": model_uri,
        "personas": sorted(set(built.names)),
    }


def register_step(
    context: TrainingContext, selection: dict[str, Any], frame: pd.DataFrame
) -> dict[str, Any]:
    """Champion/challenger on the held-out rows, then register and move the right alias."""
    settings, schema, params = context.settings, context.schema, context.params
    _, holdout = split_holdout(frame, schema, params.holdout_fraction)
    holdout = holdout[list(schema.features)]  # what the models take; ids and truth stay out
    client = mlflow_registry.connect(settings.mlflow_tracking_uri, settings.mlflow_experiment)
    challenger = mlflow_registry.load_model(selection["model_uri"])
    challenger_labels = challenger.predict(holdout)["persona_id"].to_numpy()
    production_labels = None
    if mlflow_registry.production_version(client, settings.model_name, context.alias) is not None:
        production = mlflow_registry.load_model(f"models:/{settings.model_name}@{context.alias}")
        production_labels = production.predict(holdout)["persona_id"].to_numpy()
    estimator = challenger.unwrap_python_model().estimator
    decision = decide_promotion(
        estimator,
        challenger_labels,
        production_labels,
        holdout,
        schema,
        params,
        alias=context.alias,
    )
    registered = mlflow_registry.register(
        client,
        settings.model_name,
        selection["model_uri"],
        decision.promote,
        decision.reason,
        {
            "training_run_id": selection["run_id"],
            "winner": selection["winner"],
            "challenger_score": round(decision.challenger_score, 5),
            "production_score": (
                "" if decision.production_score is None else round(decision.production_score, 5)
            ),
            "promotion_metric": params.promotion_metric,
        },
        alias=context.alias,
    )
    with mlflow.start_run(run_id=selection["run_id"]):
        mlflow.log_metric("holdout_challenger_score", decision.challenger_score)
        if decision.production_score is not None:
            mlflow.log_metric("holdout_production_score", decision.production_score)
        mlflow.set_tags(
            {"persona.registered_version": registered.version, "persona.alias": registered.alias}
        )
    return {
        "model_name": registered.name,
        "version": registered.version,
        "alias": registered.alias,
        "reason": registered.reason,
        "previous_production": registered.previous_production,
        "challenger_score": decision.challenger_score,
        "production_score": decision.production_score,
    }


def run_training(
    context: TrainingContext, request: DataRequest, progress: bool | None = None
) -> dict[str, Any]:
    """The whole training path in one process (local stack, CLI, tests)."""
    frame = validate_step(load_step(context, request, progress), context.schema)
    search = search_step(context, frame, progress)
    selection = select_step(context, search, frame)
    registration = register_step(context, selection, frame)
    return {"search_seconds": search["search_seconds"], **selection, **registration}
