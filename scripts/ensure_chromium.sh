#!/usr/bin/env bash
# Install Debian's `chromium` when it is missing (the Mage UI browser test and `make screenshots`
# drive it headless), then print its version. Idempotent; apt's output is shown only on failure.
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "chromium not found and no apt-get here: install Chromium so that \`chromium\` is on PATH" >&2
    exit 1
  fi
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  log=$(mktemp)
  trap 'rm -f "$log"' EXIT
  if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
      --no-install-recommends chromium fonts-dejavu-core; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "apt-get install chromium failed (output above)" >&2
    exit 1
  fi
fi
if ! command -v chromium >/dev/null 2>&1; then
  echo "chromium is installed but not on PATH ($PATH)" >&2
  exit 1
fi
# Debian's launcher script warns on stderr about /dev/shm on some machines: not an error.
chromium --version 2>/dev/null
