# The one command surface of the persona stack. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Configuration precedence, as in Docker Compose: the command line (`make train PERSONA_SCHEMA=x`)
# > the shell environment > .env > the defaults in this file. The dotenv file (.env, or the one
# PERSONA_ENV_FILE names in the environment or on the command line) only fills variables that are
# not set yet: its last `KEY=VALUE` per key acts as `KEY ?= VALUE`, and each key is exported to
# the recipes. It is parsed as Compose and python-dotenv parse it (comments, blank lines,
# `export`, quotes, no ${VAR} interpolation); an empty value means "the default", so it is
# skipped. persona.settings reads the same file the same way for commands run outside make.
PERSONA_ENV_FILE ?= .env
# $(shell) joins lines with spaces, so every awk statement below ends with `;`.
define _DOTENV_TO_MAKE
{ sub(/\r$$/, ""); }
/^[ \t]*(#.*)?$$/ { next; }
{
  line = $$0; sub(/^[ \t]+/, "", line); sub(/^export[ \t]+/, "", line);
  eq = index(line, "="); if (eq == 0) next;
  key = substr(line, 1, eq - 1); sub(/[ \t]+$$/, "", key);
  if (key !~ /^[A-Za-z_][A-Za-z0-9_]*$$/ || key == "PERSONA_ENV_FILE") next;
  rest = substr(line, eq + 1); sub(/^[ \t]+/, "", rest);
  q = substr(rest, 1, 1); val = "";
  if (q == "\"" || q == "\047") {
    closed = 0;
    for (i = 2; i <= length(rest); i++) {
      c = substr(rest, i, 1); n = substr(rest, i + 1, 1);
      if (c == "\\" && (n == q || n == "\\" || (q == "\"" && n == "\047"))) { val = val n; i++; continue; }
      if (c == q) { closed = 1; break; }
      val = val c;
    }
    if (!closed) next;
  } else {
    val = rest; sub(/[ \t]+#.*$$/, "", val); sub(/[ \t]+$$/, "", val);
  }
  if (!(key in value)) keys[++count] = key;
  value[key] = val;
}
END {
  for (k = 1; k <= count; k++) {
    key = keys[k]; val = value[key]; out = "";
    if (val == "") continue;
    for (i = 1; i <= length(val); i++) {
      c = substr(val, i, 1);
      out = out (c == "$$" ? "$$$$" : c == "#" ? "\\#" : c);
    }
    printf "%s ?= $$()%s$$()%sexport %s%s", key, out, eol, key, eol;
  }
}
endef
define _newline


endef
ifneq (,$(wildcard $(PERSONA_ENV_FILE)))
$(eval $(subst @@EOL@@,$(_newline),$(shell awk -v eol=@@EOL@@ '$(_DOTENV_TO_MAKE)' '$(PERSONA_ENV_FILE)')))
endif

PYTHON ?= python3
VENV := .venv
UV := $(VENV)/tools/bin/uv
DEV := $(VENV)/dev/bin
MLFLOW_ENV := $(VENV)/mlflow/bin
SCORING_ENV := $(VENV)/scoring/bin

export PERSONA_HOME ?= $(CURDIR)/.persona
export MAGE_DATA_DIR ?= $(PERSONA_HOME)/mage_data
# No usage telemetry (as in the images): MLflow's client, when it cannot phone home, races on an
# environment variable and fails a random tracking call.
export MLFLOW_DISABLE_TELEMETRY ?= true
export DO_NOT_TRACK ?= 1

# The make targets that run the stack keep their state in the local PostgreSQL (`make postgres`
# starts it); the bare `persona` CLI, with nothing set, uses SQLite files under PERSONA_HOME.
# With no PostgreSQL on the machine (none answering, none to start), or with LOCAL_DB=sqlite,
# the stack targets use those SQLite files too; `make test` always needs PostgreSQL.
LOCAL_PG ?= postgresql+psycopg2://postgres@127.0.0.1:5432
LOCAL_DB ?= $(shell (pg_isready -q -h 127.0.0.1 -p 5432 || command -v pg_ctlcluster) >/dev/null 2>&1 && echo postgres || echo sqlite)
STACK_TARGETS := local-up local-down local-status mlflow mage serve data ingest train train-local score \
        segmentations segmentation-add segmentation-remove personas persona-rename \
        rollback promote monitor monitor-local monitor-ui report demo stack-db
ifeq ($(LOCAL_DB),postgres)
$(STACK_TARGETS): export MLFLOW_BACKEND_STORE_URI := $(or $(MLFLOW_BACKEND_STORE_URI),$(LOCAL_PG)/persona_mlflow)
$(STACK_TARGETS): export MAGE_DATABASE_CONNECTION_URL := $(or $(MAGE_DATABASE_CONNECTION_URL),$(LOCAL_PG)/persona_mage)
$(STACK_TARGETS): export PERSONA_DATABASE_URL := $(or $(PERSONA_DATABASE_URL),$(LOCAL_PG)/persona)
endif

# The month the stack targets act on unless told (persona.run_variables.DEFAULT_MONTH, tested).
# ROWS, SEED and SCENARIO have no default here: a target passes them only when set, so the
# persona command's defaults apply (persona.run_variables, one definition for CLI and Mage).
MONTH ?= 2026-01
MONTHS ?= 2026-01
_RUN_OPTIONS = $(if $(ROWS),--rows $(ROWS)) $(if $(SEED),--seed $(SEED))
# SEGMENTATION=NAME: the data, model and pipeline targets work on that segmentation (`persona
# segmentation list`); its months are its own, so MONTH/MONTHS apply to it only when given.
ifdef SEGMENTATION
export PERSONA_SEGMENTATION := $(SEGMENTATION)
endif
_GIVEN = $(filter command line environment,$(origin $(1)))
_MONTHS_OPTION = $(if $(or $(call _GIVEN,MONTHS),$(if $(SEGMENTATION),,default)),$(1)$(subst $(space),$(comma),$(strip $(MONTHS))))
_MONTH_OPTION = $(if $(or $(call _GIVEN,MONTH),$(if $(SEGMENTATION),,default)),$(1)$(MONTH))
# The tour's months: its own unless MONTHS is given on the command line.
_DEMO_MONTHS = $(if $(findstring command line,$(origin MONTHS)),$(MONTHS))
PYTEST_ARGS ?=

.PHONY: help install install-spark postgres stack-db up down logs local-up local-down local-status spark-up spark-down spark-status test test-fast test-chaos test-spark lint format mlflow \
        serve mage data ingest train train-local score segmentations segmentation-add \
        segmentation-remove personas persona-rename rollback promote monitor monitor-local monitor-ui report \
        bench-train bench-serve bench-stream bench-monitor bench-monitor-engines bench-drift bench-personas bench-search bench-ingest bench-scale locks clean demo test-stack screenshots \
        _terraform tf-init tf-plan tf-apply tf-destroy tf-env lint-iac

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[1m%-14s\033[0m %s\n", $$1, $$2}'

$(UV):
	$(PYTHON) -m venv $(VENV)/tools
	$(VENV)/tools/bin/pip install --quiet uv==0.13.8

# One virtual environment per service, each installed from its lock file (also used by Dockerfiles).
# --compile-bytecode: uv writes no .pyc by default, and where PYTHONDONTWRITEBYTECODE is set (our
# images, some CI machines) Python would then compile mlflow, pandas, ... from source in every
# process: 15 -> 8 s to collect the fast tests, seconds off each Gunicorn worker's start.
# The dev environment alone also gets persona-tools (tools/: benchmarks, stack test, stand-ins,
# screenshots); the service environments and the images get the shipped package only.
$(VENV)/dev/.installed: requirements/dev.lock pyproject.toml tools/pyproject.toml | $(UV)
	$(UV) venv --quiet --allow-existing --python $(PYTHON) $(VENV)/dev
	VIRTUAL_ENV=$(VENV)/dev $(UV) pip sync --quiet --compile-bytecode requirements/dev.lock
	VIRTUAL_ENV=$(VENV)/dev $(UV) pip install --quiet --no-deps -e . -e tools
	touch $@

$(VENV)/mlflow/.installed: requirements/mlflow-server.lock pyproject.toml | $(UV)
	$(UV) venv --quiet --allow-existing --python $(PYTHON) $(VENV)/mlflow
	VIRTUAL_ENV=$(VENV)/mlflow $(UV) pip sync --quiet --compile-bytecode requirements/mlflow-server.lock
	VIRTUAL_ENV=$(VENV)/mlflow $(UV) pip install --quiet --no-deps -e .
	touch $@

# The scoring environment also gets pytest (scoring-test.lock): the tests that need Flask run there.
$(VENV)/scoring/.installed: requirements/scoring.lock requirements/scoring-test.lock pyproject.toml | $(UV)
	$(UV) venv --quiet --allow-existing --python $(PYTHON) $(VENV)/scoring
	VIRTUAL_ENV=$(VENV)/scoring $(UV) pip sync --quiet --compile-bytecode requirements/scoring.lock requirements/scoring-test.lock
	VIRTUAL_ENV=$(VENV)/scoring $(UV) pip install --quiet --no-deps -e .
	touch $@

install: $(VENV)/dev/.installed $(VENV)/mlflow/.installed $(VENV)/scoring/.installed ## Create/refresh the three environments (no-op when current)

# The Spark engine's own environment (pyspark + Java 17), made only by the targets that use Spark:
# the three above stay as small as without it. pyspark's sdist builds once (~2.5 min), then uv's cache.
# It also gets pytest (spark-test.lock): the Spark tests run there (make test-spark).
$(VENV)/spark/.installed: requirements/spark.lock requirements/spark-test.lock pyproject.toml | $(UV)
	bash scripts/ensure_java.sh
	$(UV) venv --quiet --allow-existing --python $(PYTHON) $(VENV)/spark
	VIRTUAL_ENV=$(VENV)/spark $(UV) pip sync --quiet --compile-bytecode requirements/spark.lock requirements/spark-test.lock
	VIRTUAL_ENV=$(VENV)/spark $(UV) pip install --quiet --no-deps -e .
	touch $@

install-spark: $(VENV)/spark/.installed ## Create/refresh the Spark environment (.venv/spark; Java 17 from Debian when missing)

postgres: ## Start the local PostgreSQL 15 if it is down
	@bash scripts/ensure_postgres.sh

stack-db: ## The stack's databases: PostgreSQL (started if down), or SQLite files when there is none
ifeq ($(LOCAL_DB),postgres)
	@bash scripts/ensure_postgres.sh
else
	@echo "no PostgreSQL on 127.0.0.1:5432: the stack keeps its state in SQLite files under $(PERSONA_HOME)"
endif

COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)

up: $(VENV)/dev/.installed ## Start the Docker Compose stack (writes .env with fresh secrets on first run)
	@test -f .env || $(DEV)/persona env-init --path .env
	$(COMPOSE) up -d --build
	@echo "MLflow http://127.0.0.1:5000  Mage http://127.0.0.1:6789  API http://127.0.0.1:8080  (make logs; profile monitoring adds the Evidently UI on :8001)"

down: ## Stop the Compose stack (volumes are kept; `make down ARGS=-v` removes them too)
	$(COMPOSE) down $(ARGS)

logs: ## Follow the Compose services' logs (SERVICE=api for one)
	$(COMPOSE) logs -f --tail=200 $(SERVICE)

local-up: install stack-db ## Start MLflow (:5000), Mage (:6789), scoring API (:8080), Evidently UI (:8001) in the background
	$(DEV)/python -m persona.services.local_stack up
	-@$(DEV)/persona runs reconcile  # runs a killed process left open, now that MLflow answers
	@echo "MLflow http://127.0.0.1:5000  Mage http://127.0.0.1:6789  API http://127.0.0.1:8080  Evidently UI http://127.0.0.1:8001  (logs: $(PERSONA_HOME)/logs)"

# The tour has defaults of its own (`persona demo --help`): MONTHS, ROWS, SEED pass only when
# given on the command line (`make demo MONTHS=2025-10 ROWS=5000`).
demo: install stack-db ## Fresh clone to a tour: local-up, 3 months (3rd drifted), train, score over HTTP, monitor, URLs
	@$(MAKE) --no-print-directory local-up
	$(DEV)/persona demo $(if $(_DEMO_MONTHS),--months "$(_DEMO_MONTHS)") $(_RUN_OPTIONS)

local-down: ## Stop what local-up started
	$(DEV)/python -m persona.services.local_stack down

local-status: ## Is each local service up and answering? (CLEAN=1 stops leftovers of dead services and killed runs)
	$(DEV)/python -m persona.services.local_stack status $(if $(CLEAN),--clean)

# A standalone Spark cluster as local processes (no Docker): a master and PERSONA_SPARK_WORKERS
# workers (PERSONA_SPARK_WORKER_CORES / _MEMORY each), supervised like local-up's services, logs
# in $(PERSONA_HOME)/logs. Ready when the master lists every worker alive; prints the
# SPARK_MASTER to use.
spark-up: $(VENV)/spark/.installed ## Start a Spark master (:7077, UI :8090) and 2 workers as local processes; prints SPARK_MASTER
	$(VENV)/spark/bin/python -m persona.services.local_stack --stack spark up

spark-down: $(VENV)/spark/.installed ## Stop what spark-up started (master, workers, their executors)
	$(VENV)/spark/bin/python -m persona.services.local_stack --stack spark down

spark-status: $(VENV)/spark/.installed ## Are the Spark master and each worker up, and how many workers does the master list alive?
	$(VENV)/spark/bin/python -m persona.services.local_stack --stack spark status $(if $(CLEAN),--clean)

# SPARK_MASTER precedence for the stack targets: the command line > the environment > .env >
# the master of a running `make spark-up` > local[*] (persona.settings' default). The running
# cluster's URL is asked for only when SPARK_MASTER is set nowhere and spark-up left a pid file.
ifeq ($(origin SPARK_MASTER),undefined)
_SPARK_UP_MASTER = $(shell test -s "$(PERSONA_HOME)/run/spark-master.pid" && test -x $(VENV)/spark/bin/python && $(VENV)/spark/bin/python -m persona.services.local_stack --stack spark url 2>/dev/null)
$(STACK_TARGETS): export SPARK_MASTER = $(_SPARK_UP_MASTER)
endif

# Tests that need Flask, which only the scoring environment has (the dev one pins Werkzeug for
# Mage): the dev run skips them, saying so, and `test` and `test-fast` run them in .venv/scoring
# beside the dev run (on the otherwise idle second core; their output follows the dev run's).
# The target fails if either run failed.
SCORING_TESTS := tests/unit/test_app_routes.py
define WITH_SCORING_TESTS
scoring_log=$$(mktemp); \
$(SCORING_ENV)/python -m pytest $(SCORING_TESTS) >"$$scoring_log" 2>&1 & scoring=$$!; \
status=0; $(PYTEST_RUN) || status=$$?; \
wait $$scoring || status=$$?; \
echo "--- tests that need Flask, in .venv/scoring: $(SCORING_TESTS)"; cat "$$scoring_log"; rm -f "$$scoring_log"; \
exit $$status
endef

test: PYTEST_RUN = $(DEV)/python -m pytest -m "unit or data or model or integration or e2e" $(PYTEST_ARGS)
test: install postgres ## Every test: unit, data, model, integration, e2e
	$(WITH_SCORING_TESTS)

test-fast: PYTEST_RUN = $(DEV)/python -m pytest $(PYTEST_ARGS)
test-fast: $(VENV)/dev/.installed $(VENV)/scoring/.installed ## The fast tests only (unit, data)
	$(WITH_SCORING_TESTS)

test-chaos: install postgres ## Faults injected into the real stack: kill -9 at block boundaries, lost sessions, MLflow and PostgreSQL restarts (~10 min)
	PYTHONUNBUFFERED=1 $(DEV)/python -m pytest -m chaos tests/chaos $(PYTEST_ARGS)

# pytest runs in .venv/spark (pyspark is in no other environment); the tests start their own
# standalone master and worker, and use the dev environment's `persona` for what Spark does not do.
test-spark: install install-spark postgres ## Spark engine on local[*] and on a real standalone master + worker (marker spark)
	$(VENV)/spark/bin/python -m pytest -m spark tests/spark $(PYTEST_ARGS)

test-stack: $(VENV)/dev/.installed ## The Compose stack for real: engine, images, up, train/score/monitor, a job on the spark profile, down -v (root; ~12 min)
	PYTHONUNBUFFERED=1 $(DEV)/python -m persona_tools.stack_test $(STACK_TEST_ARGS)

lint: $(VENV)/dev/.installed ## black, ruff, YAML/whitespace/secret checks (same as pre-commit), checkov on Terraform and Dockerfiles
	PRE_COMMIT_HOME=$(VENV)/pre-commit $(DEV)/pre-commit run --all-files --show-diff-on-failure
	$(MAKE) --no-print-directory lint-iac

format: $(VENV)/dev/.installed ## Apply black and ruff fixes
	$(DEV)/ruff check --fix src tools tests 02_pipeline 03_deployment
	$(DEV)/black src tools tests 02_pipeline 03_deployment

mlflow: $(VENV)/mlflow/.installed stack-db ## Run the MLflow server in the foreground (same command as Compose)
	$(MLFLOW_ENV)/python -m persona.services.mlflow_server

serve: $(VENV)/scoring/.installed ## Run the scoring API (Gunicorn) in the foreground (same command as its image)
	$(SCORING_ENV)/gunicorn -c 03_deployment/gunicorn.conf.py

mage: $(VENV)/dev/.installed stack-db ## Run Mage (UI, API triggers, scheduler) in the foreground
	$(DEV)/python -m persona.services.mage

data: $(VENV)/dev/.installed stack-db ## Generate MONTHS (space-separated) of ROWS synthetic customers (SCENARIO: drift) into the table
	$(DEV)/persona data generate --month $(MONTHS) $(_RUN_OPTIONS) $(if $(SCENARIO),--scenario $(SCENARIO))

train: $(VENV)/dev/.installed stack-db ## Run the Mage `train` pipeline headless (honours conditionals)
	$(DEV)/persona pipeline run train $(call _MONTHS_OPTION,--var months=) $(if $(SEED),--var seed=$(SEED))

train-local: $(VENV)/dev/.installed stack-db ## Run the same training steps without Mage
	$(DEV)/persona train $(call _MONTHS_OPTION,--months ) $(if $(SEED),--seed $(SEED))

ingest: $(VENV)/dev/.installed stack-db ## Validate FILE (CSV in any dialect, Parquet, xlsx) and upsert it into the customers table (MONTH: label a file without a month column)
	@test -n "$(FILE)" || { echo "usage: make ingest FILE=customers.csv [MONTH=YYYY-MM] [SEGMENTATION=NAME]" >&2; exit 2; }
	$(DEV)/persona data ingest --file "$(FILE)" $(if $(call _GIVEN,MONTH),--month $(MONTH))

segmentations: $(VENV)/dev/.installed stack-db ## List the segmentations: what each owns and the version it serves
	$(DEV)/persona segmentation list

segmentation-add: $(VENV)/dev/.installed stack-db ## Add segmentation SEGMENTATION from SCHEMA (PARAMS, DRIFT: its own search and drift files)
	@test -n "$(SEGMENTATION)" -a -n "$(SCHEMA)" || { echo "usage: make segmentation-add SEGMENTATION=marketing SCHEMA=marketing.yaml [PARAMS=..] [DRIFT=..]" >&2; exit 2; }
	$(DEV)/persona segmentation add "$(SEGMENTATION)" --schema "$(SCHEMA)" $(if $(PARAMS),--params "$(PARAMS)") $(if $(DRIFT),--drift "$(DRIFT)")

segmentation-remove: $(VENV)/dev/.installed stack-db ## Forget segmentation SEGMENTATION (FORCE=1: also while it serves a model)
	@test -n "$(SEGMENTATION)" || { echo "usage: make segmentation-remove SEGMENTATION=marketing [FORCE=1]" >&2; exit 2; }
	$(DEV)/persona segmentation remove "$(SEGMENTATION)" $(if $(FORCE),--force)

personas: $(VENV)/dev/.installed stack-db ## The served personas of SEGMENTATION: ids, names, shares
	$(DEV)/persona personas list

persona-rename: $(VENV)/dev/.installed stack-db ## Call persona ID of SEGMENTATION NEW_NAME (served at the API's next check, kept by retrains)
	@test -n "$(ID)" -a -n "$(NEW_NAME)" || { echo 'usage: make persona-rename ID=2 NEW_NAME="Affluent wine lovers" [SEGMENTATION=..]' >&2; exit 2; }
	$(DEV)/persona personas rename "$(ID)" "$(NEW_NAME)"

score: $(VENV)/dev/.installed stack-db $(if $(filter spark,$(ENGINE)),$(VENV)/spark/.installed) ## Score MONTH's customers through the API (ENGINE=local: in process; ENGINE=spark: on SPARK_MASTER or MASTER=) into PERSONA_SCORES_TABLE
	$(if $(filter spark,$(ENGINE)),$(VENV)/spark/bin/persona,$(DEV)/persona) score $(call _MONTH_OPTION,--month ) $(if $(ENGINE),--engine $(ENGINE)) $(if $(MASTER),--master $(MASTER))

monitor: $(VENV)/dev/.installed stack-db $(if $(filter spark,$(ENGINE)),$(VENV)/spark/.installed) ## Run the Mage `monitor` pipeline headless on MONTH (drift -> retrain -> alert; ENGINE=spark: the month sketched on SPARK_MASTER)
	$(DEV)/persona pipeline run monitor --var month=$(MONTH) $(if $(ENGINE),--var engine=$(ENGINE))

monitor-local: $(VENV)/dev/.installed stack-db $(if $(filter spark,$(ENGINE)),$(VENV)/spark/.installed) ## Run the same monitoring steps without Mage (ENGINE=spark as for monitor)
	$(DEV)/persona monitor --month $(MONTH) $(if $(ENGINE),--engine $(ENGINE))

report: $(VENV)/dev/.installed stack-db ## Write the trend chart of persona shares and fit per month (OUT=FILE; prints its path)
	$(DEV)/persona monitor report $(if $(OUT),--out "$(OUT)")

runs-reconcile: $(VENV)/dev/.installed stack-db ## Close runs a killed process left open (drift rows -> abandoned, MLflow -> KILLED, Mage -> failed); prints what it closed
	$(DEV)/persona runs reconcile

monitor-ui: $(VENV)/dev/.installed ## Serve the Evidently UI (drift history) on 127.0.0.1 in the foreground
	$(DEV)/python -m persona.services.evidently_ui

rollback: $(VENV)/dev/.installed stack-db ## Move @production back to the version it replaced, even after a UI promotion (TO=N: to N)
	$(DEV)/persona model rollback $(if $(TO),--to $(TO))

promote: $(VENV)/dev/.installed stack-db ## Move @production to VERSION=N by hand (recorded; make rollback undoes it)
	@test -n "$(VERSION)" || { echo "usage: make promote VERSION=N (versions: persona model show, or the MLflow UI)" >&2; exit 2; }
	$(DEV)/persona model promote $(VERSION)

bench-train: install postgres ## Time generate/validate/search/register at 10k/100k/1M rows
	$(DEV)/python -m persona_tools.bench.train $(BENCH_ARGS)

bench-serve: install postgres ## In-process vs `mlflow models serve` vs this API: rows/s, p50/p95
	$(DEV)/python -m persona_tools.bench.serve $(BENCH_ARGS)

bench-stream: $(VENV)/dev/.installed ## Streaming batch scoring (score --engine local) at 1M/10M rows vs the fast path on arrays: rows/s, ratio, peak RSS
	$(DEV)/python -m persona_tools.bench.stream $(BENCH_ARGS)

bench-monitor: install postgres ## Drift check at 10k/100k/1M current rows: load, report, store
	$(DEV)/python -m persona_tools.bench.monitor $(BENCH_ARGS)

bench-monitor-engines: install $(VENV)/spark/.installed ## Drift verdict at 1M/10M rows (SIZES=): pandas engine vs Spark (local[2], 1-worker cluster), seconds
	$(DEV)/python -m persona_tools.bench.monitor --engines $(if $(SIZES),--sizes $(SIZES)) $(BENCH_ARGS)

bench-drift: install ## Drift checks: scenarios at 1k/5k/20k rows, false alarms over fresh months, 3%/month income rise
	$(DEV)/python -m persona_tools.bench.drift_eval $(BENCH_ARGS)

bench-personas: install ## Persona flags on fresh and drifted months, and the persona step's cost vs Evidently
	$(DEV)/python -m persona_tools.bench.personas $(BENCH_ARGS)

bench-scale: install $(VENV)/spark/.installed postgres ## Every big-batch path at 1M/10M rows (SIZES=) as a share of the fast path of the same run: stream, Spark, HTTP Arrow, PostgreSQL, drift (~30 min)
	$(DEV)/python -m persona_tools.bench.scale $(if $(SIZES),--sizes $(SIZES)) $(BENCH_ARGS)

bench-ingest: install postgres ## PostgreSQL ingest and reads at 1M rows (ROWS=): COPY vs row-by-row / pd.read_sql, rows/s and ratios
	$(DEV)/python -m persona_tools.bench.ingest $(if $(ROWS),--rows $(ROWS)) $(BENCH_ARGS)

bench-search: install ## Default search vs KMeans(true k) on the hard synthetic setting, 5 seeds: ARI, k
	$(DEV)/python -m persona_tools.bench.search $(BENCH_ARGS)

screenshots: $(VENV)/dev/.installed ## Mage UI screenshots into docs/images with headless chromium (needs Mage up: make mage)
	$(DEV)/python -m persona_tools.screenshots --out docs/images $(SCREENSHOTS_ARGS)

TF_DIR := 05_iac/terraform
TERRAFORM ?= terraform
CHECKOV := $(VENV)/checkov/bin/checkov

_terraform:
	@command -v $(TERRAFORM) >/dev/null 2>&1 || { echo "terraform not found: install Terraform >= 1.5 (https://developer.hashicorp.com/terraform/install) or set TERRAFORM=/path/to/terraform" >&2; exit 1; }

tf-init: _terraform ## Download the pinned Google provider for 05_iac/terraform
	$(TERRAFORM) -chdir=$(TF_DIR) init

tf-plan: _terraform ## Show what tf-apply would change (needs terraform.tfvars + gcloud ADC)
	$(TERRAFORM) -chdir=$(TF_DIR) plan

tf-apply: _terraform ## Create/update the artifact bucket and the MLflow service account
	$(TERRAFORM) -chdir=$(TF_DIR) apply

tf-destroy: _terraform ## Remove them (fails while the bucket holds objects)
	$(TERRAFORM) -chdir=$(TF_DIR) destroy

tf-env: _terraform $(VENV)/dev/.installed ## Write GCS_BUCKET, GCS_PREFIX, MLFLOW_ARTIFACTS_DESTINATION from Terraform into .env
	set -o pipefail; $(TERRAFORM) -chdir=$(TF_DIR) output -json | $(DEV)/python -m persona.iac tf-env --outputs-json - --env-file .env

$(VENV)/checkov/.installed: requirements/checkov.lock | $(UV)
	$(UV) venv --quiet --allow-existing --python $(PYTHON) $(VENV)/checkov
	VIRTUAL_ENV=$(VENV)/checkov $(UV) pip sync --quiet --compile-bytecode requirements/checkov.lock
	touch $@

lint-iac: $(VENV)/checkov/.installed ## checkov on the Terraform and the Dockerfiles, hadolint, `compose config` (offline)
	$(CHECKOV) -d $(TF_DIR) --framework terraform --quiet --compact --skip-download
	$(CHECKOV) -d 05_iac/docker --framework dockerfile --quiet --compact --skip-download
	$(VENV)/checkov/bin/hadolint --no-color 05_iac/docker/*.Dockerfile
	@command -v $(firstword $(COMPOSE)) >/dev/null 2>&1 || { echo "docker compose / docker-compose not found: install Docker Compose (Debian: apt-get install docker-compose) to validate docker-compose.yml" >&2; exit 1; }
	$(COMPOSE) --env-file 05_iac/compose/lint.env -f docker-compose.yml config --quiet
	$(COMPOSE) --env-file 05_iac/compose/lint.env -f docker-compose.yml -f 05_iac/stack-test/docker-compose.hostnet.yml config --quiet

locks: | $(UV) ## Re-resolve the lock files and regenerate environment.yml
	$(UV) pip compile --quiet requirements/pipeline.in --override requirements/overrides.txt --python-version 3.11 -o requirements/pipeline.lock
	$(UV) pip compile --quiet requirements/dev.in --override requirements/overrides.txt -c requirements/pipeline.lock --python-version 3.11 -o requirements/dev.lock
	$(UV) pip compile --quiet requirements/mlflow-server.in --python-version 3.11 -o requirements/mlflow-server.lock
	$(UV) pip compile --quiet requirements/checkov.in --python-version 3.11 -o requirements/checkov.lock
	$(UV) pip compile --quiet requirements/scoring.in --python-version 3.11 -o requirements/scoring.lock
	$(UV) pip compile --quiet requirements/scoring-test.in --python-version 3.11 -o requirements/scoring-test.lock
	$(UV) pip compile --quiet requirements/spark.in --override requirements/overrides.txt -c requirements/pipeline.lock --python-version 3.11 -o requirements/spark.lock
	$(UV) pip compile --quiet requirements/spark-test.in --python-version 3.11 -o requirements/spark-test.lock
	$(DEV)/python -m persona_tools.devtools environment-yml > environment.yml

clean: ## Remove local state (.persona) but keep the environments
	rm -rf $(PERSONA_HOME)

comma := ,
empty :=
space := $(empty) $(empty)
