#!/usr/bin/env bash
# Set up, then run the whole check: lint, format, types, import layers, and the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# the browser tests drive Debian's Chromium through Playwright
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium
    else
        echo "the browser tests need Chromium: sudo apt-get install chromium" >&2
        exit 1
    fi
fi
# the Git step's and GitPoller's ssh tests serve a private repository with Debian's sshd
if [ ! -x /usr/sbin/sshd ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends openssh-server
    else
        echo "the git-over-ssh tests need sshd: sudo apt-get install openssh-server" >&2
        exit 1
    fi
fi

export BUILDYARD_BUILDBOT_VENV=${BUILDYARD_BUILDBOT_VENV:-$HOME/.cache/buildyard/buildbot-4.3.0}
echo "== ruff"; .venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
echo "== mypy"; .venv/bin/mypy
echo "== import layers"; .venv/bin/lint-imports
# Compile buildyard's modules once: the tests start hundreds of master and worker processes,
# and where PYTHONDONTWRITEBYTECODE is set (as on our CI machines) each would compile them
# again from source (measured: importing the master took 4.2 s of CPU without, 1.5 s with)
.venv/bin/python -m compileall -q src
# loadgroup: the tests that share an expensive fixture (xdist_group marks) run on one worker
echo "== pytest"; .venv/bin/pytest -n "${BUILDYARD_TEST_WORKERS:-auto}" --dist loadgroup "$@"
