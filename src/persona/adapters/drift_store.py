"""Drift history in the project database: one row per monitoring run, one per column checked.

PostgreSQL in Compose and tests, SQLite locally, through SQLAlchemy Core. The tables are
created on first use, so a fresh database needs no migration step.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import cached_property
from pathlib import PurePosixPath
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from persona.adapters.database import make_engine
from persona.adapters.upstream import short_reason
from persona.errors import UpstreamUnavailableError
from persona.monitoring.slow_drift import PastRun
from persona.ports import OpenRun

logger = logging.getLogger(__name__)

RUNS_TABLE = "drift_runs"
COLUMNS_TABLE = "drift_columns"
QUALITY_TABLE = "data_quality"
PERSONAS_TABLE = "persona_mix"

_metadata = sa.MetaData()


def _run_key() -> sa.Column:
    """The run a detail row belongs to (deleting a run deletes its rows)."""
    return sa.Column(
        "run_id",
        sa.String(36),
        sa.ForeignKey(f"{RUNS_TABLE}.run_id", ondelete="CASCADE"),
        primary_key=True,
    )


drift_runs = sa.Table(
    RUNS_TABLE,
    _metadata,
    sa.Column("run_id", sa.String(36), primary_key=True),
    sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("data_window", sa.Text, nullable=False),
    sa.Column("model_name", sa.Text),
    sa.Column("model_version", sa.Text),
    sa.Column("n_reference", sa.Integer, nullable=False),
    sa.Column("n_current", sa.Integer, nullable=False),
    sa.Column("drift_share", sa.Float),
    sa.Column("drift_share_threshold", sa.Float),
    sa.Column("dataset_drift", sa.Boolean),
    sa.Column("enough_data", sa.Boolean, nullable=False),
    sa.Column("report_location", sa.Text),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("new_model_version", sa.Text),
    sa.Column("promoted", sa.Boolean),
    sa.Column("alert_status", sa.Text, nullable=False),
    sa.Column("detail", sa.Text),
    # a retrain's champion/challenger: scores on the current period's and the reference
    # period's held-out customers, the rule applied and the decision's reason
    sa.Column("challenger_score", sa.Float),
    sa.Column("production_score", sa.Float),
    sa.Column("reference_challenger_score", sa.Float),
    sa.Column("reference_production_score", sa.Float),
    sa.Column("promotion_rule", sa.Text),
    sa.Column("promotion_reason", sa.Text),
    sa.Column("slow_drift", sa.Boolean),  # the cumulative (CUSUM) check flagged the month
    sa.Column("retrain_rule", sa.Text),  # what the retrain policy said on a drifted month
    sa.Column("persona_drift", sa.Boolean),  # the persona mix moved or a persona was flagged
    # who writes the row (persona.monitoring.owners.Owner) and when it last said it is alive;
    # a row whose owner is gone before it ended is closed as abandoned, with when and why
    sa.Column("owner", sa.Text),
    sa.Column("heartbeat_at", sa.DateTime(timezone=True)),
    sa.Column("abandoned_at", sa.DateTime(timezone=True)),
    sa.Column("abandoned_reason", sa.Text),
    # the run of the same model and month that replaced this one (null: the current answer)
    sa.Column("superseded_by", sa.String(36)),
)
drift_columns = sa.Table(
    COLUMNS_TABLE,
    _metadata,
    _run_key(),
    sa.Column("column_name", sa.Text, primary_key=True),
    sa.Column("method", sa.Text, nullable=False),
    sa.Column("score", sa.Float),
    sa.Column("threshold", sa.Float),
    sa.Column("drifted", sa.Boolean, nullable=False),
    sa.Column("mean_shift", sa.Float),  # (mean current - mean reference) / sd reference
    sa.Column("cumulative_shift", sa.Float),  # the CUSUM after this month, signed
)
data_quality = sa.Table(
    QUALITY_TABLE,
    _metadata,
    _run_key(),
    sa.Column("column_name", sa.Text, primary_key=True),
    sa.Column("rule", sa.Text, primary_key=True),
    sa.Column("n_rows", sa.Integer, nullable=False),
    sa.Column("share", sa.Float, nullable=False),
    sa.Column("threshold", sa.Float),
    sa.Column("reference_share", sa.Float),
    sa.Column("failed", sa.Boolean, nullable=False),
    sa.Column("examples", sa.Text),
)
# One row per run and persona (persona.monitoring.personas): share and fit, reference against
# current, and the run's verdict on the whole mix repeated on each of its rows.
persona_mix = sa.Table(
    PERSONAS_TABLE,
    _metadata,
    _run_key(),
    sa.Column("persona_id", sa.Integer, primary_key=True),
    sa.Column("persona_name", sa.Text, nullable=False),
    sa.Column("period", sa.Text),
    sa.Column("n_reference", sa.Integer),
    sa.Column("n_current", sa.Integer),
    sa.Column("reference_share", sa.Float),
    sa.Column("current_share", sa.Float),
    sa.Column("share_change", sa.Float),
    sa.Column("mean_distance_reference", sa.Float),
    sa.Column("mean_distance_current", sa.Float),
    sa.Column("p90_distance_reference", sa.Float),
    sa.Column("p90_distance_current", sa.Float),
    sa.Column("low_confidence_reference", sa.Float),
    sa.Column("low_confidence_current", sa.Float),
    sa.Column("flagged", sa.Boolean, nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("mix_method", sa.Text),
    sa.Column("mix_score", sa.Float),
    sa.Column("mix_threshold", sa.Float),
    sa.Column("mix_drifted", sa.Boolean),
)


def _unavailable(exc: SQLAlchemyError) -> UpstreamUnavailableError:
    return UpstreamUnavailableError(f"drift history database: {short_reason(exc)}")


def ensure_tables(engine: sa.Engine) -> None:
    """Create the history tables, and add the columns a newer release defined to an older
    database's tables (all are nullable), so an upgrade needs no migration step."""
    try:
        _metadata.create_all(engine, checkfirst=True)
        inspector = sa.inspect(engine)
        for table in _metadata.sorted_tables:
            present = {column["name"] for column in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name not in present:
                    _add_column(engine, table, column)
    except SQLAlchemyError as exc:
        raise _unavailable(exc) from None


def _add_column(engine: sa.Engine, table: sa.Table, column: sa.Column) -> None:
    if not column.nullable:
        raise UpstreamUnavailableError(
            f"table {table.name} lacks the required column {column.name}; it cannot be added "
            "to existing rows"
        )
    kind = column.type.compile(dialect=engine.dialect)
    preparer = engine.dialect.identifier_preparer
    statement = (
        f"ALTER TABLE {preparer.format_table(table)} "
        f"ADD COLUMN {preparer.format_column(column)} {kind}"
    )
    with engine.begin() as connection:
        connection.execute(sa.text(statement))
    logger.info("added column %s to %s", column.name, table.name)


def _rows(table: sa.Table, run_id: str, items: Sequence[Mapping[str, Any]]) -> list[dict]:
    return [
        {**{c.name: item.get(c.name) for c in table.columns}, "run_id": run_id} for item in items
    ]


def record_run(
    engine: sa.Engine,
    run: Mapping[str, Any],
    columns: Sequence[Mapping[str, Any]],
    quality: Sequence[Mapping[str, Any]] = (),
    *,
    supersede: bool = False,
) -> str:
    """Insert a run, its drift columns and its quality checks in one transaction; returns the
    run id it was given. ``supersede``: the run is the month's answer now, so the earlier
    current run of the same model and data window gets ``superseded_by`` = this run, in the
    same transaction (a reader never sees two current answers, or none)."""
    ensure_tables(engine)
    run_id = str(run.get("run_id") or uuid.uuid4())
    row = {c.name: run.get(c.name) for c in drift_runs.columns}
    row.update(run_id=run_id, checked_at=run.get("checked_at") or datetime.now(UTC))
    row.update(heartbeat_at=row["heartbeat_at"] or row["checked_at"], superseded_by=None)
    column_rows = _rows(drift_columns, run_id, columns)
    quality_rows = _rows(data_quality, run_id, quality)
    superseded = 0
    try:
        with engine.begin() as connection:
            if supersede:
                _lock_month(connection, row["model_name"], row["data_window"])
                superseded = connection.execute(
                    drift_runs.update()
                    .where(
                        _same_model(row["model_name"]),
                        drift_runs.c.data_window == row["data_window"],
                        drift_runs.c.superseded_by.is_(None),
                    )
                    .values(superseded_by=run_id)
                ).rowcount
            connection.execute(drift_runs.insert(), [row])
            if column_rows:
                connection.execute(drift_columns.insert(), column_rows)
            if quality_rows:
                connection.execute(data_quality.insert(), quality_rows)
    except SQLAlchemyError as exc:
        raise _unavailable(exc) from None
    logger.info(
        "stored drift run %s (%d columns, %d quality checks%s)",
        run_id,
        len(column_rows),
        len(quality_rows),
        f"; supersedes {superseded} earlier run(s) of {row['data_window']}" if superseded else "",
    )
    return run_id


def _lock_month(connection: sa.Connection, model_name: str | None, window: str) -> None:
    """Two runs of one month storing at once take turns (PostgreSQL: a transaction lock), so
    the second sees the first's row and supersedes it; SQLite writes one at a time anyway."""
    if connection.dialect.name != "postgresql":
        return
    digest = hashlib.blake2b(f"drift_runs|{model_name}|{window}".encode(), digest_size=8).digest()
    key = int.from_bytes(digest, "big", signed=True)
    connection.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))


