"""Crash recovery, buildyard vs stock Buildbot 4.3.0 side by side: how soon a build that a
killed master left behind runs again once the master is started again.

Each round, for each side: a master process (``buildyard start --nodaemon`` / ``buildbot start
--nodaemon``) on SQLite from the same master.cfg text, one local worker over
``msgpack_experimental_v7`` (buildyard's master with buildyard-worker and with the stock
buildbot-worker 4.3.0; Buildbot with the stock worker), a build forced through the REST API whose
step waits (its first run only). Once the step runs, the master gets SIGKILL, and is started
again. Measured from that second start (process spawned) to: the master saying it runs (its log
line), and the build request's second build appearing in the database (polled read-only every
10 ms). The worker keeps running throughout and reconnects by itself. Reports each side's median
and the ratio Buildbot/buildyard (>1 means buildyard is faster). The machine's load is printed:
both sides share its CPUs.

    .venv/bin/python bench/recovery.py --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from buildyard.testing.postgres import free_port
from buildyard.testing.processes import end_popen
from buildyard.testing.stock import buildbot_venv
from buildyard.testing.workers import start_worker

# One text for both masters.
CONFIG = """\
import os

from buildbot.plugins import *

c = BuildmasterConfig = {}
c['workers'] = [worker.Worker('w1', 'pw')]
c['protocols'] = {
    'msgpack_experimental_v7': {'port': int(os.environ['BENCH_WORKER_PORT']),
                                'interface': '127.0.0.1'},
}
mark = os.environ['BENCH_MARK']
wait = util.BuildFactory([steps.ShellCommand(
    command=['sh', '-c', 'if [ -f %s ]; then exit 0; fi; touch %s; sleep 600' % (mark, mark)],
)])
c['builders'] = [util.BuilderConfig(name='wait', workernames=['w1'], factory=wait)]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['wait'])]
c['www'] = {'port': 'tcp:%s:interface=127.0.0.1' % os.environ['BENCH_WWW_PORT']}
c['db'] = {'db_url': 'sqlite:///state.sqlite'}
c['buildbotNetUsageData'] = None
"""


def _wait(done: Callable[[], bool], timeout: float, what: str, interval: float = 0.01) -> float:
    """Poll until ``done()``; the monotonic time it first held."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {what} after {timeout}s")
        time.sleep(interval)
    return time.monotonic()


