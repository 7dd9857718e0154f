"""MLflow killed during a real `persona train` registration, at three exact points.

The CLI talks to the real `mlflow server` through a small HTTP proxy (its MLFLOW_TRACKING_URI)
that SIGKILLs the server's whole process group at one REST call and then stops listening, so
the CLI meets what an operator meets: nothing answers any more. The points:

- (a) the version's creation arrives (``model-versions/create``, killed before it is
  forwarded): registration has started, no version exists;
- (b) the version's creation was answered: the version exists, no alias moved;
- (c) the alias move was answered (``registered-models/alias``): the alias moved, the alias
  history entry is not written.

Each time: one error line naming MLflow, no traceback, the exit code of an unavailable
upstream, no process left of the CLI or the server, the production alias unchanged or (c)
cut before its history; then the server restarts on the same database, artifact folder and
port, and a rerun (after `persona runs reconcile` in (c)) leaves the alias it moved fully moved,
a version no alias reached tagged ``decision=abandoned`` with why, no run RUNNING and no
session idle in transaction.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest
from conftest import ROOT, processes_gone, sessions_in_state, start_mlflow_server, wait_until
from mlflow.tracking import MlflowClient

from persona.adapters import mlflow_registry
from persona.adapters.alias_history import ABANDONED, HISTORY_TAG_PREFIX, LAST_MOVE_TAG, PENDING
from persona.errors import UpstreamUnavailableError
from persona.services import process_tree
from persona.services.processes import ServiceProcess

PERSONA = ROOT / ".venv/dev/bin/persona"
FIXTURES = ROOT / "tests/fixtures"
ALIAS = "production"
BASELINE = "chaos-baseline"
ROWS = "1000"
CLI_TIMEOUT_S = 300
CREATE_VERSION = ("POST", "/api/2.0/mlflow/model-versions/create")
MOVE_ALIAS = ("POST", "/api/2.0/mlflow/registered-models/alias")
# hop-by-hop headers, and those the proxy sets itself
_NOT_FORWARDED = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "te"}


class KillingProxy:
    """An HTTP proxy in front of `mlflow server` that fires ``kill`` at one exact REST call.

    ``moment`` "before": the call is not forwarded (the server dies as it arrives); "after":
    the server answered it and dies before the answer is relayed. Then the proxy stops
    listening: the client's next call is refused, as when nothing listens on the tracking URI.
    ``start`` again (same port) for a plain relay.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream)
        self.port = 0
        self.calls: list[str] = []
        self.trigger: tuple[str, str, str] | None = None
        self.kill: Callable[[], None] | None = None
        self.fired = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def arm(self, call: tuple[str, str], moment: str, kill: Callable[[], None]) -> None:
        self.trigger, self.kill = (*call, moment), kill
        self.fired.clear()

    def start(self) -> KillingProxy:
        server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        server.daemon_threads = True
        self.port, self._server = server.server_address[1], server
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def _fire(self) -> None:
        kill, self.trigger = self.kill, None
        kill()
        self.close()
        self.fired.set()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Relay(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
                    return self.rfile.read(int(self.headers.get("Content-Length") or 0))
                chunks = []
                while size := int(self.rfile.readline().split(b";")[0], 16):
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                self.rfile.readline()
                return b"".join(chunks)

            def relay(self) -> None:
                body = self._body()
                call = (self.command, self.path.split("?", 1)[0])
                proxy.calls.append(" ".join(call))
                hit = proxy.trigger is not None and proxy.trigger[:2] == call
                self.close_connection = True
                if hit and proxy.trigger[2] == "before":
                    proxy._fire()
                    return  # the connection closes unanswered
                upstream = http.client.HTTPConnection(
                    proxy.upstream.hostname, proxy.upstream.port, timeout=120
                )
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _NOT_FORWARDED}
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
                upstream.close()
                if hit:
                    proxy._fire()
                self.send_response(response.status, response.reason)
                for key, value in response.getheaders():
                    if key.lower() not in _NOT_FORWARDED:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = relay

        return Relay


@dataclass
class Registry:
    """The real `mlflow server` of this module: its database, folder and port outlive a kill."""

    home: Path
    backend: str
    server: ServiceProcess
    killed: list[int] = field(default_factory=list)  # pids of the killed server groups

    @property
    def port(self) -> int:
        return urlsplit(self.server.url).port

    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.server.url, registry_uri=self.server.url)

    def kill(self) -> None:
        """SIGKILL of the server's whole process group (uvicorn and its workers)."""
        leader = self.server.process.pid
        if self.server.process.poll() is not None:
            return  # already dead (a test failed between a kill and the restart)
        self.killed += [leader, *(p.pid for p in psutil.Process(leader).children(recursive=True))]
        os.killpg(leader, signal.SIGKILL)
        self.server.process.wait(timeout=30)

    def restart(self) -> None:
        self.server = start_mlflow_server(self.home, self.backend, port=self.port)