def _same_model(model_name: str | None) -> sa.ColumnElement[bool]:
    column = drift_runs.c.model_name
    return column.is_(None) if model_name is None else column == model_name


def _current() -> sa.ColumnElement[bool]:
    """The month's answer: no later run of the same model and window replaced it."""
    return drift_runs.c.superseded_by.is_(None)


def _open() -> sa.ColumnElement[bool]:
    """A run that has not ended: still retraining, or its alert not yet sent or skipped."""
    return sa.and_(
        drift_runs.c.abandoned_at.is_(None),
        sa.or_(drift_runs.c.action == "retraining", drift_runs.c.alert_status == "pending"),
    )


def read_open_runs(engine: sa.Engine) -> list[dict[str, Any]]:
    """The runs that have not ended (their owner may be at work, or gone), oldest first."""
    ensure_tables(engine)
    query = (
        sa.select(
            drift_runs.c.run_id,
            drift_runs.c.owner,
            sa.func.coalesce(
                drift_runs.c.heartbeat_at,
                drift_runs.c.checked_at,
                type_=sa.DateTime(timezone=True),
            ).label("heartbeat_at"),
            drift_runs.c.data_window,
            drift_runs.c.model_name,
            drift_runs.c.action,
            drift_runs.c.alert_status,
        )
        .where(_open())
        .order_by(drift_runs.c.checked_at)
    )
    try:
        with engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]
    except SQLAlchemyError as exc:
        raise _unavailable(exc) from None


