"""Gunicorn settings of the scoring API, from the persona settings (environment variables).

Run from anywhere: ``gunicorn -c 03_deployment/gunicorn.conf.py`` (what `make serve`, the local
stack and the container all run).
"""

import os
import shutil
import tempfile
from pathlib import Path

from persona.serving.memory import tune_allocator
from persona.serving.peers import WORKERS_DIR_ENV, Peers
from persona.settings import load_settings

# KMeans leaves an OpenMP helper thread spinning after each predict, stealing the other
# worker's core; passive waiting (set before any worker imports the model) stops it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# One BLAS thread per worker: the workers already take a core each, and a second BLAS thread
# fighting them made a 10k-row matrix product 3x slower (0.18 -> 0.54 ms) on 2 busy cores.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# Fewer arenas, and freed memory kept for the next batch: the workers inherit it.
tune_allocator()
# Metrics are summed across workers from files in this folder.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="persona-metrics-"))
# The workers agree on the served version through this folder (persona.serving.peers).
os.environ[WORKERS_DIR_ENV] = tempfile.mkdtemp(prefix="persona-workers-")

_settings = load_settings()

pythonpath = str(Path(__file__).resolve().parent)  # finds wsgi.py; the working folder stays
wsgi_app = "wsgi:app"
bind = f"{_settings.scoring_host}:{_settings.scoring_port}"
workers = _settings.scoring_workers
worker_class = "gthread"
threads = _settings.scoring_threads
preload_app = False  # each worker loads and polls the model itself
timeout = 120
graceful_timeout = 30
keepalive = 5
# gunicorn 27 opens a control socket at one fixed path per user; several servers (the local
# stack, tests, benchmarks) would share it. Nothing here uses it: signals stop the server.
control_socket_disable = True
accesslog = None
errorlog = "-"
loglevel = _settings.log_level.lower()


def child_exit(server, worker):
    from prometheus_client import multiprocess  # imported late: the env var must come first

    multiprocess.mark_process_dead(worker.pid)
    Peers(Path(os.environ[WORKERS_DIR_ENV])).forget(worker.pid)


def on_exit(server):
    shutil.rmtree(os.environ[WORKERS_DIR_ENV], ignore_errors=True)
