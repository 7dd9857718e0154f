#!/usr/bin/env bash
# Install Debian packages (names as arguments) without recommends, through sudo when not root;
# apt's output is shown only on failure. Used by ensure_chromium.sh and ensure_java.sh.
set -euo pipefail
if ! command -v apt-get >/dev/null 2>&1; then
  echo "no apt-get here: install $* by hand" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
    --no-install-recommends "$@"; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "apt-get install $* failed (output above)" >&2
  exit 1
fi