def read_kept_report_names(engine: sa.Engine) -> set[str]:
    """The report pages (file stems) of the runs not abandoned, superseded ones included:
    history stays in the report UI, a killed run's report does not."""
    ensure_tables(engine)
    query = sa.select(drift_runs.c.report_location).where(
        drift_runs.c.abandoned_at.is_(None), drift_runs.c.report_location.is_not(None)
    )
    try:
        with engine.connect() as connection:
            return {PurePosixPath(row[0]).stem for row in connection.execute(query)}
    except SQLAlchemyError as exc:
        raise _unavailable(exc) from None


def abandon_run(engine: sa.Engine, run_id: str, at: datetime, reason: str) -> bool:
    """Close a run whose owner is gone: a retrain in progress becomes ``abandoned``, a pending
    alert ``abandoned``; when and why are recorded. False: the run had ended meanwhile."""
    values = {
        "abandoned_at": at,
        "abandoned_reason": reason[:2000],
        "action": sa.case(
            (drift_runs.c.action == "retraining", "abandoned"), else_=drift_runs.c.action
        ),
        "alert_status": sa.case(
            (drift_runs.c.alert_status == "pending", "abandoned"),
            else_=drift_runs.c.alert_status,
        ),
    }
    try:
        with engine.begin() as connection:
            closed = connection.execute(
                drift_runs.update().where(drift_runs.c.run_id == run_id, _open()).values(**values)
            ).rowcount
    except SQLAlchemyError as exc:
        raise _unavailable(exc) from None
    if closed:
        logger.warning("drift run %s abandoned: %s", run_id, reason)
    return bool(closed)


