#!/usr/bin/env bash
# Set up, then run the demo in ./demo: a sample project in a local git repository, a master on
# SQLite that polls it and builds every commit, and a buildyard-worker that runs the builds.
# The master runs in the foreground (Ctrl-C stops it, and the worker with it).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --demo
PORT=${BUILDYARD_DEMO_PORT:-8010}
WORKER_PORT=${BUILDYARD_DEMO_WORKER_PORT:-9989}
DEMO=$PWD/demo
PROJECT=$DEMO/project

git_() { git -C "$PROJECT" -c user.name="Demo" -c user.email="demo@example.org" "$@"; }

if [ ! -d "$PROJECT/.git" ]; then
    mkdir -p "$PROJECT"
    git init -q -b main "$PROJECT"
    printf 'def greet(name):\n    return f"hello, {name}"\n' > "$PROJECT/hello.py"
    cat > "$PROJECT/test_hello.py" <<'EOF'
import unittest

import hello


class Greet(unittest.TestCase):
    def test_greet(self):
        self.assertEqual(hello.greet("world"), "hello, world")
EOF
    git_ add .
    git_ commit -q -m "The sample project"
fi

if [ ! -f "$DEMO/master/master.cfg" ]; then
    .venv/bin/buildyard create-master -q "$DEMO/master"
    # the sample config, pointed at the sample project, polled every 5 s, on loopback only
    sed -e "s|^REPOSITORY = .*|REPOSITORY = \"$PROJECT\"|" \
        -e "s/pollInterval=300/pollInterval=5/" \
        -e "s/c\['www'\] = {'port': 8010}/c['www'] = {'port': 'tcp:$PORT:interface=127.0.0.1'}/" \
        -e "s/{'port': 9989}}/{'port': 'tcp:$WORKER_PORT:interface=127.0.0.1'}}/" \
        "$DEMO/master/master.cfg.sample" > "$DEMO/master/master.cfg"
fi
if [ ! -f "$DEMO/worker/buildyard-worker.json" ]; then
    .venv/bin/buildyard-worker create-worker "$DEMO/worker" "127.0.0.1:$WORKER_PORT" \
        example-worker pass > /dev/null
fi
.venv/bin/buildyard checkconfig "$DEMO/master"
.venv/bin/buildyard upgrade-master "$DEMO/master"

.venv/bin/buildyard-worker start "$DEMO/worker"
trap '.venv/bin/buildyard-worker stop "$DEMO/worker" || true' EXIT

# a commit shortly after the poller's first look, so the demo builds something right away
( sleep 8
  printf '\n# touched by the demo at %s\n' "$(date -u +%H:%M:%S)" >> "$PROJECT/hello.py"
  git_ commit -q -am "A change for the demo to build" ) &

echo "demo: master in $DEMO/master (REST API http://127.0.0.1:$PORT/api/v2/builders),"
echo "      worker in $DEMO/worker, project in $PROJECT."
echo "      Commit in the project and a build follows; its build_finished line shows below."
echo "      Ctrl-C stops the master and the worker."
.venv/bin/buildyard start --nodaemon "$DEMO/master"
