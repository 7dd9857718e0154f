"""The guided tour of a running stack (`make demo`): data -> train -> serve -> score -> monitor.

It orchestrates what already exists — the synthetic generator, the Mage ``train`` and
``monitor`` pipelines run headless, the scoring API over HTTP, the drift history — and checks
each hand-over (the API serves the version the registry holds, drift was recorded) so a
broken link fails with a message instead of a wrong summary. Re-runnable: its months are
replaced, every run trains and monitors again. The pure parts (request parsing, waiting,
counting, the summary) are separate from the steps that touch the stack.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from persona.data.generator import SCENARIOS, generate_snapshot
from persona.data.months import is_month, next_month
from persona.errors import ConfigurationError, ModelUnavailableError, PersonaError
from persona.flows import train
from persona.flows.score import score_frame
from persona.ports import (
    ArtifactListing,
    PipelineRun,
    Scorer,
    StackModels,
    StackTables,
    VersionListing,
)
from persona.readable import percent
from persona.run_variables import DEMO_DEFAULTS

logger = logging.getLogger(__name__)

STEPS = ("stack", "data", "train", "serve", "score", "monitor")
DRIFT_SCENARIOS = tuple(s for s in SCENARIOS if s != "none")


# ----------------------------------------------------------------------------- pure: request


def parse_months(text: str) -> tuple[str, str, str]:
    """Three YYYY-MM months (space or comma separated), or one: the first of three in a row."""
    months = [m for m in re.split(r"[\s,]+", text.strip()) if m]
    bad = [m for m in months if not is_month(m)]
    if bad or len(months) not in (1, 3):
        raise ConfigurationError(
            f"MONTHS must be three months YYYY-MM (the third gets the drift) or one first month, "
            f"got {text!r}" + (f"; not YYYY-MM: {', '.join(map(repr, bad))}" if bad else "")
        )
    if len(months) == 1:
        months += [next_month(months[0]), next_month(next_month(months[0]))]
    if len(set(months)) != 3:
        raise ConfigurationError(f"MONTHS must be three different months, got {text!r}")
    return months[0], months[1], months[2]


@dataclass(frozen=True)
class DemoRequest:
    """What the tour generates and how long it waits; ``build`` checks every knob."""

    months: tuple[str, str, str]
    rows: int = DEMO_DEFAULTS["rows"]
    sample_rows: int = DEMO_DEFAULTS["sample"]
    seed: int = DEMO_DEFAULTS["seed"]
    scenario: str = DEMO_DEFAULTS["scenario"]
    serve_timeout_s: float = 120.0
    pipeline_timeout_s: float = 1800.0

    @property
    def train_months(self) -> tuple[str, str]:
        return self.months[0], self.months[1]

    @property
    def score_month(self) -> str:
        return self.months[1]

    @property
    def drifted_month(self) -> str:
        return self.months[2]

    @classmethod
    def build(
        cls,
        months: str,
        rows: int,
        sample_rows: int,
        seed: int,
        scenario: str,
        min_rows: int,
        serve_timeout_s: float,
    ) -> DemoRequest:
        """``min_rows``: the drift check's minimum, below which monitor would check nothing."""
        if rows < min_rows:
            raise ConfigurationError(
                f"ROWS must be at least {min_rows} (min_rows of the drift config), got {rows}"
            )
        if not 1 <= sample_rows <= rows:
            raise ConfigurationError(f"the scored sample must be 1..{rows} rows, got {sample_rows}")
        if scenario not in DRIFT_SCENARIOS:
            raise ConfigurationError(
                f"the drifted month needs a drift scenario ({', '.join(DRIFT_SCENARIOS)}), "
                f"got {scenario!r}"
            )
        if serve_timeout_s <= 0:
            raise ConfigurationError(f"the serve timeout must be positive, got {serve_timeout_s}")
        return cls(parse_months(months), rows, sample_rows, seed, scenario, serve_timeout_s)


# ------------------------------------------------------------------------ pure: checks, results