def update_run(engine: sa.Engine, run_id: str, **values: Any) -> None:
    """Fill in what is known only later in the run: action taken, new version, alert status."""
    unknown = set(values) - set(drift_runs.columns.keys())
    if unknown:
        raise ValueError(f"not columns of {RUNS_TABLE}: {sorted(unknown)}")
    values.setdefault("heartbeat_at", datetime.now(UTC))  # every write says the owner lives
    try:
        with engine.begin() as connection:
            updated = connection.execute(
                drift_runs.update().where(drift_runs.c.run_id == run_id).values(**values)
            ).rowcount
    except SQLAlchemyError as exc:
        raise _unavailable(exc) from None
    if updated != 1:
        raise ValueError(f"no drift run {run_id!r} to update")


def read_runs(engine: sa.Engine, limit: int = 100, current_only: bool = False) -> pd.DataFrame:
    """The newest runs first, for people and tests; ``current_only``: each month's answer, not
    the runs a rerun superseded."""
    ensure_tables(engine)
    query = sa.select(drift_runs).order_by(drift_runs.c.checked_at.desc()).limit(limit)
    if current_only:
        query = query.where(_current())
    with engine.connect() as connection:
        return pd.read_sql(query, connection)


def read_columns(engine: sa.Engine, run_id: str) -> pd.DataFrame:
    query = (
        sa.select(drift_columns)
        .where(drift_columns.c.run_id == run_id)
        .order_by(drift_columns.c.column_name)
    )
    with engine.connect() as connection:
        return pd.read_sql(query, connection)


def read_quality(engine: sa.Engine, run_id: str) -> pd.DataFrame:
    """A run's quality checks, failed ones first."""
    query = (
        sa.select(data_quality)
        .where(data_quality.c.run_id == run_id)
        .order_by(data_quality.c.failed.desc(), data_quality.c.column_name, data_quality.c.rule)
    )
    with engine.connect() as connection:
        return pd.read_sql(query, connection)


def read_history(
    engine: sa.Engine, model_name: str, model_version: str, limit: int = 240
) -> list[PastRun]:
    """The runs of one model version (its reference sample), oldest first, with each numeric
    column's mean shift: what the slow-drift check and the retrain policy look back on."""
    ensure_tables(engine)
    runs = (
        sa.select(
            drift_runs.c.run_id,
            drift_runs.c.data_window,
            drift_runs.c.enough_data,
            drift_runs.c.dataset_drift,
            drift_runs.c.slow_drift,
            drift_runs.c.n_current,
            drift_runs.c.n_reference,
        )
        .where(
            drift_runs.c.model_name == model_name,
            drift_runs.c.model_version == model_version,
            drift_runs.c.drift_share.is_not(None),  # judged for drift: not too thin, not broken
            _current(),  # a rerun month counts once, as its rerun found it
        )
        .order_by(drift_runs.c.checked_at.desc(), drift_runs.c.run_id.desc())
        .limit(limit)
    )
    try:
        with engine.connect() as connection:
            rows = connection.execute(runs).all()
            ids = [row.run_id for row in rows]
            shifts: dict[str, dict[str, float]] = {run_id: {} for run_id in ids}
            if ids:
                columns = sa.select(
                    drift_columns.c.run_id, drift_columns.c.column_name, drift_columns.c.mean_shift
                ).where(drift_columns.c.run_id.in_(ids), drift_columns.c.mean_shift.is_not(None))
                for row in connection.execute(columns):
                    shifts[row.run_id][row.column_name] = float(row.mean_shift)
    except SQLAlchemyError as exc:
        raise _unavailable(exc) from None
    return [
        PastRun(
            data_window=row.data_window,
            enough_data=bool(row.enough_data),
            dataset_drift=bool(row.dataset_drift),
            slow_drift=None if row.slow_drift is None else bool(row.slow_drift),
            shifts=shifts[row.run_id],
            n_current=int(row.n_current),
            n_reference=int(row.n_reference),
        )
        for row in reversed(rows)
    ]


