# Mage (UI, API triggers, scheduler) with the persona package: the pipeline environment.
# Build from the repository root:  docker build -f 05_iac/docker/pipeline.Dockerfile .
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PERSONA_HOME=/data PERSONA_MAGE_HOST=0.0.0.0 PERSONA_MAGE_PORT=6789
WORKDIR /app
COPY requirements/pipeline.lock requirements/
RUN pip install --no-cache-dir uv==0.13.8 \
 && uv pip sync --system --no-cache requirements/pipeline.lock
COPY pyproject.toml README.md ./
COPY src src
RUN uv pip install --system --no-cache --no-deps .
COPY 00_create_data 00_create_data
COPY 01_model 01_model
COPY 02_pipeline 02_pipeline
EXPOSE 6789
# The same entry command as `make mage` and `make local-up`.
CMD ["python", "-m", "persona.services.mage"]
