"""The drift history on SQLite: a rerun supersedes the month, open runs are closed as abandoned
(the cases are in tests/drift_history_cases.py; PostgreSQL runs them too, under integration)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from drift_history_cases import (  # noqa: F401 - collected here, on SQLite
    test_a_rerun_supersedes_the_month_and_readers_see_the_current_run_only,
    test_a_rolling_window_or_another_model_is_not_superseded,
    test_an_open_run_is_listed_until_it_ends_or_is_abandoned_with_when_and_why,
    test_every_update_is_a_heartbeat,
)

from persona.adapters import drift_store

pytestmark = pytest.mark.unit


@pytest.fixture()
def store(tmp_path) -> drift_store.PostgresDriftStore:
    return drift_store.PostgresDriftStore(f"sqlite:///{tmp_path / 'history.db'}")


@pytest.fixture()
def engine(store) -> sa.Engine:
    return store.engine
