"""Training, the application layer: load -> validate -> search -> select -> register/promote.

Steps take the ports and values of a ``TrainingContext`` (built by an entry point, see
``persona.composition``) and return frozen dataclasses; Mage blocks run them in separate
processes (JSON at that boundary only, ``persona.orchestration.blocks``), ``run_training``
chains them in one process and ``train_on`` is what retraining after drift calls.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pandas as pd

from persona.data.catalogue import Catalogue
from persona.data.files import read_table
from persona.data.generator import generate_snapshot
from persona.data.schema import DatasetSchema
from persona.data.snapshot import label_months
from persona.data.validation import require_valid
from persona.errors import ConfigurationError
from persona.flags import parse_bool
from persona.model.build import build_persona_model
from persona.model.evaluate import (
    Labelled,
    PromotionDecision,
    decide_promotion,
    decide_retrain_promotion,
)
from persona.model.holdout import Split, split_holdout, split_periods
from persona.model.naming import Persona, catalogue_personas
from persona.model.params import SearchParams
from persona.model.preprocess import raw_inputs
from persona.model.profile import evidence_table, plot_profiles, profile_html, profile_table
from persona.model.pyfunc import PersonaModel, load_estimator, save_estimator
from persona.model.search import Candidate, run_search
from persona.model.selection import select_winner
from persona.monitoring.sketch_drift import sketch_of
from persona.ports import CustomerStore, ModelFiles, Registration, Registry, Tracker
from persona.run_variables import DATA_SOURCES, DEFAULT_MONTH, TRAIN_DEFAULTS

logger = logging.getLogger(__name__)

SERVING_PACKAGES = ("mlflow-skinny", "numpy", "pandas", "scikit-learn", "scipy", "skops")
# Drift is measured against what the model was fitted on: a sample of it travels with the run.
REFERENCE_FOLDER = "reference"
REFERENCE_FILE = "reference.parquet"
REFERENCE_ARTIFACT = f"{REFERENCE_FOLDER}/{REFERENCE_FILE}"
# ... and a sketch of the whole fitted split, which the Spark drift engine compares against
SKETCH_FILE = "reference_sketch.json"
PROFILE_FILES = ("persona_profile.csv", "persona_profile.html", "persona_profile.png")


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
        if source not in DATA_SOURCES:
            raise ConfigurationError(f"source must be {'|'.join(DATA_SOURCES)}, got {source!r}")
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
    """What the steps work with: the dataset's contract, the search, and the ports."""

    schema: DatasetSchema
    params: SearchParams
    catalogue: Catalogue | None
    alias: str  # the registry alias a promotion moves and the API serves (model_alias)
    registry: Registry
    tracker: Tracker
    customers: CustomerStore | None  # None: only files and synthetic data can be read
    workdir: Path  # local folder of a run's files before they are logged
    reference_rows: int = 20_000

    def with_seed(self, seed: int | None) -> TrainingContext:
        if seed is None:
            return self
        return replace(self, params=replace(self.params, seed=int(seed)))

    @property
    def catalogue_matches_schema(self) -> bool:
        return self.catalogue is not None and list(self.catalogue.schema.features) == list(
            self.schema.features
        )

    def run_folder(self, run_id: str) -> Path:
        path = self.workdir / run_id
        path.mkdir(parents=True, exist_ok=True)
        return path


@dataclass(frozen=True)
class CandidateFile:
    """A fitted candidate, kept on disk between steps, with its nested run."""

    name: str
    family: str
    k: int
    params: dict[str, Any]
    metrics: dict[str, float]
    path: str
    run_id: str


@dataclass(frozen=True)
class SearchOutcome:
    run_id: str
    months: tuple[str, ...]
    n_train: int
    n_holdout: int
    search_seconds: float
    candidates: tuple[CandidateFile, ...]
    # The day date functions of derived features counted to in the search (ISO), which the
    # selected model keeps; None when the schema needs none or fixes its own.
    reference_date: str | None = None

    def schema(self, schema: DatasetSchema) -> DatasetSchema:
        """``schema`` as the candidates were fitted under (reference date frozen)."""
        return schema.with_reference_date(self.reference_date)


@dataclass(frozen=True)
class Selection:
    run_id: str
    winner: str
    k: int
    metrics: dict[str, float]
    model_uri: str
    personas: tuple[str, ...]


