#!/usr/bin/env bash
# Install Debian's Java 17 runtime when no Java 17+ is on PATH (Spark 4 needs 17; Debian bookworm
# has no 21), then print the version. Idempotent; apt's output is shown only on failure.
set -euo pipefail
java_major() { java -version 2>&1 | awk -F'"' '/version/ {split($2, v, "."); print v[1]; exit}'; }
if ! command -v java >/dev/null 2>&1 || [ "$(java_major)" -lt 17 ]; then
  bash "$(dirname "$0")/apt_install.sh" openjdk-17-jre-headless
fi
java -version 2>&1 | head -1
