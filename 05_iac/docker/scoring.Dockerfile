# The scoring API (Gunicorn + Flask): the scoring environment.
# Build from the repository root:  docker build -f 05_iac/docker/scoring.Dockerfile .
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
# MALLOC_ARENA_MAX: fewer glibc arenas for the worker threads, about 20 MB less RSS per worker here.
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 MALLOC_ARENA_MAX=2 \
    PERSONA_HOME=/data PERSONA_SCORING_HOST=0.0.0.0 PERSONA_SCORING_PORT=8080
WORKDIR /app
COPY requirements/scoring.lock requirements/
RUN pip install --no-cache-dir uv==0.13.8 \
 && uv pip sync --system --no-cache requirements/scoring.lock
COPY pyproject.toml README.md ./
COPY src src
RUN uv pip install --system --no-cache --no-deps .
COPY 00_create_data/schema.yaml 00_create_data/schema.yaml
COPY 03_deployment 03_deployment
EXPOSE 8080
# The same entry command as `make serve` and `make local-up`.
CMD ["gunicorn", "-c", "03_deployment/gunicorn.conf.py"]
