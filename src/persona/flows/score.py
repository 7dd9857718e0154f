"""Batch scoring job: customers of a month (table or file) -> scoring API -> personas stored.

Chunks go to the HTTP service, so the job scores with whatever model holds the production alias
right now, exactly as online clients do. A chunk that still fails after its retries is reported
by customer id and the rest is kept; results are upserted by (id, month), so a re-run is safe.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd
from tqdm.auto import tqdm

from persona.data.schema import DatasetSchema
from persona.errors import InvalidInputError, PersonaError
from persona.ports import Scorer

logger = logging.getLogger(__name__)

RESULT_COLUMNS = ["persona_id", "persona_name", "model_name", "model_version", "scored_at"]


@dataclass
class ScoringOutcome:
    scored: pd.DataFrame
    failed_ids: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        versions = (
            sorted(self.scored["model_version"].astype(str).unique()) if len(self.scored) else []
        )
        return {
            "scored_rows": len(self.scored),
            "failed_rows": len(self.failed_ids),
            "failed_ids": self.failed_ids[:50],
            "failures": self.failures[:10],
            "model_versions": versions,
        }


def score_frame(
    frame: pd.DataFrame,
    schema: DatasetSchema,
    client: Scorer,
    chunk_rows: int = 5_000,
    progress: bool | None = None,
) -> ScoringOutcome:
    """Score ``frame`` chunk by chunk; failures are collected, never raised mid-way."""
    needed = [schema.id_column, *schema.features]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise InvalidInputError(
            f"customers to score lack the columns {missing} (the schema's id and features); "
            f"the file has {list(frame.columns)[:20]}"
        )
    send = frame[needed]
    # A file may carry no month column; its results then carry none either.
    keys = [c for c in (schema.id_column, schema.month_column) if c in frame]
    scored, failed_ids, failures = [], [], []
    disable = None if progress is None else not progress
    with tqdm(total=len(frame), desc="score", unit="rows", disable=disable) as bar:
        for start in range(0, len(frame), chunk_rows):
            chunk = send.iloc[start : start + chunk_rows]
            try:
                answer = client.score(chunk)
            except PersonaError as exc:
                ids = chunk[schema.id_column].astype(str).tolist()
                failed_ids += ids
                failures.append(f"rows {start}-{start + len(chunk) - 1}: {exc}")
                logger.error("chunk of %d customers failed: %s", len(chunk), exc)
            else:
                result = frame.iloc[start : start + chunk_rows][keys]
                result = result.reset_index(drop=True)
                for column in ("persona_id", "persona_name", "model_name", "model_version"):
                    result[column] = answer[column].to_numpy()
                scored.append(result)
            bar.update(len(chunk))
    table = (
        pd.concat(scored, ignore_index=True)
        if scored
        else pd.DataFrame(columns=[*keys, *RESULT_COLUMNS[:-1]])
    )
    table["scored_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    return ScoringOutcome(table, failed_ids, failures)