@dataclass(frozen=True)
class RegistrationOutcome:
    """The registry's answer plus the two holdout scores the decision compared."""

    registration: Registration
    challenger_score: float
    production_score: float | None
    reference_challenger_score: float | None = None
    reference_production_score: float | None = None
    rule: str = ""


@dataclass(frozen=True)
class TrainingOutcome(Selection):
    """What one training run did, flat, as the CLI prints it: the selection, then its fate."""

    model_name: str
    version: str
    alias: str
    reason: str
    previous_production: str | None
    challenger_score: float
    production_score: float | None
    search_seconds: float = 0.0
    # a retrain: the scores above are on the current period's holdout, these on the reference's
    reference_challenger_score: float | None = None
    reference_production_score: float | None = None
    rule: str = ""  # the promotion rule applied


@dataclass(frozen=True)
class Champion:
    """The version holding the served alias and its loaded model (loaded once per run)."""

    version: str
    model: Any
    renames: Mapping[int, str] = field(default_factory=dict)  # names people gave its personas

    def personas(self) -> list[Persona]:
        """Its personas under the names they are served with, one per name."""
        personas = self.model.unwrap_python_model().personas.values()
        named = [replace(p, name=self.renames.get(p.persona_id, p.name)) for p in personas]
        return list({p.name: p for p in named}.values())


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
        return _read_training_file(request, schema)
    if context.customers is None:
        raise ConfigurationError("source=table needs the project database (PERSONA_DATABASE_URL)")
    return context.customers.read_months(schema, request.months or None)


def _read_training_file(
    request: DataRequest, schema: DatasetSchema, today: date | None = None
) -> pd.DataFrame:
    """The file's rows of the requested months; a file without the month column is one
    snapshot, labelled with the one requested month, else the current month."""
    if not request.path:
        raise ConfigurationError("source=file needs the variable 'path'")
    frame = read_table(
        Path(request.path),
        schema.id_column,
        text_columns=[*schema.categorical, *schema.date_columns],
        expected_columns=[schema.id_column, *schema.features],
    )
    if schema.month_column in frame.columns:
        if request.months:
            frame = frame[frame[schema.month_column].isin(request.months)].reset_index(drop=True)
        return frame
    if len(request.months) > 1:
        raise ConfigurationError(
            f"{request.path} has no month column {schema.month_column!r}, so it is one month: "
            f"give one month (months=YYYY-MM) or none (the current month), got {request.months}"
        )
    month = request.months[0] if request.months else None
    frame, label = label_months(
        frame, schema.month_column, month, today or date.today(), "run variable 'months'"
    )
    logger.info("%s: one snapshot, month %s (%s)", request.path, label.months[0], label.source)
    return frame


def validate_step(frame: pd.DataFrame, schema: DatasetSchema) -> pd.DataFrame:
    require_valid(frame, schema)
    return frame


def split_step(
    context: TrainingContext, frame: pd.DataFrame, current_keys: pd.DataFrame | None = None
) -> Split:
    """The holdout split; with ``current_keys`` (a retrain) the period-aware one."""
    fraction = context.params.holdout_fraction
    if current_keys is None:
        return split_holdout(frame, context.schema, fraction)
    return split_periods(frame, context.schema, fraction, current_keys)


def load_champion(context: TrainingContext) -> Champion | None:
    """The served model, the reference for naming personas and for champion/challenger."""
    current = context.registry.version_holding(context.alias)
    if current is None:
        return None
    return Champion(
        current.version,
        context.registry.load(context.registry.alias_uri(context.alias)),
        context.registry.persona_names(),
    )


def preflight(context: TrainingContext) -> None:
    """The tracking server answers now: a down registry fails in seconds, naming its URL,
    not after a search of many minutes whose results it could not record."""
    context.tracker.check()


