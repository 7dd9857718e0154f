# The MLflow tracking server and registry: the mlflow-server environment.
# Build from the repository root:  docker build -f 05_iac/docker/mlflow-server.Dockerfile .
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PERSONA_HOME=/data MLFLOW_HOST=0.0.0.0 MLFLOW_PORT=5000
WORKDIR /app
COPY requirements/mlflow-server.lock requirements/
RUN pip install --no-cache-dir uv==0.13.8 \
 && uv pip sync --system --no-cache requirements/mlflow-server.lock
COPY pyproject.toml README.md ./
COPY src src
RUN uv pip install --system --no-cache --no-deps .
EXPOSE 5000
# The same entry command as `make mlflow` and `make local-up`.
CMD ["python", "-m", "persona.services.mlflow_server"]
