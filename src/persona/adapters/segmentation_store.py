"""The segmentations a stack holds, in the project database (one row per segmentation).

Every service that runs a segmentation's work (the CLI, Mage blocks in their container) reaches
the project database, so the definitions live there rather than in one machine's files.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from functools import cached_property

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from persona.adapters.database import make_engine
from persona.adapters.upstream import short_reason
from persona.errors import ConfigurationError, UpstreamUnavailableError
from persona.segmentation import Definition

logger = logging.getLogger(__name__)

TABLE = "segmentations"

_metadata = sa.MetaData()
segmentations = sa.Table(
    TABLE,
    _metadata,
    sa.Column("name", sa.String(40), primary_key=True),
    sa.Column("schema_yaml", sa.Text, nullable=False),
    sa.Column("params_yaml", sa.Text, nullable=False),
    sa.Column("drift_yaml", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)


class SqlSegmentations:
    """Add, read, list and remove segmentation definitions."""

    def __init__(self, url: str) -> None:
        self.url = url

    @cached_property
    def engine(self) -> sa.Engine:
        engine = make_engine(self.url)
        try:
            _metadata.create_all(engine, checkfirst=True)
        except SQLAlchemyError as exc:
            raise _unavailable(exc) from None
        return engine

    def add(self, definition: Definition, replace: bool = False) -> None:
        row = {
            "name": definition.name,
            "schema_yaml": definition.schema_text,
            "params_yaml": definition.params_text,
            "drift_yaml": definition.drift_text,
            "created_at": datetime.now(UTC),
        }
        try:
            with self.engine.begin() as connection:
                if replace:
                    connection.execute(
                        segmentations.delete().where(segmentations.c.name == definition.name)
                    )
                connection.execute(segmentations.insert(), [row])
        except IntegrityError:
            raise ConfigurationError(
                f"segmentation {definition.name!r} exists already; use --replace to change "
                "its files (its data and models stay)"
            ) from None
        except SQLAlchemyError as exc:
            raise _unavailable(exc) from None

    def get(self, name: str) -> Definition | None:
        query = sa.select(segmentations).where(segmentations.c.name == name)
        rows = self._read(query)
        return rows[0] if rows else None

    def all(self) -> list[Definition]:
        return self._read(sa.select(segmentations).order_by(segmentations.c.name))

    def remove(self, name: str) -> bool:
        try:
            with self.engine.begin() as connection:
                deleted = connection.execute(
                    segmentations.delete().where(segmentations.c.name == name)
                ).rowcount
        except SQLAlchemyError as exc:
            raise _unavailable(exc) from None
        return deleted == 1

    def _read(self, query: sa.Select) -> list[Definition]:
        try:
            with self.engine.connect() as connection:
                rows = connection.execute(query).mappings().all()
        except SQLAlchemyError as exc:
            raise _unavailable(exc) from None
        return [
            Definition(
                row["name"],
                row["schema_yaml"],
                row["params_yaml"],
                row["drift_yaml"],
                row["created_at"].isoformat() if row["created_at"] else "",
            )
            for row in rows
        ]


def _unavailable(exc: SQLAlchemyError) -> UpstreamUnavailableError:
    return UpstreamUnavailableError(f"segmentations table: {short_reason(exc)}")
