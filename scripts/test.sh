#!/usr/bin/env bash
# Install everything the tests need into .venv and run the whole suite (unit + end-to-end).
# Usage: bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e ".[dev]"

# Headless Chromium for the MLflow UI test and PostgreSQL for the team set-up test (Debian packages); each
# test skips, saying why, without its package.
missing=""
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$missing postgresql"
if [ -n "$missing" ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq $missing >/dev/null) || echo "note: could not install$missing; their tests will skip"
fi

exec .venv/bin/python -m pytest "$@"
