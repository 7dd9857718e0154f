"""The record of ingest and score jobs (issue 15): composition for the commands that write the
project tables, apart from ``persona.composition`` so that the Spark environment, which has no
Mage, Evidently, Telegram or matplotlib, can import it (``persona score --engine spark``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from persona.adapters import processes
from persona.adapters.job_runs import JobRun, JobRuns
from persona.flows.reconcile import Judge, reconcile
from persona.monitoring.owners import DEFAULT_STALE_AFTER
from persona.settings import Settings


def job_runs(settings: Settings) -> JobRuns:
    """The ingest and score jobs' records, in the project database."""
    return JobRuns(settings.project_database_url)


@contextlib.contextmanager
def tracked_job(settings: Settings, kind: str, label: str) -> Iterator[JobRun]:
    """Run an ingest or score job on the record: first the jobs of the same database whose
    owner is gone are closed (nothing else is asked: a job needs no MLflow), then this one is
    recorded while it runs."""
    records = job_runs(settings)
    judge_by = Judge(processes.this_owner(), processes.is_alive, DEFAULT_STALE_AFTER)
    reconcile(judge_by, None, [records])
    with records.track(kind, label, str(judge_by.here)) as run:
        yield run
