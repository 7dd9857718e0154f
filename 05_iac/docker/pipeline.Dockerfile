# Mage (UI, API triggers, scheduler) with the persona package: the pipeline environment.
# Build from the repository root:  docker build -f 05_iac/docker/pipeline.Dockerfile .
# Users get the pinned official image; the air-gapped stack test passes a locally built stand-in.
ARG BASE_IMAGE=python:3.11-slim
#checkov:skip=CKV_DOCKER_7:the tag is pinned in BASE_IMAGE's default; checkov does not expand ARG
FROM ${BASE_IMAGE}
# No usage telemetry: MLflow's client, when it cannot phone home, races on an environment
# variable and fails a random tracking call (seen: retraining in the monitor pipeline).
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=1 \
    PERSONA_HOME=/data PERSONA_MAGE_HOST=0.0.0.0 PERSONA_MAGE_PORT=6789
WORKDIR /app
COPY requirements/pipeline.lock requirements/
RUN pip install --no-cache-dir uv==0.13.8 \
 && uv pip sync --system --no-cache --compile-bytecode requirements/pipeline.lock
# WITH_SPARK_ENV=true (Compose: PERSONA_PIPELINE_SPARK=true, for the `spark` profile) adds Java 17
# and the Spark environment at /opt/spark-env, beside Mage's own, which never gets pyspark: the
# blocks run PERSONA_SPARK_COMMAND for Spark work. Without it the image is as before (+8 kB).
ARG WITH_SPARK_ENV=false
ENV PERSONA_SPARK_COMMAND=/opt/spark-env/bin/persona
COPY requirements/spark.lock requirements/
COPY 05_iac/docker/spark-env.sh /usr/local/bin/spark-env.sh
RUN if [ "$WITH_SPARK_ENV" = true ]; then spark-env.sh; fi
COPY pyproject.toml README.md ./
COPY src src
RUN uv pip install --system --no-cache --no-deps --compile-bytecode . \
 && if [ "$WITH_SPARK_ENV" = true ]; then spark-env.sh package; fi
COPY 00_create_data 00_create_data
COPY 01_model 01_model
COPY 02_pipeline 02_pipeline
COPY 04_monitoring/drift.yaml 04_monitoring/drift.yaml
# An unprivileged user owns only what the service writes: its state under /data and Mage's
# run files next to the project.
RUN useradd --system --uid 10001 --home-dir /data --no-create-home persona \
 && mkdir -p /data && chown -R persona /data /app/02_pipeline/persona_pipelines
USER 10001
EXPOSE 6789
HEALTHCHECK --interval=30s --timeout=5s --start-period=240s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ['PERSONA_MAGE_PORT'] + '/', timeout=4)"]
# The same entry command as `make mage` and `make local-up`.
CMD ["python", "-m", "persona.services.mage"]