def search_step(
    context: TrainingContext, split: Split, progress: bool | None = None
) -> SearchOutcome:
    """Fit every candidate on the training split, log a nested run each, keep them on disk.

    Derived features that count days to a reference date count to today's (UTC) date when the
    schema fixes none; the date is kept in the outcome and frozen into the selected model.
    """
    preflight(context)
    params = context.params
    schema = context.schema.with_reference_date(datetime.now(UTC).date())
    reference_date = None if schema is context.schema else schema.reference_date.isoformat()
    train, holdout = split.train, split.holdout
    months: tuple[str, ...] = ()
    if schema.month_column in train:
        seen = pd.concat([train[schema.month_column], holdout[schema.month_column]])
        months = tuple(sorted(seen.astype(str).unique()))
    run_name = f"train-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    tags = {"persona.stage": "training", "persona.months": ",".join(months)}
    if reference_date is not None:
        tags["persona.reference_date"] = reference_date
    run_params = {
        **params.to_flat_dict(),
        "n_rows": len(train) + len(holdout),
        "n_train": len(train),
        "n_holdout": len(holdout),
    }
    with context.tracker.training_run(run_name, tags, run_params) as run_id:
        result = run_search(train, schema, params, progress=progress)
        folder = context.run_folder(run_id)
        result.table().to_csv(folder / "candidates.csv", index=False)
        plan = result.plan  # what the preprocessing chose from these rows, for a person to see
        context.tracker.log_to_run(
            run_id,
            params={
                "plan.log1p": ",".join(plan.log) or "-",
                "plan.left_out": ",".join(plan.dropped) or "-",
            },
            files={"": [folder / "candidates.csv"]},
        )
        candidates = []
        for candidate in result.candidates:
            child_id = context.tracker.log_candidate(
                candidate.name, {"family": candidate.family, **candidate.params}, candidate.metrics
            )
            path = save_estimator(candidate.estimator, folder / f"{candidate.name}.skops")
            candidates.append(
                CandidateFile(
                    candidate.name,
                    candidate.family,
                    candidate.k,
                    dict(candidate.params),
                    dict(candidate.metrics),
                    str(path),
                    child_id,
                )
            )
    return SearchOutcome(
        run_id, months, len(train), len(holdout), result.seconds, tuple(candidates), reference_date
    )


def _references(context: TrainingContext, champion: Champion | None) -> tuple[list[Persona], str]:
    """Personas to name the winner's clusters after, and where they came from."""
    if champion is not None:
        return champion.personas(), f"@{context.alias} v{champion.version}"
    if context.catalogue_matches_schema:
        return catalogue_personas(context.catalogue), "catalogue"
    return [], "none"


def select_step(
    context: TrainingContext, search: SearchOutcome, split: Split, champion: Champion | None
) -> Selection:
    """Pick the winner among this session's candidates, name its personas, log the pyfunc."""
    schema, params, train = search.schema(context.schema), context.params, split.train
    pool = [
        Candidate(c.name, c.family, c.k, c.params, c.metrics, estimator=None)
        for c in search.candidates
    ]
    winner = select_winner(pool, params)
    entry = next(c for c in search.candidates if c.name == winner.name)
    estimator = load_estimator(Path(entry.path))

    references, naming_reference = _references(context, champion)
    built = build_persona_model(estimator, train, schema, params, references)
    folder = context.run_folder(search.run_id)
    (folder / "personas.json").write_text(json.dumps(built.table, indent=2, default=str))
    # profiles describe the model inputs (derived features included) in their units
    inputs = schema.model_schema
    evidence = evidence_table(built.features, built.names, inputs)
    profile = profile_table(built.features, built.names, inputs, evidence)
    profile.to_csv(folder / "persona_profile.csv")
    (folder / "persona_profile.html").write_text(profile_html(profile, evidence), "utf-8")
    plot_profiles(profile, built.features, inputs, folder / "persona_profile.png")

    reference = reference_sample(train, schema, context.reference_rows, params.seed)
    reference.to_parquet(folder / REFERENCE_FILE, index=False)
    sketch_of(train, schema, datetime.now(UTC).date()).write(folder / SKETCH_FILE)

    example = raw_inputs(train.head(5), schema)  # the model takes the raw columns
    model_uri = context.tracker.log_to_run(
        search.run_id,
        tags={"persona.winner": winner.name, "persona.naming_reference": naming_reference},
        metrics={f"winner_{k}": v for k, v in winner.metrics.items()},
        params={"winner": winner.name, "winner_family": winner.family, "winner_k": winner.k},
        files={
            "profile": [folder / name for name in (*PROFILE_FILES, "personas.json")],
            REFERENCE_FOLDER: [folder / REFERENCE_FILE, folder / SKETCH_FILE],
        },
        model=ModelFiles(
            PersonaModel(),
            {"estimator": entry.path, "personas": str(folder / "personas.json")},
            example,
            built.model.predict(None, example),
            [f"{package}=={version(package)}" for package in SERVING_PACKAGES],
        ),
    )
    logger.info("winner %s (k=%d) logged as %s", winner.name, winner.k, model_uri)
    return Selection(
        search.run_id,
        winner.name,
        winner.k,
        dict(winner.metrics),
        str(model_uri),
        tuple(sorted(set(built.names))),
    )