def persona(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(PERSONA), *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )


def train_args() -> list[str]:
    return ["train", "--source", "synthetic", "--rows", ROWS, "--months", "2026-01"]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if " ERROR " in line]


def cli_env(home: Path, tracking_uri: str, model: str, params: str, database: str) -> dict:
    return {
        **os.environ,
        "PERSONA_HOME": str(home),
        "PERSONA_CATALOGUE": str(ROOT / "00_create_data/personas.yaml"),
        "PERSONA_SCHEMA": str(ROOT / "00_create_data/schema.yaml"),
        "PERSONA_PARAMS": str(FIXTURES / params),
        "MAGE_DATA_DIR": str(home / "mage_data"),
        "PERSONA_DATABASE_URL": database,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "PERSONA_MODEL_NAME": model,
        "MLFLOW_EXPERIMENT_NAME": model,
    }


@pytest.fixture(scope="module")
def registry(tmp_path_factory, make_database) -> Iterator[Registry]:
    """The server, and a baseline version trained by a deliberately poor search, which every
    test copies as its production v1 (so each killed run is a promotion)."""
    home = tmp_path_factory.mktemp("mlflow")
    backend = make_database("persona_chaos_mlflow")
    found = Registry(home, backend, start_mlflow_server(home, backend))
    try:
        env = cli_env(
            home / "baseline",
            found.server.url,
            BASELINE,
            "params_worse.yaml",
            make_database("persona_chaos_project"),
        )
        done = persona(*train_args(), env=env)
        assert done.returncode == 0, done.stderr[-3000:]
        yield found
    finally:
        found.kill()  # faster than a graceful stop, and its database is dropped anyway


@pytest.fixture
def scene(registry, tmp_path, make_database, request) -> Iterator[dict]:
    """A model of its own whose production v1 is the baseline, a proxy, the CLI environment."""
    model = f"chaos-{request.node.callspec.id}"
    client = registry.client()
    client.copy_model_version(f"models:/{BASELINE}/1", model)
    mlflow_registry.promote(client, model, "1", ALIAS, reason="the baseline")
    proxy = KillingProxy(registry.server.url).start()
    env = cli_env(
        tmp_path / "home", proxy.url, model, "params_fast.yaml", make_database("persona_chaos")
    )
    yield {"model": model, "proxy": proxy, "env": env, "home": tmp_path / "home"}
    proxy.close()


def version_tags(client: MlflowClient, model: str) -> dict[str, dict[str, str]]:
    found = client.search_model_versions(f"name = '{model}'")
    return {str(v.version): dict(v.tags or {}) for v in found}


def history(client: MlflowClient, model: str, alias: str) -> list[dict]:
    raw = client.get_registered_model(model).tags.get(HISTORY_TAG_PREFIX + alias, "[]")
    return json.loads(raw)


def assert_fully_moved(client: MlflowClient, model: str, alias: str, version: str) -> None:
    """The alias, the version's decision tags and the last history entry all name it."""
    assert client.get_model_version_by_alias(model, alias).version == version
    tags = client.get_model_version(model, version).tags
    assert tags["decision"] == alias and tags["decision_reason"]
    move = json.loads(tags[LAST_MOVE_TAG])
    last = history(client, model, alias)[-1]
    assert last["version"] == version and last["at"] == move["at"] and move["alias"] == alias
    if alias != mlflow_registry.CHALLENGER:
        assert tags["promoted_at"] == last["at"]


def running_runs(client: MlflowClient, experiment: str) -> list[str]:
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    runs = client.search_runs([found.experiment_id], "attributes.status = 'RUNNING'")
    return [run.info.run_id for run in runs]


def outcome(stdout: str) -> dict:
    return json.loads(stdout[stdout.index("{") :])


@dataclass(frozen=True)
class Point:
    """Where the server dies, and what the registry holds after the kill and after the rerun
    (the same seed and data: the rerun's model equals the killed run's)."""

    call: tuple[str, str]
    moment: str  # "before": the call never reaches the server; "after": it was answered
    versions_after_kill: list[str]
    production_after_kill: str
    rerun: tuple[str, str]  # the version the rerun registers, and the alias it moves
    production_after_rerun: str


POINTS = {
    "a-registration-starts": Point(CREATE_VERSION, "before", ["1"], "1", ("2", ALIAS), "2"),
    "b-version-created": Point(CREATE_VERSION, "after", ["1", "2"], "1", ("3", ALIAS), "3"),
    # v2 serves once its history is completed; the rerun's equal model is only a challenger
    "c-alias-moved": Point(MOVE_ALIAS, "after", ["1", "2"], "2", ("3", "challenger"), "2"),
}


