# A node of the standalone Spark cluster (Compose profile `spark`): master, worker and the
# executors a worker starts, from one image. Java 17 from Debian and the Spark environment
# (requirements/spark.lock + the persona package) at /opt/spark-env, the path the Mage image
# built with PERSONA_PIPELINE_SPARK=true has too: executors run the driver's Python path.
# Build from the repository root:  docker build -f 05_iac/docker/spark.Dockerfile .
# Users get the pinned official image; the air-gapped stack test passes a locally built stand-in.
ARG BASE_IMAGE=python:3.11-slim
#checkov:skip=CKV_DOCKER_7:the tag is pinned in BASE_IMAGE's default; checkov does not expand ARG
FROM ${BASE_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=1 \
    PERSONA_HOME=/data PATH=/opt/spark-env/bin:$PATH \
    PERSONA_SPARK_MASTER_PORT=7077 PERSONA_SPARK_MASTER_UI_PORT=8090 PERSONA_SPARK_WORKER_UI_PORT=8091
WORKDIR /app
RUN pip install --no-cache-dir uv==0.13.8
COPY requirements/spark.lock requirements/
COPY 05_iac/docker/spark-env.sh /usr/local/bin/spark-env.sh
RUN spark-env.sh
COPY pyproject.toml README.md ./
COPY src src
RUN spark-env.sh package
# An unprivileged user owns only what the daemons write: executors' work folders under /data.
RUN useradd --system --uid 10001 --home-dir /data --no-create-home persona \
 && mkdir -p /data && chown -R persona /data
USER 10001
EXPOSE 7077 8090 8091
# A master answers on its UI port, a worker on its own (each container runs one daemon).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; port = os.environ['PERSONA_SPARK_WORKER_UI_PORT'] if b'deploy.worker' in open('/proc/1/cmdline', 'rb').read() else os.environ['PERSONA_SPARK_MASTER_UI_PORT']; urllib.request.urlopen('http://127.0.0.1:' + port + '/json/', timeout=4)"]
# The same command line as `make spark-up` starts, for one daemon: master or worker.
CMD ["python", "-m", "persona.services.spark_cluster", "master"]