def record_personas(engine: sa.Engine, run_id: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """The persona rows of a stored run, in one transaction."""
    ensure_tables(engine)
    values = _rows(persona_mix, run_id, rows)
    if not values:
        return
    try:
        with engine.begin() as connection:
            connection.execute(persona_mix.insert(), values)
    except SQLAlchemyError as exc:
        raise _unavailable(exc) from None
    logger.info("stored %d persona row(s) of drift run %s", len(values), run_id)


def read_persona_history(engine: sa.Engine, model_name: str, limit: int = 500) -> pd.DataFrame:
    """The persona rows of the model's newest ``limit`` runs, each with its run's time and
    window (runs are keyed by model name: each segmentation has its own)."""
    ensure_tables(engine)
    runs = (
        sa.select(drift_runs.c.run_id)
        .where(drift_runs.c.model_name == model_name, _current())
        .where(drift_runs.c.run_id.in_(sa.select(persona_mix.c.run_id)))
        .order_by(drift_runs.c.checked_at.desc())
        .limit(limit)
    )
    query = (
        sa.select(
            persona_mix,
            drift_runs.c.checked_at,
            drift_runs.c.data_window,
            drift_runs.c.model_version,
        )
        .join(drift_runs, drift_runs.c.run_id == persona_mix.c.run_id)
        .where(persona_mix.c.run_id.in_(runs.scalar_subquery()))
        .order_by(drift_runs.c.checked_at, persona_mix.c.persona_id)
    )
    try:
        with engine.connect() as connection:
            return pd.read_sql(query, connection)
    except SQLAlchemyError as exc:
        raise _unavailable(exc) from None


class PostgresDriftStore:
    """The ``DriftStore`` port: one engine, so a run's row is stored, then updated, in place."""

    def __init__(self, url: str) -> None:
        self.url = url

    @cached_property
    def engine(self) -> sa.Engine:
        return make_engine(self.url)  # on first use: building a store connects nothing

    def record_run(
        self,
        run: Mapping[str, Any],
        columns: Sequence[Mapping[str, Any]],
        quality: Sequence[Mapping[str, Any]] = (),
        *,
        supersede: bool = False,
    ) -> str:
        return record_run(self.engine, run, columns, quality, supersede=supersede)

    def update_run(self, run_id: str, **values: Any) -> None:
        update_run(self.engine, run_id, **values)

    def open_runs(self) -> list[OpenRun]:
        return [
            OpenRun(
                kind="drift_run",
                run_id=row["run_id"],
                owner=row["owner"],
                heartbeat=row["heartbeat_at"],
                label=f"{row['model_name']} {row['data_window']}",
                state=f"action={row['action']}, alert_status={row['alert_status']}",
            )
            for row in read_open_runs(self.engine)
        ]

    def kept_report_names(self) -> set[str]:
        return read_kept_report_names(self.engine)

    def abandon_run(self, run_id: str, at: datetime, reason: str) -> bool:
        return abandon_run(self.engine, run_id, at, reason)

    def previous_runs(self, model_name: str, model_version: str) -> list[PastRun]:
        return read_history(self.engine, model_name, model_version)

    def record_personas(self, run_id: str, rows: Sequence[Mapping[str, Any]]) -> None:
        record_personas(self.engine, run_id, rows)

    def persona_history(self, model_name: str, limit: int = 500) -> pd.DataFrame:
        return read_persona_history(self.engine, model_name, limit)
