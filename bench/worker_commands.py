"""Command round trips and stdout throughput over one worker connection.

For a buildyard master (in this process) with each worker, buildyard-worker and the stock
buildbot-worker 4.3.0, side by side in one run:

* round trips per second: ``shell true`` started and waited for (rc), one after another;
* stdout throughput in MB/s: one command printing ``--megabytes`` of 100-byte lines.

The Buildbot 4.3.0 master column needs builds (its commands run only inside steps), so it comes
with the build pipeline (issue 4).

    .venv/bin/python bench/worker_commands.py --round-trips 300 --megabytes 200
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

import structlog

from buildyard.master.config.loader import load_master_config
from buildyard.master.db import migrate
from buildyard.master.master import BuildMaster
from buildyard.master.workers.connection import Update
from buildyard.testing.postgres import free_port
from buildyard.testing.processes import end_popen, eventually
from buildyard.testing.workers import start_worker

CONFIG = """\
from buildyard.plugins import *
c = BuildmasterConfig = {{}}
c['workers'] = [worker.Worker("w1", "pw")]
c['protocols'] = {{'msgpack_experimental_v7': {{'port': {port}, 'interface': '127.0.0.1'}}}}
c['builders'] = [util.BuilderConfig(name="b", workernames=["w1"], factory=util.BuildFactory())]
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
"""


async def measure(kind: str, root: Path, round_trips: int, megabytes: int) -> tuple[float, float]:
    basedir = root / "master"
    basedir.mkdir(parents=True)
    port = free_port()
    (basedir / "master.cfg").write_text(CONFIG.format(port=port))
    master = BuildMaster(basedir, config=load_master_config(basedir))
    await migrate.upgrade(master.db)
    await master.start()
    workdir = root / "worker"
    proc = await asyncio.to_thread(start_worker, kind, workdir, port, "w1", "pw")
    try:
        listener = master.workers.listener
        await eventually(
            lambda: "w1" in listener.connections and (workdir / "b").is_dir(), within=60
        )
        conn = listener.connections["w1"]
        args = {"workdir": str(workdir / "b"), "command": ["true"], "logEnviron": False}
        t0 = time.perf_counter()
        for _ in range(round_trips):
            result = await conn.run_command("shell", args)
            assert result.rc == 0
        per_second = round_trips / (time.perf_counter() - t0)

        received = 0

        def count(update: Update) -> None:
            nonlocal received
            if update[0] == "stdout":
                received += len(update[1][0])

        lines = megabytes * 10_000  # 100-byte lines
        big = {
            "workdir": str(workdir / "b"),
            "command": ["sh", "-c", f"yes {'a' * 99} | head -n {lines}"],  # 99 + newline
            "logEnviron": False,
        }
        t0 = time.perf_counter()
        result = await conn.run_command("shell", big, on_update=count, keep_output=False)
        elapsed = time.perf_counter() - t0
        assert result.rc == 0, result.rc
        assert received == lines * 100, received  # every byte arrived
        return per_second, received / 1e6 / elapsed
    finally:
        end_popen(proc)
        await master.stop()


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--round-trips", type=int, default=300)
    parser.add_argument("--megabytes", type=int, default=200)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    results = {}
    for kind in ("buildyard", "stock"):
        root = Path(tempfile.mkdtemp(prefix="buildyard-bench-"))
        try:
            results[kind] = await measure(kind, root, args.round_trips, args.megabytes)
        finally:
            shutil.rmtree(root, ignore_errors=True)
    print(f"round_trips={args.round_trips} megabytes={args.megabytes}")
    for kind, (rps, mbps) in results.items():
        name = "buildyard-worker" if kind == "buildyard" else "stock buildbot-worker"
        print(f"buildyard master + {name:22s}: {rps:7.1f} round trips/s  {mbps:7.1f} MB/s stdout")
    ours, stock = results["buildyard"], results["stock"]
    print(
        f"ratio ours/stock worker: round trips {ours[0] / stock[0]:.2f}x, "
        f"throughput {ours[1] / stock[1]:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
