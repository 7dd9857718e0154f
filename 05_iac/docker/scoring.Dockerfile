# The scoring API (Gunicorn + Flask): the scoring environment.
# Build from the repository root:  docker build -f 05_iac/docker/scoring.Dockerfile .
# Users get the pinned official image; the air-gapped stack test passes a locally built stand-in.
ARG BASE_IMAGE=python:3.11-slim
#checkov:skip=CKV_DOCKER_7:the tag is pinned in BASE_IMAGE's default; checkov does not expand ARG
FROM ${BASE_IMAGE}
# No usage telemetry: MLflow's client, when it cannot phone home, races on an environment
# variable and fails a random tracking call (seen: retraining in the monitor pipeline).
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=1 \
    PERSONA_HOME=/data PERSONA_SCORING_HOST=0.0.0.0 PERSONA_SCORING_PORT=8080
WORKDIR /app
COPY requirements/scoring.lock requirements/
RUN pip install --no-cache-dir uv==0.13.8 \
 && uv pip sync --system --no-cache --compile-bytecode requirements/scoring.lock
COPY pyproject.toml README.md ./
COPY src src
RUN uv pip install --system --no-cache --no-deps --compile-bytecode .
COPY 00_create_data/schema.yaml 00_create_data/schema.yaml
COPY 03_deployment 03_deployment
# An unprivileged user owns only what the service writes: its state under /data.
RUN useradd --system --uid 10001 --home-dir /data --no-create-home persona \
 && mkdir -p /data && chown -R persona /data
USER 10001
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ['PERSONA_SCORING_PORT'] + '/health', timeout=4)"]
# The same entry command as `make serve` and `make local-up`.
CMD ["gunicorn", "-c", "03_deployment/gunicorn.conf.py"]