def register_step(
    context: TrainingContext, selection: Selection, split: Split, champion: Champion | None
) -> RegistrationOutcome:
    """Champion/challenger on the held-out rows, then register and move the right alias."""
    params = context.params
    challenger = context.registry.load(selection.model_uri)
    # the challenger's own schema: derived features count to the date frozen into it
    schema = context.schema.with_reference_date(
        challenger.unwrap_python_model().derived.reference_date
    )
    estimator = challenger.unwrap_python_model().estimator

    def labelled(rows: pd.DataFrame) -> Labelled:
        rows = raw_inputs(rows, schema)  # what the models take; ids and truth stay out
        production = None if champion is None else champion.model.predict(rows)["persona_id"]
        return Labelled(
            rows,
            challenger.predict(rows)["persona_id"].to_numpy(),
            None if production is None else production.to_numpy(),
        )

    current = labelled(split.holdout)
    if split.reference_holdout is None:  # a plain training run
        decision = decide_promotion(
            estimator,
            current.challenger,
            current.production,
            current.rows,
            schema,
            params,
            alias=context.alias,
        )
    else:  # a retrain: the current period decides, the reference period guards
        reference = labelled(split.reference_holdout) if len(split.reference_holdout) else None
        decision = decide_retrain_promotion(
            estimator, current, reference, schema, params, alias=context.alias
        )
    registered = context.registry.register(
        selection.model_uri,
        decision.promote,
        decision.reason,
        {
            "training_run_id": selection.run_id,
            "winner": selection.winner,
            "challenger_score": round(decision.challenger_score, 5),
            "production_score": _rounded(decision.production_score),
            "promotion_metric": params.promotion_metric,
            "promotion_rule": decision.rule,
            **(_retrain_tags(decision) if split.reference_holdout is not None else {}),
        },
        alias=context.alias,
    )
    scores = {"holdout_challenger_score": decision.challenger_score}
    if decision.production_score is not None:
        scores["holdout_production_score"] = decision.production_score
    for name in ("reference_challenger_score", "reference_production_score"):
        if getattr(decision, name) is not None:
            scores[f"holdout_{name}"] = getattr(decision, name)
    context.tracker.log_to_run(
        selection.run_id,
        metrics=scores,
        tags={"persona.registered_version": registered.version, "persona.alias": registered.alias},
    )
    return RegistrationOutcome(
        registered,
        decision.challenger_score,
        decision.production_score,
        decision.reference_challenger_score,
        decision.reference_production_score,
        decision.rule,
    )


def _retrain_tags(decision: PromotionDecision) -> dict[str, Any]:
    """A retrain's version tags: which holdout decided and the guard's two scores."""
    return {
        "decided_on": "current period holdout",
        "reference_challenger_score": _rounded(decision.reference_challenger_score),
        "reference_production_score": _rounded(decision.reference_production_score),
    }


def _rounded(score: float | None) -> str | float:
    return "" if score is None else round(score, 5)


def outcome(
    search: SearchOutcome, selection: Selection, registered: RegistrationOutcome
) -> TrainingOutcome:
    r = registered.registration
    return TrainingOutcome(
        **vars(selection),
        model_name=r.name,
        version=r.version,
        alias=r.alias,
        reason=r.reason,
        previous_production=r.previous_production,
        challenger_score=registered.challenger_score,
        production_score=registered.production_score,
        search_seconds=search.search_seconds,
        reference_challenger_score=registered.reference_challenger_score,
        reference_production_score=registered.reference_production_score,
        rule=registered.rule,
    )


def train_on(
    context: TrainingContext,
    frame: pd.DataFrame,
    progress: bool | None = None,
    current_keys: pd.DataFrame | None = None,
) -> TrainingOutcome:
    """Search, select and register on a validated frame: the split and champion once each.

    ``current_keys``: the key columns of the rows of the period that drifted (a retrain); the
    decision is then taken on their held-out customers, guarded by the reference period's.
    """
    preflight(context)
    split = split_step(context, frame, current_keys)
    champion = load_champion(context)
    search = search_step(context, split, progress)
    selection = select_step(context, search, split, champion)
    return outcome(search, selection, register_step(context, selection, split, champion))


def run_training(
    context: TrainingContext, request: DataRequest, progress: bool | None = None
) -> TrainingOutcome:
    """The whole training path in one process (local stack, CLI, tests)."""
    frame = validate_step(load_step(context, request, progress), context.schema)
    return train_on(context, frame, progress)
