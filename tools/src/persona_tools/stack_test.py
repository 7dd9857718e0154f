"""``python -m persona_tools.stack_test`` (``make test-stack``): the Compose stack, for real.

The users' ``docker-compose.yml`` is built and started on a Docker engine from Debian's
packages (``05_iac/stack-test/setup_engine.sh``: no registry, no bridge, stand-in base images),
rewritten for host networking by ``05_iac/stack-test/docker-compose.hostnet.yml``. Against the
containers it then does what a user does: train through Mage's API trigger, score a batch
through the ``api`` container, check a drifted month with the ``monitor`` pipeline (retrain and
alert, to a local Bot API stand-in), run a job on the ``spark`` profile's cluster, and
``down -v``. Each phase's wall time is printed; a
failure names its phase and shows the services' last log lines.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import requests
import sqlalchemy as sa
import yaml

from persona.data.schema import load_schema
from persona.errors import PersonaError
from persona.logging_setup import configure_logging
from persona.services.processes import free_port
from persona.serving.client import ScoringClient
from persona_tools import REPO_ROOT
from persona_tools.devtools import host_network_config
from persona_tools.telegram_stub import TelegramStub

logger = logging.getLogger(__name__)

ROOT = REPO_ROOT
ENGINE_SCRIPT = ROOT / "05_iac/stack-test/setup_engine.sh"
SCHEMA = ROOT / "00_create_data/schema.yaml"
HOSTNET_OVERRIDE = ROOT / "05_iac/stack-test/docker-compose.hostnet.yml"
DOCKER_HOST = "unix:///var/run/docker.sock"
PROJECT = "persona-stack-test"
SERVICES = ("postgres", "mlflow", "mage", "api")
# The host-network override moves every service off the ports a local stack uses.
POSTGRES_PORT, MLFLOW_PORT, MAGE_PORT, API_PORT = 55432, 15000, 16789, 18080
TRAIN_MONTHS, DRIFTED_MONTH = ("2026-01", "2026-02"), "2026-03"
# spark: the `spark` profile's own image and cluster with a job on it, independent of the
# others (`--phases engine,spark` runs it alone): 3.5 min with a cold layer cache (the image
# builds pyspark from its sdist), 1.5 min warm.
PHASES = ("engine", "build", "up", "data", "train", "score", "monitor", "spark")
SPARK_SERVICES = ("spark-master", "spark-worker-1", "spark-worker-2")
SPARK_MASTER_UI = "http://127.0.0.1:18090"  # the host-network override's
# A driver in the Spark image (the Python path of every node): where each task ran.
SPARK_JOB = (
    "import json, os; from persona.adapters.spark_session import spark_session\n"
    "conf = {'spark.scheduler.minRegisteredResourcesRatio': '1.0'}\n"
    "with spark_session(os.environ['SPARK_MASTER'], 'stack-test', conf) as s:\n"
    "    ran = s.sparkContext.parallelize(range(16), 16).map(lambda _: os.getcwd()).collect()\n"
    "print(json.dumps(sorted(set(ran))))\n"
)
MAGE_NOISE = ("Active pipeline runs", "Scheduler status", "is alive")


class StackTestError(PersonaError):
    """A phase of the stack test failed; the message says what was expected and what came."""


@dataclass
class PhaseClock:
    """Wall time per phase, in the order they ran."""

    seconds: dict[str, float] = field(default_factory=dict)
    failed: str | None = None

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        logger.info("== %s", name)
        start = time.monotonic()
        try:
            yield
        except BaseException:
            self.failed = name
            raise
        finally:
            self.seconds[name] = time.monotonic() - start
            logger.info("== %s: %.1f s", name, self.seconds[name])

    def table(self) -> str:
        rows = [f"  {name:<10} {secs:7.1f} s" for name, secs in self.seconds.items()]
        rows.append(f"  {'total':<10} {sum(self.seconds.values()):7.1f} s")
        if self.failed:
            rows.append(f"  FAILED in phase '{self.failed}'")
        return "\n".join(rows)


@dataclass(frozen=True)
class StackSecrets:
    postgres_password: str
    owner_password: str
    trigger_token: str
    telegram_token: str
    telegram_port: int = 0

    @classmethod
    def fresh(cls) -> StackSecrets:
        return cls(
            secrets.token_hex(16),
            secrets.token_urlsafe(16),
            secrets.token_hex(16),
            f"{secrets.randbelow(10**9)}:{secrets.token_urlsafe(24)}",
            free_port(),
        )

    @classmethod
    def for_run(cls, path: Path, reuse: bool) -> StackSecrets:
        """Fresh ones for a new stack; a kept stack's own when only later phases rerun."""
        if reuse and path.exists():
            return cls(**json.loads(path.read_text()))
        creds = cls.fresh()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(creds)))
        path.chmod(0o600)
        return creds


