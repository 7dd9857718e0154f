"""Killing the Mage worker of `persona pipeline run` leaves no process and no stuck session.

Before, `kill -9` of the worker left its joblib workers and resource trackers reparented to
PID 1 for good, and a `persona_mage` session `idle in transaction`.
"""

from __future__ import annotations

import os
import signal
import subprocess
from functools import partial
from pathlib import Path

import psutil
from conftest import processes_gone, sessions_in_state
from conftest import wait_until as shared_wait_until
from test_mage_train import PERSONA, mage_env  # noqa: F401 - the fixture

from persona.services import process_tree

wait_until = partial(shared_wait_until, timeout_s=300)


def test_sigkill_of_the_worker_during_the_model_search_leaves_nothing(
    mage_env, make_database  # noqa: F811
):
    mage_db = make_database("persona_mage")
    env = {**mage_env, "MAGE_DATABASE_CONNECTION_URL": mage_db}
    command = [str(PERSONA), "pipeline", "run", "train", "--var", "source=synthetic"]
    launcher = subprocess.Popen(
        [*command, "--var", "rows=60000"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        records = process_tree.records_folder(Path(env["PERSONA_HOME"]))
        wait_until(lambda: process_tree.read_records(records) != [])
        worker = psutil.Process(process_tree.read_records(records)[0].pgid)
        wait_until(lambda: len(worker.children(recursive=True)) >= 2)  # the joblib pool is up
        tree = [p.pid for p in worker.children(recursive=True)]

        os.kill(worker.pid, signal.SIGKILL)

        launcher.wait(timeout=120)
        assert launcher.returncode != 0
        wait_until(lambda: processes_gone(tree))
        assert process_tree.read_records(records) == []
        assert sessions_in_state(mage_db) == 0
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
