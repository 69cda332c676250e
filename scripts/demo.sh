#!/usr/bin/env bash
# Set up, then run a demo master in the foreground on SQLite in ./demo (Ctrl-C stops it).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
PORT=${BUILDYARD_DEMO_PORT:-8010}
WORKER_PORT=${BUILDYARD_DEMO_WORKER_PORT:-9989}
if [ ! -f demo/master.cfg ]; then
    .venv/bin/buildyard create-master -q demo
    # the demo listens on loopback only: the web server, and the worker port
    sed -e "s/c\['www'\] = {'port': 8010}/c['www'] = {'port': 'tcp:$PORT:interface=127.0.0.1'}/" \
        -e "s/{'port': 9989}}/{'port': 'tcp:$WORKER_PORT:interface=127.0.0.1'}}/" \
        demo/master.cfg.sample > demo/master.cfg
fi
.venv/bin/buildyard checkconfig demo
.venv/bin/buildyard upgrade-master demo
echo "starting the demo master: REST API on http://127.0.0.1:$PORT/api/v2/masters,"
echo "workers (msgpack_experimental_v7) on 127.0.0.1:$WORKER_PORT as example-worker/pass (Ctrl-C stops it)"
exec .venv/bin/buildyard start --nodaemon demo
