#!/usr/bin/env bash
# Install Debian's Java 17 runtime when no Java 17+ is on PATH (Spark 4 needs 17; Debian bookworm
# has no 21), then print the version. Idempotent; apt's output is shown only on failure.
set -euo pipefail
java_major() { java -version 2>&1 | awk -F'"' '/version/ {split($2, v, "."); print v[1]; exit}'; }
if ! command -v java >/dev/null 2>&1 || [ "$(java_major)" -lt 17 ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "Java 17 not found and no apt-get here: install a Java 17 runtime so that \`java\` is on PATH" >&2
    exit 1
  fi
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  log=$(mktemp)
  trap 'rm -f "$log"' EXIT
  if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
      --no-install-recommends openjdk-17-jre-headless; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "apt-get install openjdk-17-jre-headless failed (output above)" >&2
    exit 1
  fi
fi
java -version 2>&1 | head -1
