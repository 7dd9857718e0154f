#!/bin/sh
# The Spark environment of the images, in one place: Debian's Java 17 runtime and a virtualenv
# at /opt/spark-env from requirements/spark.lock (`spark-env.sh`), then the persona package from
# /app (`spark-env.sh package`, a later layer, so a source change does not reinstall pyspark).
# The spark image (master, workers, executors) and the Mage image built with
# PERSONA_PIPELINE_SPARK=true both run it, so the driver in Mage and every executor use the
# same Python path (/opt/spark-env/bin/python), as Spark requires. Run as root, from /app.
set -eu
if [ "${1:-}" = package ]; then
    VIRTUAL_ENV=/opt/spark-env uv pip install --no-cache --no-deps --compile-bytecode .
    /opt/spark-env/bin/python -c "import persona, pyspark; print('pyspark', pyspark.__version__)"
    exit 0
fi
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openjdk-17-jre-headless
rm -rf /var/lib/apt/lists/*
uv venv --python "$(command -v python)" /opt/spark-env
VIRTUAL_ENV=/opt/spark-env uv pip sync --no-cache --compile-bytecode requirements/spark.lock
java -version