def compose_variables(creds: StackSecrets, telegram_base_url: str) -> dict[str, str]:
    """Everything the Compose file interpolates, so the user's own ``.env`` plays no part."""
    return {
        "POSTGRES_PASSWORD": creds.postgres_password,
        "DEFAULT_OWNER_EMAIL": "stack-test@example.com",
        "DEFAULT_OWNER_PASSWORD": creds.owner_password,
        "PERSONA_TRIGGER_TOKEN": creds.trigger_token,
        "PERSONA_ADMIN_TOKEN": "",
        "PERSONA_API_TOKEN": "",
        "TELEGRAM_BOT_TOKEN": creds.telegram_token,
        "TELEGRAM_CHAT_ID": "4242",
        "TELEGRAM_BASE_URL": telegram_base_url,
        "GCS_BUCKET": "",
        "MLFLOW_ARTIFACTS_DESTINATION": "",
        "PERSONA_IMAGE_TAG": "stack-test",
    }


def schedule_ids(mage_log: str) -> dict[str, str]:
    """trigger name -> schedule id, from the lines ``persona.services.mage`` logs at start."""
    found = {}
    for line in mage_log.splitlines():
        if "API trigger " in line and "/pipeline_schedules/" in line:
            name = line.split("API trigger ", 1)[1].split()[0]
            found[name] = line.split("/pipeline_schedules/", 1)[1].split("/", 1)[0]
    return found