def production_problem(artifacts: ArtifactListing, reference_file: str) -> str | None:
    """Why the stack cannot use this production version (None when it can)."""
    if artifacts.error:
        return f"its artifacts cannot be listed ({artifacts.error})"
    if "MLmodel" not in artifacts.model_files:
        return "its model files are not in this MLflow server's artifact store"
    if reference_file not in artifacts.reference_files:
        return f"its drift reference {reference_file} is not in this MLflow server's artifact store"
    return None


def newest_version(versions: Sequence[VersionListing], before: set[str]) -> VersionListing | None:
    """The highest version registered since ``before`` was taken."""
    fresh = [v for v in versions if v.version not in before]
    return max(fresh, key=lambda v: int(v.version), default=None)


def wait_for_served_version(
    read: Callable[[], tuple[str | None, str]],
    expected: str,
    timeout_s: float,
    consecutive: int = 4,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    interval_s: float = 1.0,
) -> float:
    """Poll until ``consecutive`` answers in a row report ``expected``; seconds waited.

    Several answers in a row, because each API worker follows the registry on its own.
    """
    started = clock()
    streak, last = 0, "no answer yet"
    while True:
        served, detail = read()
        if served == expected:
            streak += 1
            if streak >= consecutive:
                return clock() - started
        else:
            streak = 0
            last = f"serving v{served}" if served else detail
        if clock() - started > timeout_s:
            raise ModelUnavailableError(
                f"the scoring API did not serve v{expected} within {timeout_s:g} s "
                f"(last answer: {last})"
            )
        sleep(interval_s)


def draw_sample(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    sample = frame if len(frame) <= rows else frame.sample(n=rows, random_state=seed)
    return sample.reset_index(drop=True)


def persona_counts(scored: pd.DataFrame) -> dict[str, int]:
    """Customers per persona name, largest first (ties by name)."""
    counts = scored["persona_name"].astype(str).value_counts()
    return {name: int(n) for name, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))}


def pick_drift_run(
    runs: pd.DataFrame, window: str, model_name: str, since: datetime
) -> dict[str, Any] | None:
    """The newest drift run of ``window`` and ``model_name`` checked at or after ``since``."""
    if runs.empty:
        return None
    checked = pd.to_datetime(runs["checked_at"], utc=True)
    mine = runs[
        (runs["data_window"] == window) & (runs["model_name"] == model_name) & (checked >= since)
    ]
    if mine.empty:
        return None
    row = mine.loc[checked[mine.index].idxmax()]
    return {key: None if pd.isna(value) else value for key, value in row.items()}


def alert_text(status: str) -> str:
    return {
        "sent": "sent to Telegram",
        "disabled": "not sent: Telegram is not configured (TELEGRAM_BOT_TOKEN, TELEGRAM_CHAT_ID); "
        "its text is in the log above",
        "failed": "Telegram did not accept it (see the warning in the log above)",
        "skipped": "none (nothing drifted and all-clear alerts are off)",
    }.get(status, status)


# ---------------------------------------------------------------------------- pure: the report


def _url_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host  # a bind address is no URL


@dataclass(frozen=True)
class StackUrls:
    mage: str
    mlflow: str
    api: str
    evidently: str

    def health(self) -> list[tuple[str, str]]:
        """(service, URL that answers 200 when it is up) — the ones `make local-up` waits for."""
        return [
            ("MLflow", f"{self.mlflow}/health"),
            ("Mage", self.mage),
            ("the scoring API", f"{self.api}/health"),
            ("the Evidently UI", self.evidently),
        ]

    def model(self, name: str, version: str | None) -> str:
        base = f"{self.mlflow}/#/models/{name}"
        return f"{base}/versions/{version}" if version else base


def stack_urls(
    mage_host: str,
    mage_port: int,
    tracking_uri: str,
    scoring_url: str,
    evidently_host: str,
    evidently_port: int,
) -> StackUrls:
    return StackUrls(
        mage=f"http://{_url_host(mage_host)}:{mage_port}",
        mlflow=tracking_uri.rstrip("/"),
        api=scoring_url.rstrip("/"),
        evidently=f"http://{_url_host(evidently_host)}:{evidently_port}",
    )


