#!/usr/bin/env bash
# Set up .venv (if needed) and run the test suite. Extra arguments go to pytest
# (e.g. `bash scripts/test.sh -m slow` runs the longer end-to-end tests too: `-m "slow or not slow"`).
# The report's browser test needs Debian's chromium: installed here when missing and running as root
# (as in CI); otherwise that one test skips locally, and fails where CI is set.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's chromium for the report's browser test"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "note: chromium not found; the report's browser test will skip (sudo apt-get install chromium)"
  fi
fi
export NO_ALBUMENTATIONS_UPDATE=1
exec .venv/bin/python -m pytest "$@"