class Stack:
    """docker-compose on the rendered host-network file, with the engine's socket."""

    def __init__(self, state_dir: Path, variables: dict[str, str]) -> None:
        self.state_dir = state_dir
        self.env_file = state_dir / "stack.env"
        self.compose_file = state_dir / "compose.hostnet.yml"
        self.env = {**os.environ, "DOCKER_HOST": DOCKER_HOST, **variables}
        state_dir.mkdir(parents=True, exist_ok=True)
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in variables.items()))
        self.env_file.chmod(0o600)

    def _run(self, args: list[str], timeout: float) -> str:
        try:
            done = subprocess.run(
                args,
                cwd=ROOT,
                env=self.env,
                text=True,
                capture_output=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise StackTestError(f"{' '.join(args[:6])} ... took over {timeout:.0f} s") from None
        except FileNotFoundError as exc:
            raise StackTestError(f"{args[0]} not found ({exc})") from None
        if done.returncode != 0:
            tail = (done.stdout + done.stderr)[-3000:]
            raise StackTestError(f"{' '.join(args[:6])} ... exited {done.returncode}:\n{tail}")
        return done.stdout

    def render(self) -> None:
        """The users' file plus the test override, rewritten for host networking."""
        rendered = self._run(
            [
                "docker-compose",
                "--env-file",
                str(self.env_file),
                "-f",
                "docker-compose.yml",
                "-f",
                str(HOSTNET_OVERRIDE),
                "config",
            ],
            60,
        )
        text = yaml.safe_dump(host_network_config(yaml.safe_load(rendered)), sort_keys=False)
        self.compose_file.write_text(text)
        self.compose_file.chmod(0o600)  # it holds the secrets

    def compose(self, *args: str, timeout: float = 600) -> str:
        base = ["docker-compose", "-f", str(self.compose_file), "--project-directory", str(ROOT)]
        return self._run([*base, "-p", PROJECT, *args], timeout)

    def health(self, service: str) -> str:
        container = self.compose("ps", "-q", service, timeout=60).strip()
        if not container:
            return "absent"
        state = self._run(
            [
                "/usr/bin/docker",
                "inspect",
                "-f",
                "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}",
                container,
            ],
            60,
        ).split()
        if state and state[0] != "running":
            return state[0]
        return state[1] if len(state) > 1 else "running"

    def logs(self, service: str, lines: int = 60) -> str:
        try:
            text = self.compose("logs", "--no-color", f"--tail={lines}", service, timeout=60)
        except StackTestError as exc:
            return str(exc)
        return "\n".join(
            line[:400] for line in text.splitlines() if not any(n in line for n in MAGE_NOISE)
        )

    def leftovers(self) -> list[str]:
        """Containers and volumes of this project still present."""
        label = f"label=com.docker.compose.project={PROJECT}"
        found = []
        for kind in ("ps -a", "volume ls"):
            out = self._run(["/usr/bin/docker", *kind.split(), "-q", "--filter", label], 60).split()
            found += [f"{kind.split()[0]} {item}" for item in out]
        return found


def wait_for(what: str, check: Callable[[], Any], timeout_s: float, interval_s: float = 3.0) -> Any:
    """Poll ``check`` until it returns something truthy; its last error names the wait."""
    deadline, last = time.monotonic() + timeout_s, "no answer yet"
    while time.monotonic() < deadline:
        try:
            result = check()
        except (requests.RequestException, sa.exc.SQLAlchemyError) as exc:
            result, last = None, f"{type(exc).__name__}: {str(exc)[:300]}"
        if result:
            return result
        time.sleep(interval_s)
    raise StackTestError(f"{what}: not reached within {timeout_s:.0f} s (last: {last})")


def wait_for_pipeline_run(
    mage_db: sa.Engine, run_id: int, timeout_s: float, stuck_s: float, interval_s: float = 3.0
) -> dict[str, Any]:
    """A Mage pipeline run's final status and block statuses, read from Mage's database.

    Mage's process queue now and then never starts a queued block run (STACK_NOTES): a run
    whose blocks stay queued for ``stuck_s`` comes back as "stuck in queue", one still going
    at ``timeout_s`` as "unfinished after N s".
    """
    deadline, queued_since = time.monotonic() + timeout_s, None
    outcome: dict[str, Any] = {}
    while time.monotonic() < deadline:
        with mage_db.connect() as connection:
            status = connection.execute(
                sa.text("SELECT status FROM pipeline_run WHERE id = :id"), {"id": run_id}
            ).scalar_one()
            blocks = connection.execute(
                sa.text(
                    "SELECT block_uuid, status FROM block_run"
                    " WHERE pipeline_run_id = :id ORDER BY id"
                ),
                {"id": run_id},
            ).all()
        # Mage stores the enum name: COMPLETED, FAILED, ...
        outcome = {
            "status": str(status).lower(),
            "blocks": {block: str(state).lower() for block, state in blocks},
        }
        if outcome["status"] in ("completed", "failed", "cancelled"):
            return outcome
        states = set(outcome["blocks"].values())
        if "queued" in states and "running" not in states:
            queued_since = queued_since or time.monotonic()
            if time.monotonic() - queued_since > stuck_s:
                return {**outcome, "status": "stuck in queue"}
        else:
            queued_since = None
        time.sleep(interval_s)
    return {**outcome, "status": f"unfinished after {timeout_s:.0f} s"}


class StackTest:
    def __init__(self, state_dir: Path, rows: int, clock: PhaseClock, new_stack: bool) -> None:
        self.state_dir = state_dir
        self.rows = rows
        self.clock = clock
        self.creds = StackSecrets.for_run(state_dir / "secrets.json", reuse=not new_stack)
        self.telegram = TelegramStub(self.creds.telegram_port, token=self.creds.telegram_token)
        self.stack = Stack(state_dir, compose_variables(self.creds, self.telegram.base_url))
        password = self.creds.postgres_password
        pg = f"postgresql+psycopg2://persona:{password}@127.0.0.1:{POSTGRES_PORT}"
        self.project_db = sa.create_engine(f"{pg}/persona", pool_pre_ping=True)
        self.mage_db = sa.create_engine(f"{pg}/persona_mage", pool_pre_ping=True)
        self.mage_url = f"http://127.0.0.1:{MAGE_PORT}"
        self.api_url = f"http://127.0.0.1:{API_PORT}"
        self.summary: dict[str, Any] = {}

    # -- phases ------------------------------------------------------------------------------
    def engine(self) -> None:
        # The engine keeps its own state (STATE_DIR, default /tmp/persona-stack-engine), so a
        # second run finds the daemon and the stand-in images it made.
        done = subprocess.run(["bash", str(ENGINE_SCRIPT)], cwd=ROOT, timeout=1200)
        if done.returncode != 0:
            raise StackTestError(f"{ENGINE_SCRIPT.name} exited {done.returncode} (see above)")

    def build(self) -> None:
        self.stack.render()
        self.stack.compose("down", "-v", "--remove-orphans", timeout=180)  # an earlier run's
        self.stack.compose("build", "mlflow", "mage", "api", timeout=1800)

    def up(self) -> None:
        self.stack.compose("up", "-d", *SERVICES, timeout=600)

        def all_healthy() -> bool:
            states = {service: self.stack.health(service) for service in SERVICES}
            bad = {s: st for s, st in states.items() if st in ("exited", "dead", "unhealthy")}
            if bad:
                raise StackTestError(f"services failed: {bad}")
            logger.info("health: %s", states)
            return all(state == "healthy" for state in states.values())

        wait_for("postgres, mlflow, mage and api healthy", all_healthy, 420, 5)
        # What a user opens: the UIs on their published ports, with the browser's Host header.
        for url in (f"http://127.0.0.1:{MLFLOW_PORT}/", self.mage_url):
            answer = requests.get(url, timeout=30)
            if answer.status_code != 200:
                raise StackTestError(f"GET {url}: HTTP {answer.status_code} {answer.text[:200]}")

    def data(self) -> None:
        generate = ["exec", "-T", "mage", "persona", "data", "generate", "--rows", str(self.rows)]
        self.stack.compose(*generate, "--month", *TRAIN_MONTHS, timeout=600)
        self.stack.compose(
            *generate, "--month", DRIFTED_MONTH, "--scenario", "mix_shift", timeout=600
        )
        month = load_schema(SCHEMA).month_column
        with self.project_db.connect() as connection:
            counts = dict(
                connection.execute(
                    sa.text(f"SELECT {month}, count(*) FROM customers GROUP BY {month}")
                ).all()
            )
        expected = {month: self.rows for month in (*TRAIN_MONTHS, DRIFTED_MONTH)}
        if {str(k): v for k, v in counts.items()} != expected:
            raise StackTestError(f"customers per month: expected {expected}, got {counts}")

    def trigger(self, pipeline: str, trigger: str, variables: dict[str, str]) -> dict[str, Any]:
        """Run a pipeline through its Mage API trigger; the run's status and block statuses."""
        schedule_id = schedule_ids(self.stack.logs("mage", lines=100_000)).get(trigger)
        if schedule_id is None:
            raise StackTestError(f"the mage container did not log the API trigger {trigger!r}")
        url = f"{self.mage_url}/api/pipeline_schedules/{schedule_id}/pipeline_runs/"
        body = {"pipeline_run": {"variables": variables}}
        refused = requests.post(url + "not-the-token", json=body, timeout=30)
        if refused.ok and "pipeline_run" in refused.text:  # Mage with login answers 405
            raise StackTestError(f"{trigger} accepted a wrong token: {refused.text[:300]}")
        # Mage's process queue now and then never starts a queued block run (STACK_NOTES): a
        # run stuck in the queue is triggered once more.
        for _attempt in range(2):
            answer = requests.post(url + self.creds.trigger_token, json=body, timeout=30)
            if answer.status_code != 200 or "pipeline_run" not in answer.json():
                raise StackTestError(f"{trigger}: HTTP {answer.status_code} {answer.text[:300]}")
            run_id = answer.json()["pipeline_run"]["id"]
            logger.info("%s: pipeline run %s started", trigger, run_id)
            outcome = wait_for_pipeline_run(self.mage_db, run_id, timeout_s=900, stuck_s=150)
            if outcome["status"] != "stuck in queue":
                break
            logger.warning("%s: run %s stuck in Mage's queue; triggering again", trigger, run_id)
        if outcome["status"] != "completed":
            failed = [block for block, state in outcome["blocks"].items() if state == "failed"]
            tails = "".join(f"\n--- {b} ---\n{self.block_log(pipeline, b)}" for b in failed)
            raise StackTestError(f"{trigger} run {run_id}: {outcome}{tails}")
        return outcome

    def block_log(self, pipeline: str, block: str) -> str:
        """The end of a block's newest log in the mage container (where its traceback is)."""
        data_dir = "${MAGE_DATA_DIR:-$PERSONA_HOME/mage_data}"
        pattern = f"{data_dir}/*/pipelines/{pipeline}/.logs/*/*/{block}.log"
        try:
            return self.stack.compose(
                "exec", "-T", "mage", "sh", "-c", f"tail -c 2500 $(ls -t {pattern} | head -1)"
            )
        except StackTestError as exc:
            return f"(no log: {exc})"

    def train(self) -> None:
        outcome = self.trigger("train", "train_api", {"months": ",".join(TRAIN_MONTHS)})
        self.summary["train_blocks"] = outcome["blocks"]

    def score(self) -> None:
        ready = wait_for(
            "the api container serving a model",
            lambda: (r := requests.get(f"{self.api_url}/ready", timeout=10)).ok and r.json(),
            180,
        )
        schema = load_schema(SCHEMA)
        with self.project_db.connect() as connection:
            batch = pd.read_sql(
                sa.text(f"SELECT * FROM customers WHERE {schema.month_column} = :m LIMIT 500"),
                connection,
                params={"m": TRAIN_MONTHS[0]},
            )
        scored = ScoringClient(self.api_url).score(batch[[schema.id_column, *schema.features]])
        if len(scored) != len(batch) or scored["persona_id"].isna().any():
            raise StackTestError(f"scored {len(scored)} of {len(batch)} rows, or some unscored")
        versions = set(scored["model_version"].astype(str))
        if versions != {str(ready["version"])}:
            raise StackTestError(f"rows scored by {versions}, /ready says {ready['version']}")
        self.summary["scored"] = {
            "rows": len(scored),
            "model_version": ready["version"],
            "personas": scored["persona_name"].value_counts().to_dict(),
        }

    def monitor(self) -> None:
        sent_before = len(self.telegram.messages)
        outcome = self.trigger("monitor", "monitor_api", {"month": DRIFTED_MONTH})
        with self.project_db.connect() as connection:
            run = (
                connection.execute(
                    sa.text(
                        "SELECT data_window, drift_share, action, new_model_version,"
                        " promoted, alert_status FROM drift_runs ORDER BY checked_at DESC LIMIT 1"
                    )
                )
                .mappings()
                .one()
            )
        if run["action"] != "retrained" or not run["new_model_version"]:
            raise StackTestError(f"the drifted month was not retrained on: {dict(run)}")
        if run["alert_status"] != "sent":
            raise StackTestError(f"alert status {run['alert_status']!r}, expected 'sent'")
        alerts = self.telegram.messages[sent_before:]
        if len(alerts) != 1 or DRIFTED_MONTH not in alerts[0].text:
            raise StackTestError(f"the Bot API stand-in got {[m.text[:200] for m in alerts]}")
        self.summary["monitor"] = {**dict(run), "blocks": outcome["blocks"]}
        self.summary["alert"] = alerts[0].text

    def spark(self) -> None:
        """The `spark` profile: image built, master and two workers healthy, a job from a
        driver in a node's container runs on both workers' executors, then the nodes go."""
        steps, start = {}, time.monotonic()
        self.stack.compose("build", "spark-master", timeout=1800)
        steps["build_s"], start = time.monotonic() - start, time.monotonic()
        self.stack.compose("up", "-d", *SPARK_SERVICES, timeout=600)
        try:

            def workers_alive() -> bool:
                states = {service: self.stack.health(service) for service in SPARK_SERVICES}
                if bad := {s: st for s, st in states.items() if st in ("exited", "unhealthy")}:
                    raise StackTestError(f"spark services failed: {bad}")
                return requests.get(f"{SPARK_MASTER_UI}/json/", timeout=5).json()[
                    "aliveworkers"
                ] == len(SPARK_SERVICES) - 1 and set(states.values()) == {"healthy"}

            wait_for("the spark master listing both workers alive", workers_alive, 300, 3)
            steps["up_s"], start = time.monotonic() - start, time.monotonic()
            ran = json.loads(
                self.stack.compose(
                    "exec",  # the master's container: `run` adds links, refused on host networking
                    "-T",
                    "-e",
                    "SPARK_MASTER=spark://127.0.0.1:17077",
                    "-e",
                    "PYSPARK_SUBMIT_ARGS=--conf spark.shuffle.readHostLocalDisk=false pyspark-shell",
                    "spark-master",
                    "python",
                    "-c",
                    SPARK_JOB,
                    timeout=600,
                )
                .strip()
                .splitlines()[-1]
            )
            if len(ran) != 2:
                raise StackTestError(f"the job ran in {ran}, expected one executor per worker")
            steps["job_s"] = time.monotonic() - start
            self.summary["spark"] = {
                "executor_dirs": ran,
                **{k: round(v) for k, v in steps.items()},
            }
        finally:
            self.stack.compose("rm", "-f", "-s", "-v", *SPARK_SERVICES, timeout=300)

    def down(self) -> None:
        self.stack.compose("down", "-v", "--remove-orphans", timeout=300)
        if left := self.stack.leftovers():
            raise StackTestError(f"`down -v` left {left}")

    # -- driver ------------------------------------------------------------------------------
    def run(self, keep_stack: bool, phases: tuple[str, ...] = PHASES) -> None:
        with self.telegram:
            try:
                for name in phases:
                    with self.clock.phase(name):
                        getattr(self, name)()
            except BaseException:
                if self.clock.failed not in (None, "engine", "build"):
                    for service in SERVICES:
                        logger.error(
                            "--- last log lines of %s ---\n%s", service, self.stack.logs(service)
                        )
                if not keep_stack and self.clock.failed != "engine":
                    self.stack.compose("down", "-v", "--remove-orphans", timeout=300)
                raise
            if not keep_stack:
                with self.clock.phase("down"):
                    self.down()


def stop_engine() -> None:
    subprocess.run(["bash", str(ENGINE_SCRIPT), "stop"], cwd=ROOT, timeout=120)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="persona_tools.stack_test", description=__doc__)
    parser.add_argument("--state-dir", type=Path, default=Path("/tmp/persona-stack-test"))
    parser.add_argument("--rows", type=int, default=5000, help="customers per month")
    parser.add_argument(
        "--keep", action="store_true", help="leave the stack and the engine running to debug"
    )
    parser.add_argument(
        "--phases",
        default=",".join(PHASES),
        help="comma-separated subset, to rerun part against a stack kept with --keep",
    )
    args = parser.parse_args(argv)
    phases = tuple(args.phases.split(","))
    if unknown := set(phases) - set(PHASES):
        parser.error(f"unknown phases {sorted(unknown)}; known: {', '.join(PHASES)}")
    configure_logging(os.environ.get("PERSONA_LOG_LEVEL", "INFO"))
    clock = PhaseClock()
    test = StackTest(args.state_dir, args.rows, clock, new_stack="build" in phases)
    try:
        if "build" not in phases:
            test.stack.render()  # the kept stack's file, with this run's secrets
        test.run(keep_stack=args.keep, phases=phases)
    except PersonaError as exc:
        logger.error("stack test failed in phase %r: %s", clock.failed, exc)
    except Exception:
        logger.exception("stack test failed in phase %r", clock.failed)
    finally:
        if not args.keep:
            with clock.phase("engine-stop"):
                stop_engine()
        report = {"phases_s": clock.seconds, "failed": clock.failed, **test.summary}
        (args.state_dir / "result.json").write_text(json.dumps(report, indent=2, default=str))
        sys.stdout.write(f"stack test phases:\n{clock.table()}\n")
    if clock.failed:
        raise SystemExit(1)
    sys.stdout.write(json.dumps(test.summary, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
