"""The drift history's current runs and abandoned runs on PostgreSQL: the cases of
tests/drift_history_cases.py that tests/unit runs on SQLite, against a real database."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa
from drift_history_cases import (  # noqa: F401 - collected here, on PostgreSQL
    _record,
    test_a_rerun_supersedes_the_month_and_readers_see_the_current_run_only,
    test_a_rolling_window_or_another_model_is_not_superseded,
    test_an_open_run_is_listed_until_it_ends_or_is_abandoned_with_when_and_why,
    test_every_update_is_a_heartbeat,
)

from persona.adapters import drift_store


@pytest.fixture()
def store(pg_url) -> drift_store.PostgresDriftStore:
    return drift_store.PostgresDriftStore(pg_url)


@pytest.fixture()
def engine(store) -> sa.Engine:
    return store.engine


def test_runs_of_one_month_stored_at_once_leave_one_current_answer(engine):
    drift_store.ensure_tables(engine)  # the tables exist, as in any stack that ran once
    with ThreadPoolExecutor(max_workers=6) as pool:
        ids = list(pool.map(lambda minute: _record(engine, "2026-05", minute), range(6)))
    runs = drift_store.read_runs(engine)
    current = runs[runs["superseded_by"].isna()]
    assert len(runs) == 6 and len(current) == 1 and current["run_id"].item() in ids
    # the others form one chain: each superseded by a later-stored run, none by two
    assert runs["superseded_by"].dropna().is_unique
