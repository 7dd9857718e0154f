#!/usr/bin/env bash
# Install Debian's `chromium` when it is missing (the Mage UI browser test and `make screenshots`
# drive it headless), then print its version. Idempotent; apt's output is shown only on failure.
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1; then
  bash "$(dirname "$0")/apt_install.sh" chromium fonts-dejavu-core
fi
if ! command -v chromium >/dev/null 2>&1; then
  echo "chromium is installed but not on PATH ($PATH)" >&2
  exit 1
fi
# Debian's launcher script warns on stderr about /dev/shm on some machines: not an error.
chromium --version 2>/dev/null