class Side:
    """One master kind with its worker, in its own directory."""

    def __init__(self, kind: str, worker_kind: str, root: Path) -> None:
        self.kind, self.worker_kind = kind, worker_kind
        self.root = root
        self.basedir = root / "master"
        self.mark = root / "mark"
        self.env = {
            **os.environ,
            "BENCH_WORKER_PORT": str(free_port()),
            "BENCH_WWW_PORT": str(free_port()),
            "BENCH_MARK": str(self.mark),
        }
        if kind == "buildbot":
            exe = [str(buildbot_venv() / "bin" / "buildbot")]
            self.log, self.marker = self.basedir / "twistd.log", "BuildMaster is running"
        else:
            exe = [sys.executable, "-m", "buildyard.cli.main"]
            self.log, self.marker = self.basedir / "out.log", "master_started"
        self.start_cmd = [*exe, "start", "--nodaemon", str(self.basedir)]
        root.mkdir(parents=True)
        subprocess.run(
            [*exe, "create-master", "-q", str(self.basedir)],
            check=True,
            capture_output=True,
            timeout=300,
            env=self.env,
        )
        (self.basedir / "master.cfg").write_text(CONFIG)
        self.master: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None

    @property
    def label(self) -> str:
        return f"{self.kind} master, {self.worker_kind} worker"

    def _log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def spawn(self) -> tuple[float, float]:
        """Start the master; (spawn time, time its log says it runs)."""
        already = self._log_text().count(self.marker)
        with (self.basedir / "out.log").open("ab") as out:
            t0 = time.monotonic()
            self.master = subprocess.Popen(
                self.start_cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=self.env,
            )
        master = self.master

        def running() -> bool:
            if master.poll() is not None:
                raise RuntimeError(f"{self.kind} exited: {self._log_text()[-3000:]}")
            return self._log_text().count(self.marker) > already

        return t0, _wait(running, 300, f"{self.kind} start")

    def kill(self) -> None:
        assert self.master is not None
        os.killpg(self.master.pid, signal.SIGKILL)
        self.master.wait()

    def query(self, sql: str, *args: object) -> list[tuple[Any, ...]]:
        uri = f"file:{self.basedir / 'state.sqlite'}?mode=ro"
        db = sqlite3.connect(uri, uri=True, timeout=10)
        try:
            return db.execute(sql, args).fetchall()
        finally:
            db.close()

    def force(self) -> int:
        api = f"http://127.0.0.1:{self.env['BENCH_WWW_PORT']}/api/v2"
        with urllib.request.urlopen(f"{api}/builders", timeout=30) as resp:
            [builder] = json.loads(resp.read())["builders"]
        builderid = int(builder["builderid"])
        body = {"jsonrpc": "2.0", "method": "force", "id": 1, "params": {"builderid": builderid}}
        request = urllib.request.Request(
            f"{api}/forceschedulers/force",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as resp:
            reply = json.loads(resp.read())
        _bsid, brids = reply["result"]
        return int(brids[str(builderid)])

    def round(self) -> tuple[float, float]:
        """One crash and recovery: (start -> running, start -> rerun build) in seconds."""
        self.mark.unlink(missing_ok=True)
        self.spawn()
        if self.worker is None:
            self.worker = start_worker(
                self.worker_kind, self.root / "w1", int(self.env["BENCH_WORKER_PORT"]), "w1", "pw"
            )
        _wait(
            lambda: self.query("SELECT count(*) FROM connected_workers")[0][0] == 1,
            120,
            "worker",
            0.05,
        )
        brid = self.force()
        _wait(self.mark.exists, 120, "first build", 0.05)
        self.kill()
        builds = "SELECT count(*) FROM builds WHERE buildrequestid = ?"
        t0, ready = self.spawn()
        rerun = _wait(lambda: self.query(builds, brid)[0][0] >= 2, 120, "rerun")
        done = "SELECT complete FROM buildrequests WHERE id = ?"
        _wait(lambda: self.query(done, brid)[0][0] == 1, 120, "rerun's end", 0.05)
        assert self.master is not None
        end_popen(self.master, timeout=60)
        return ready - t0, rerun - t0

    def stop(self) -> None:
        for proc in (self.worker, self.master):
            if proc is not None:
                end_popen(proc, timeout=60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the directories (and logs)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="buildyard-bench-recovery-"))
    sides = [
        Side("buildyard", "buildyard", root / "ours"),
        Side("buildyard", "stock", root / "ours-stock-worker"),
        Side("buildbot", "stock", root / "buildbot"),
    ]
    results: dict[str, list[tuple[float, float]]] = {s.label: [] for s in sides}
    try:
        for i in range(args.rounds):
            for side in sides if i % 2 == 0 else reversed(sides):
                results[side.label].append(side.round())
    finally:
        for side in sides:
            side.stop()
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(f"rounds={args.rounds} load average={os.getloadavg()[0]:.2f} cpus={os.cpu_count()}")
    medians = {}
    for label, figures in results.items():
        ready = statistics.median(f[0] for f in figures)
        rerun = statistics.median(f[1] for f in figures)
        gap = statistics.median(f[1] - f[0] for f in figures)
        medians[label] = rerun
        print(
            f"{label:36s} start->running {ready:.2f}s; start->rerun build {rerun:.2f}s "
            f"{[round(f[1], 2) for f in figures]}; running->rerun {gap:.2f}s "
            f"{[round(f[1] - f[0], 2) for f in figures]} (medians)"
        )
    theirs = medians["buildbot master, stock worker"]
    for label in ("buildyard master, buildyard worker", "buildyard master, stock worker"):
        print(f"ratio buildbot/buildyard ({label}): {theirs / medians[label]:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