@dataclass(frozen=True)
class DemoStack:
    """The running stack as the demo reaches it; an entry point builds it from settings."""

    urls: StackUrls
    models: StackModels
    tables: StackTables
    scorer: Scorer
    run_pipeline: Callable[[str, dict[str, str], float], PipelineRun]
    require_answer: Callable[[str, str], None]  # (service, health URL): raise with the fix
    read_ready: Callable[[], tuple[str | None, str]]  # (served version, detail) from /ready
    scoring_workers: int
    model_poll_seconds: float
    scoring_log: str  # where a person reads why the API did not pick a version up


@dataclass(frozen=True)
class DataResult:
    months: tuple[str, str, str]
    rows: int
    scenario: str
    table: str


@dataclass(frozen=True)
class TrainResult:
    months: tuple[str, ...]
    version: str
    alias: str
    reason: str
    production_version: str
    retired: str | None = None  # "v3: why" when a broken served version was taken off first


@dataclass(frozen=True)
class ScoreResult:
    month: str
    rows: int
    counts: dict[str, int]
    model_versions: tuple[str, ...]
    served_after_s: float


@dataclass(frozen=True)
class MonitorResult:
    month: str
    reference_version: str
    drift_share: float | None
    threshold: float | None
    dataset_drift: bool
    action: str
    new_version: str | None
    promoted: bool | None
    reason: str | None
    alert_status: str
    report: str | None


@dataclass(frozen=True)
class DemoReport:
    model_name: str
    alias: str  # the registry alias the API serves (settings.model_alias)
    urls: StackUrls
    data: DataResult
    trained: TrainResult
    scored: ScoreResult
    monitored: MonitorResult
    step_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def production_version(self) -> str:
        """Who holds the served alias at the end: the retrained version if it was promoted."""
        if self.monitored.promoted and self.monitored.new_version:
            return self.monitored.new_version
        return self.trained.production_version


def _duration(seconds: float) -> str:
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{rest:04.1f}s" if minutes else f"{rest:.1f}s"


def format_summary(report: DemoReport) -> str:
    """The block printed at the end: what happened, with numbers, and where to look."""
    data, trained, scored, mon = report.data, report.trained, report.scored, report.monitored
    name = report.model_name
    total = sum(report.step_seconds.values())
    width = max((len(p) for p in scored.counts), default=0)
    lines = [
        "=" * 78,
        f"persona demo: done in {_duration(total)}",
        "  steps: " + ", ".join(f"{s} {_duration(t)}" for s, t in report.step_seconds.items()),
        "",
        "What happened",
        f"  data     {data.rows} customers per month into table {data.table}: "
        f"{data.months[0]}, {data.months[1]} (no drift), {data.months[2]} ({data.scenario})",
    ]
    if trained.retired:
        lines.append(f"  registry @{report.alias} taken off {trained.retired}")
    lines += [
        f"  train    Mage `train` on {', '.join(trained.months)}: {name} v{trained.version} "
        f"-> @{trained.alias} ({trained.reason})",
        f"  serve    the scoring API serves v{trained.production_version} "
        f"(confirmed after {_duration(scored.served_after_s)})",
        f"  score    {scored.rows} customers of {scored.month} over HTTP, model "
        f"v{', v'.join(scored.model_versions)}:",
        *(f"             {p:<{width}}  {n:>6}" for p, n in scored.counts.items()),
        f"  monitor  Mage `monitor` on {mon.month} against v{mon.reference_version}: drift share "
        f"{percent(mon.drift_share)} (threshold {percent(mon.threshold)}) -> "
        + ("drift" if mon.dataset_drift else "no drift"),
    ]
    if mon.new_version:
        promoted = f"promoted to @{report.alias}" if mon.promoted else "not promoted"
        lines.append(
            f"           retrained: v{mon.new_version} {promoted}"
            + (f" ({mon.reason})" if mon.reason else "")
        )
    else:
        lines.append(f"           action: {mon.action}")
    lines += [
        f"           alert: {alert_text(mon.alert_status)}",
        "",
        "Open",
        f"  Mage          {report.urls.mage}  (pipelines train and monitor, their runs)",
        f"  MLflow        {report.urls.model(name, report.production_version)}",
        f"  Scoring API   {report.urls.api}  (GET /model, POST /predict)",
        f"  Evidently UI  {report.urls.evidently}  (the drift report of {mon.month})",
        "",
        "Stop the stack: make local-down",
        "=" * 78,
    ]
    return "\n".join(lines)