@pytest.mark.parametrize("point_id", list(POINTS), ids=list(POINTS))
def test_mlflow_killed_during_registration_leaves_a_whole_alias_and_a_clean_rerun(
    registry, scene, point_id
):
    point = POINTS[point_id]
    model, proxy, env = scene["model"], scene["proxy"], scene["env"]
    cli_tree: list[int] = []
    started: list[subprocess.Popen] = []
    clock = time.monotonic()

    def kill() -> None:
        cli_tree.extend(p.pid for p in psutil.Process(started[0].pid).children(recursive=True))
        registry.kill()

    proxy.arm(point.call, point.moment, kill)
    started.append(
        subprocess.Popen(
            [str(PERSONA), *train_args()],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    )
    stdout, stderr = started[0].communicate(timeout=CLI_TIMEOUT_S)
    print(f"\n{point_id}: killed run {time.monotonic() - clock:.0f} s")

    # what the user saw: one line naming MLflow, the exit code of an unavailable upstream
    assert proxy.fired.is_set(), proxy.calls[-5:]
    assert started[0].returncode == UpstreamUnavailableError.exit_code, stderr[-3000:]
    assert "Traceback" not in stderr
    (line,) = error_lines(stderr)
    print(f"{point_id}: exit {started[0].returncode}: {line}")
    assert f"MLflow at {proxy.url} did not answer" in line
    # nothing left running: the CLI's group, the server's group, no group record
    assert cli_tree
    wait_until(
        lambda: processes_gone([started[0].pid, *cli_tree, *registry.killed]),
        30,
        "the CLI's and the server's processes to be gone",
    )
    assert process_tree.read_records(process_tree.records_folder(scene["home"])) == []

    clock = time.monotonic()
    registry.restart()
    print(f"{point_id}: server restarted in {time.monotonic() - clock:.0f} s")
    client = registry.client()
    tags = version_tags(client, model)
    assert sorted(tags) == point.versions_after_kill
    assert client.get_model_version_by_alias(model, ALIAS).version == point.production_after_kill
    assert running_runs(client, model) == []
    if point_id == "b-version-created":
        assert tags["2"]["decision"] == PENDING  # created with its tags, then cut
        assert tags["2"]["training_run_id"]
    proxy.start()  # the same port, a plain relay again
    if point_id == "c-alias-moved":
        # moved and tagged, but the history still ends with v1: `persona runs reconcile`
        # completes it (the alias serves v2; the move was decided and done)
        assert [e["version"] for e in history(client, model, ALIAS)] == ["1"]
        reconciled = persona("runs", "reconcile", env=env)
        assert reconciled.returncode == 0, reconciled.stderr[-3000:]
        (closed,) = outcome(reconciled.stdout)["closed"]
        print(f"{point_id}: persona runs reconcile: {closed}")
        assert closed["kind"] == "model_version" and closed["run_id"] == "2"
        assert closed["state"] == f"holds @{ALIAS}, history entry missing"
        assert_fully_moved(client, model, ALIAS, "2")
    else:  # the production alias never moved: v1 and its history entry only
        assert_fully_moved(client, model, ALIAS, "1")
        assert [e["version"] for e in history(client, model, ALIAS)] == ["1"]

    clock = time.monotonic()
    rerun = persona(*train_args(), env=env)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    done = outcome(rerun.stdout)
    print(
        f"{point_id}: rerun registered v{done['version']} as @{done['alias']} "
        f"in {time.monotonic() - clock:.0f} s"
    )
    assert (done["version"], done["alias"]) == point.rerun
    assert_fully_moved(client, model, done["alias"], done["version"])
    assert_fully_moved(client, model, ALIAS, point.production_after_rerun)
    assert running_runs(client, model) == []
    tags = version_tags(client, model)
    assert not [v for v, t in tags.items() if t.get("decision") == PENDING]
    abandoned = {v: t for v, t in tags.items() if t.get("decision") == ABANDONED}
    if point_id == "b-version-created":
        # closed by the rerun's own reconciliation, as it started
        assert f"{model} v2 abandoned: its registration was cut before any alias moved" in (
            rerun.stderr
        )
        assert list(abandoned) == ["2"] and not client.get_model_version(model, "2").aliases
        assert "owner process" in abandoned["2"]["decision_reason"]
        assert "2" not in [e["version"] for e in history(client, model, ALIAS)]
    else:
        assert abandoned == {}
    for url in (registry.backend, env["PERSONA_DATABASE_URL"]):
        assert sessions_in_state(url) == 0
