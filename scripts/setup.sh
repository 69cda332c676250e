#!/usr/bin/env bash
# Set up a development environment (idempotent; fast when nothing changed):
#   .venv/                     buildyard in editable mode with its dev tools
#   PostgreSQL server binaries  (installed with apt-get when missing and we are root)
#   the stock Buildbot 4.3.0 master, worker and www in their own venv, for compatibility tests
#     and benchmarks only
#     ($BUILDYARD_BUILDBOT_VENV, default ~/.cache/buildyard/buildbot-4.3.0; never imported by buildyard)
#   the stock buildbot-worker of the 3.x line (3.11.9, the newest) in its own venv, for the
#     older-worker compatibility tests
#     ($BUILDYARD_BUILDBOT_WORKER3_VENV, default ~/.cache/buildyard/buildbot-worker-3.11.9)
#   the stock Buildbot 3.11.9 master in its own venv, whose databases upgrade-master adopts
#     ($BUILDYARD_BUILDBOT3_VENV, default ~/.cache/buildyard/buildbot-3.11.9)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11, 4))'; then
    echo "buildyard needs Python 3.11.4 or newer ($PYTHON is $("$PYTHON" --version 2>&1))" >&2
    exit 1
fi

hash=$(sha1sum pyproject.toml | cut -c1-12)
stamp=.venv/.installed-$hash
# --demo: only what the demo runs (buildyard and its worker, no test tools, no stock venvs)
if [ "${1:-}" = "--demo" ]; then
    if [ ! -f "$stamp" ] && [ ! -f ".venv/.installed-demo-$hash" ]; then
        [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
        .venv/bin/python -m pip install -q --upgrade pip
        .venv/bin/python -m pip install -q -e .
        touch ".venv/.installed-demo-$hash"
    fi
    exit 0
fi
if [ ! -f "$stamp" ]; then
    [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[dev,ec2,mysql]'
    # LibVirtWorker's bindings compile against the system's libvirt (.ci/run installs it)
    if pkg-config --exists libvirt 2>/dev/null; then
        .venv/bin/python -m pip install -q -e '.[libvirt]'
    else
        echo "libvirt-dev and pkg-config are missing: LibVirtWorker's tests will be skipped" >&2
    fi
    rm -f .venv/.installed-* && touch "$stamp"
fi

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql
    else
        echo "the tests need PostgreSQL's server binaries: sudo apt-get install postgresql" >&2
        exit 1
    fi
fi

BB_VENV=${BUILDYARD_BUILDBOT_VENV:-$HOME/.cache/buildyard/buildbot-4.3.0}
# one setup at a time builds it (two at once, as in parallel checkouts, would remove each
# other's half-made venv)
mkdir -p "$(dirname "$BB_VENV")"
exec 9>"$BB_VENV.lock"
flock 9
if [ ! -f "$BB_VENV/.complete" ]; then
    rm -rf "$BB_VENV"
    "$PYTHON" -m venv "$BB_VENV"
    "$BB_VENV/bin/python" -m pip install -q buildbot==4.3.0 buildbot-worker==4.3.0 buildbot-www==4.3.0
    touch "$BB_VENV/.complete"
fi
# buildbot-www serves Buildbot's REST API (bench/builds.py forces builds through it); venvs made
# before it was added get it here
if ! "$BB_VENV/bin/python" -c 'import buildbot_www' 2>/dev/null; then
    "$BB_VENV/bin/python" -m pip install -q buildbot-www==4.3.0
fi
# Buildbot's UI plugins, beside buildbot-www, which the browser test shows through buildyard
if ! "$BB_VENV/bin/python" -c 'import importlib.util as u; assert u.find_spec("buildbot_grid_view")' 2>/dev/null; then
    "$BB_VENV/bin/python" -m pip install -q buildbot-waterfall-view==4.3.0 \
        buildbot-console-view==4.3.0 buildbot-grid-view==4.3.0
fi
# Buildbot's optional packages, for tests that adopt a Buildbot database: psycopg runs it on
# PostgreSQL (its SQLAlchemy picks psycopg 3 for postgresql:// URLs), lz4, zstandard and brotli
# write its other log chunk formats
if ! "$BB_VENV/bin/python" -c 'import psycopg, lz4, zstandard, brotli' 2>/dev/null; then
    "$BB_VENV/bin/python" -m pip install -q 'psycopg[binary]' lz4 zstandard brotli
fi
# PyMySQL runs it on MariaDB (mysql+pymysql:// URLs), for the test that copies its database off
# MySQL with copy-db
if ! "$BB_VENV/bin/python" -c 'import pymysql' 2>/dev/null; then
    "$BB_VENV/bin/python" -m pip install -q pymysql
fi
# the Docker SDK, which Buildbot's DockerLatentWorker needs: the side-by-side Docker test runs
# stock Buildbot against the same engine stand-in as buildyard
if ! "$BB_VENV/bin/python" -c 'import docker' 2>/dev/null; then
    "$BB_VENV/bin/python" -m pip install -q 'docker>=7'
fi
# novaclient and keystoneauth1, which Buildbot's OpenStackLatentWorker needs: the side-by-side
# OpenStack test runs stock Buildbot against the same cloud stand-in as buildyard
if ! "$BB_VENV/bin/python" -c 'import novaclient, keystoneauth1' 2>/dev/null; then
    "$BB_VENV/bin/python" -m pip install -q python-novaclient keystoneauth1
fi
flock -u 9

W3_VENV=${BUILDYARD_BUILDBOT_WORKER3_VENV:-$HOME/.cache/buildyard/buildbot-worker-3.11.9}
mkdir -p "$(dirname "$W3_VENV")"
exec 8>"$W3_VENV.lock"
flock 8
if [ ! -f "$W3_VENV/.complete" ]; then
    rm -rf "$W3_VENV"
    "$PYTHON" -m venv "$W3_VENV"
    "$W3_VENV/bin/python" -m pip install -q buildbot-worker==3.11.9
    touch "$W3_VENV/.complete"
fi
flock -u 8

# the Buildbot master of the 3.x line, whose databases upgrade-master adopts (with PostgreSQL's
# driver, for the adoption test on that backend)
B3_VENV=${BUILDYARD_BUILDBOT3_VENV:-$HOME/.cache/buildyard/buildbot-3.11.9}
exec 7>"$B3_VENV.lock"
flock 7
if [ ! -f "$B3_VENV/.complete" ]; then
    rm -rf "$B3_VENV"
    "$PYTHON" -m venv "$B3_VENV"
    "$B3_VENV/bin/python" -m pip install -q buildbot==3.11.9 buildbot-www==3.11.9 'psycopg2-binary'
    touch "$B3_VENV/.complete"
fi
flock -u 7