class StepClock:
    """Announces each step with the time since the start, and records how long it took."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.started = clock()
        self.seconds: dict[str, float] = {}

    @contextmanager
    def step(self, name: str, what: str) -> Iterator[None]:
        number = STEPS.index(name) + 1 if name in STEPS else len(self.seconds) + 1
        began = self.clock()
        logger.info(
            "[%s] step %d/%d %s: %s",
            _duration(began - self.started),
            number,
            len(STEPS),
            name,
            what,
        )
        try:
            yield
        except BaseException:
            logger.error("step %s failed after %s", name, _duration(self.clock() - began))
            raise
        self.seconds[name] = self.clock() - began
        logger.info(
            "[%s] step %d/%d %s done in %s",
            _duration(self.clock() - self.started),
            number,
            len(STEPS),
            name,
            _duration(self.seconds[name]),
        )


# ------------------------------------------------------------------------ steps on the stack


def _check_stack(stack: DemoStack) -> None:
    for service, url in stack.urls.health():
        stack.require_answer(service, url)


def _retire_broken_production(stack: DemoStack, alias: str) -> str | None:
    """A served version this server cannot load would break train, serve and monitor."""
    listed = stack.models.production_artifacts(alias, train.REFERENCE_FOLDER)
    if listed is None:
        return None
    problem = production_problem(listed, train.REFERENCE_ARTIFACT)
    if problem is None:
        return None
    reason = f"{problem}; probably logged by another checkout sharing this registry database"
    stack.models.retire(alias, listed.version, reason)
    return f"v{listed.version}: {reason}"


def _generate(stack: DemoStack, context: train.TrainingContext, request: DemoRequest) -> DataResult:
    if not context.catalogue_matches_schema:
        raise ConfigurationError(
            "the demo generates synthetic customers: PERSONA_SCHEMA must describe the "
            "catalogue's columns (unset it to use 00_create_data/schema.yaml)"
        )
    frames = [
        generate_snapshot(context.catalogue, request.rows, month, request.seed, scenario)
        for month, scenario in zip(request.months, ("none", "none", request.scenario), strict=True)
    ]
    stack.tables.replace_months(
        pd.concat(frames, ignore_index=True), context.schema, request.months
    )
    return DataResult(request.months, request.rows, request.scenario, stack.tables.table)


def _run(stack: DemoStack, pipeline: str, variables: dict[str, str], timeout_s: float) -> None:
    outcome = stack.run_pipeline(pipeline, variables, timeout_s)
    if not outcome.ok:
        raise PersonaError(f"Mage pipeline {pipeline}: {outcome.failure_text()}")


def _train(stack: DemoStack, request: DemoRequest, retired: str | None, alias: str) -> TrainResult:
    name = stack.models.model_name
    before = {v.version for v in stack.models.versions()}
    variables = {"months": ",".join(request.train_months), "seed": str(request.seed)}
    _run(stack, "train", variables, request.pipeline_timeout_s)
    fresh = newest_version(stack.models.versions(), before)
    if fresh is None:
        raise PersonaError(f"the train pipeline completed but registered no new version of {name}")
    production = stack.models.version_holding(alias)
    if production is None:
        raise ModelUnavailableError(f"after training, no version of {name} holds @{alias}")
    return TrainResult(
        months=request.train_months,
        version=fresh.version,
        alias=fresh.tags.get("decision", ", ".join(fresh.aliases) or "none"),
        reason=fresh.tags.get("decision_reason", ""),
        production_version=str(production.version),
        retired=retired,
    )


def _serve(stack: DemoStack, alias: str, version: str, request: DemoRequest, clock, sleep) -> float:
    try:
        return wait_for_served_version(
            stack.read_ready,
            version,
            request.serve_timeout_s,
            consecutive=2 * max(stack.scoring_workers, 1),
            clock=clock,
            sleep=sleep,
        )
    except ModelUnavailableError as exc:
        raise ModelUnavailableError(
            f"{exc}; the API follows @{alias} every PERSONA_MODEL_POLL_SECONDS "
            f"({stack.model_poll_seconds:g} s): see {stack.scoring_log}"
        ) from None


def _score(
    stack: DemoStack,
    context: train.TrainingContext,
    request: DemoRequest,
    version: str,
    waited_s: float,
) -> ScoreResult:
    schema = context.schema
    frame = stack.tables.read_months(schema, [request.score_month])
    sample = draw_sample(frame, request.sample_rows, request.seed)
    outcome = score_frame(sample, schema, stack.scorer, progress=False)
    if outcome.failed_ids:
        raise PersonaError(
            f"{len(outcome.failed_ids)} of {len(sample)} customers were not scored: "
            + "; ".join(outcome.failures[:3])
        )
    versions = tuple(outcome.summary()["model_versions"])
    if versions != (version,):
        logger.warning("expected every row scored by v%s, got %s", version, ", ".join(versions))
    counts = persona_counts(outcome.scored)
    logger.info(
        "scored %d customers: %s", len(sample), ", ".join(f"{k} {v}" for k, v in counts.items())
    )
    return ScoreResult(request.score_month, len(outcome.scored), counts, versions, waited_s)


def _monitor(stack: DemoStack, request: DemoRequest) -> MonitorResult:
    since = datetime.now(UTC) - timedelta(seconds=1)
    _run(stack, "monitor", {"month": request.drifted_month}, request.pipeline_timeout_s)
    run = pick_drift_run(
        stack.tables.read_drift_runs(50), request.drifted_month, stack.models.model_name, since
    )
    if run is None:
        raise PersonaError(
            f"the monitor pipeline completed but stored no drift run for {request.drifted_month}"
        )
    new_version = run.get("new_model_version")
    reason = None
    if new_version:
        reason = stack.models.version_tags(str(new_version)).get("decision_reason")
    return MonitorResult(
        month=request.drifted_month,
        reference_version=str(run["model_version"]),
        drift_share=run.get("drift_share"),
        threshold=run.get("drift_share_threshold"),
        dataset_drift=bool(run.get("dataset_drift")),
        action=str(run["action"]),
        new_version=str(new_version) if new_version else None,
        promoted=None if run.get("promoted") is None else bool(run["promoted"]),
        reason=reason,
        alert_status=str(run["alert_status"]),
        report=run.get("report_location"),
    )


def run_demo(
    stack: DemoStack,
    context: train.TrainingContext,
    request: DemoRequest,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> DemoReport:
    """Every step against the running stack; returns what happened, with each step's time."""
    steps = StepClock(clock)
    alias = context.alias
    with steps.step("stack", "MLflow, Mage, the scoring API and the Evidently UI answer"):
        _check_stack(stack)
        retired = _retire_broken_production(stack, alias)
    with steps.step(
        "data",
        f"{request.rows} synthetic customers for each of {', '.join(request.months)} "
        f"({request.drifted_month}: {request.scenario})",
    ):
        data = _generate(stack, context, request)
    with steps.step("train", f"Mage pipeline `train` on {', '.join(request.train_months)}"):
        trained = _train(stack, request, retired, alias)
    with steps.step("serve", f"the scoring API picks up @{alias} v{trained.production_version}"):
        waited = _serve(stack, alias, trained.production_version, request, clock, sleep)
    with steps.step("score", f"{request.sample_rows} customers of {request.score_month} over HTTP"):
        scored = _score(stack, context, request, trained.production_version, waited)
    with steps.step("monitor", f"Mage pipeline `monitor` on {request.drifted_month}"):
        monitored = _monitor(stack, request)
    return DemoReport(
        stack.models.model_name,
        alias,
        stack.urls,
        data,
        trained,
        scored,
        monitored,
        dict(steps.seconds),
    )
