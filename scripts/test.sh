#!/usr/bin/env bash
# Set up, then run the whole check: lint, format, types, import layers, and the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export BUILDYARD_BUILDBOT_VENV=${BUILDYARD_BUILDBOT_VENV:-$HOME/.cache/buildyard/buildbot-4.3.0}
echo "== ruff"; .venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
echo "== mypy"; .venv/bin/mypy
echo "== import layers"; .venv/bin/lint-imports
echo "== pytest"; .venv/bin/pytest -n "${BUILDYARD_TEST_WORKERS:-auto}" "$@"
