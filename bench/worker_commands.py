"""Command round trips and stdout throughput over one worker connection.

Three masters and workers side by side in one run: the buildyard master (in this process) with
buildyard-worker and with the stock buildbot-worker 4.3.0, and the stock Buildbot 4.3.0 master
(a subprocess in its own venv, ``buildyard.testing.stock.buildbot_venv()``) with the stock
buildbot-worker; every worker connects over ``msgpack_experimental_v7``.

* round trips per second: ``shell true`` started and waited for (rc), one after another;
* stdout throughput in MB/s: one command printing ``--megabytes`` of 100-byte lines.

Buildbot runs remote commands only inside build steps, so its figures come from one custom
``BuildStep`` in a generated master.cfg: a ``Periodic`` scheduler requests the build when the
master starts, the build begins once the worker is attached, and the step times
``RemoteShellCommand`` round trips, then the big command with a ``stdio`` log attached (its
output goes into the log in the master's SQLite database, as a real step's would; the buildyard
master counts the bytes and drops them), and writes both figures to a JSON file. Buildbot is
left as shipped: its msgpack server protocol has ``debug = True`` and so logs every message,
output included, to twistd.log.

    .venv/bin/python bench/worker_commands.py --round-trips 300 --megabytes 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from buildyard.master.config.loader import load_master_config
from buildyard.master.db import migrate
from buildyard.master.master import BuildMaster
from buildyard.master.workers.connection import Update
from buildyard.testing.postgres import free_port
from buildyard.testing.processes import end_popen, eventually
from buildyard.testing.stock import buildbot_venv
from buildyard.testing.workers import start_worker

CONFIG = """\
from buildyard.plugins import *
c = BuildmasterConfig = {{}}
c['workers'] = [worker.Worker("w1", "pw")]
c['protocols'] = {{'msgpack_experimental_v7': {{'port': {port}, 'interface': '127.0.0.1'}}}}
c['builders'] = [util.BuilderConfig(name="b", workernames=["w1"], factory=util.BuildFactory())]
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
"""

# The stock Buildbot 4.3.0 master.cfg, after a preamble setting PORT, ROUND_TRIPS, BIG (the big
# command), LINES and RESULT (where the step writes its figures). The step uses Buildbot's public
# API; the loopback shim for the listener is the only private touch.
BUILDBOT_CONFIG = """\
import json
import os
import time
import traceback

from twisted.internet import defer

from buildbot.plugins import schedulers, util, worker
from buildbot.process import buildstep, remotecommand
from buildbot.process.results import FAILURE, SUCCESS
from buildbot.worker.protocols.manager import msgpack as msgpack_manager

# Buildbot's msgpack listener takes only a port number and binds every interface; keep it on
# the loopback interface (the one non-public touch here, and not on any measured path).
_dispatcher_init = msgpack_manager.Dispatcher.__init__


def _loopback_dispatcher_init(self, config_portstr, portstr):
    _dispatcher_init(self, config_portstr, portstr)
    self.portstr = portstr + ':interface=127.0.0.1'


msgpack_manager.Dispatcher.__init__ = _loopback_dispatcher_init


class CountingLog:
    # the step's stdio log, counting the stdout characters that reach it

    def __init__(self, log):
        self.log = log
        self.stdout_chars = 0

    def add_stdout_lines(self, text):
        self.stdout_chars += len(text)
        return self.log.add_stdout_lines(text)

    def __getattr__(self, name):
        return getattr(self.log, name)


def write_result(result):
    with open(RESULT + '.tmp', 'w') as f:
        json.dump(result, f)
    os.rename(RESULT + '.tmp', RESULT)


class Bench(buildstep.BuildStep):
    @defer.inlineCallbacks
    def run(self):
        try:
            t0 = time.perf_counter()
            for _ in range(ROUND_TRIPS):
                cmd = remotecommand.RemoteShellCommand('build', ['true'], logEnviron=False)
                yield self.runCommand(cmd)
                assert cmd.rc == 0, cmd.rc
            per_second = ROUND_TRIPS / (time.perf_counter() - t0)

            stdio = yield self.addLog('stdio')
            counting = CountingLog(stdio)
            cmd = remotecommand.RemoteShellCommand('build', BIG, logEnviron=False)
            cmd.useLog(counting, False, 'stdio')
            t0 = time.perf_counter()
            yield self.runCommand(cmd)
            elapsed = time.perf_counter() - t0
            yield stdio.finish()
            assert cmd.rc == 0, cmd.rc
            assert counting.stdout_chars == LINES * 100, counting.stdout_chars
            write_result({
                'round_trips_per_second': per_second,
                'stdout_bytes': counting.stdout_chars,
                'stdout_seconds': elapsed,
            })
            return SUCCESS
        except Exception:
            write_result({'error': traceback.format_exc()})
            return FAILURE


c = BuildmasterConfig = {}
c['workers'] = [worker.Worker('w1', 'pw')]
c['protocols'] = {'msgpack_experimental_v7': {'port': PORT}}
c['builders'] = [
    util.BuilderConfig(name='b', workernames=['w1'], factory=util.BuildFactory([Bench()]))
]
# "ASAP" on a fresh database, then not again; the build waits for the worker to attach
c['schedulers'] = [
    schedulers.Periodic(name='bench', builderNames=['b'], periodicBuildTimer=10**9)
]
c['db'] = {'db_url': 'sqlite:///state.sqlite'}
c['buildbotNetUsageData'] = None
"""


def big_command(megabytes: int) -> tuple[list[str], int]:
    """The command printing ``megabytes`` MB of 100-byte lines, and its number of lines."""
    lines = megabytes * 10_000
    return ["sh", "-c", f"yes {'a' * 99} | head -n {lines}"], lines  # 99 + newline


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

        command, lines = big_command(megabytes)
        big = {"workdir": str(workdir / "b"), "command": command, "logEnviron": False}
        t0 = time.perf_counter()
        result = await conn.run_command("shell", big, on_update=count, keep_output=False)
        elapsed = time.perf_counter() - t0
        assert result.rc == 0, result.rc
        assert received == lines * 100, received  # every byte arrived
        return per_second, received / 1e6 / elapsed
    finally:
        end_popen(proc)
        await master.stop()


def _wait_for(
    done: Callable[[], bool], procs: list[subprocess.Popen[bytes]], log: Path, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"pid {proc.pid} exited with {proc.returncode}; {_tail(log)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up after {timeout}s; {_tail(log)}")
        time.sleep(0.1)


def _tail(log: Path) -> str:
    text = log.read_text(errors="replace") if log.exists() else ""
    return f"end of {log}:\n{text[-3000:]}"


def measure_buildbot(root: Path, round_trips: int, megabytes: int) -> tuple[float, float]:
    """The Buildbot 4.3.0 master (a subprocess) with the stock buildbot-worker."""
    buildbot = str(buildbot_venv() / "bin" / "buildbot")
    basedir = root / "master"
    subprocess.run(
        [buildbot, "create-master", "-q", str(basedir)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    port = free_port()
    result = root / "result.json"
    command, lines = big_command(megabytes)
    preamble = (
        f"PORT = {port}\nROUND_TRIPS = {round_trips}\nBIG = {command!r}\nLINES = {lines}\n"
        f"RESULT = {str(result)!r}\n"
    )
    (basedir / "master.cfg").write_text(preamble + BUILDBOT_CONFIG)
    log = basedir / "twistd.log"
    with (basedir / "out.log").open("ab") as out:
        master = subprocess.Popen(
            [buildbot, "start", "--nodaemon", str(basedir)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    procs = [master]
    try:
        _wait_for(
            lambda: log.exists() and "BuildMaster is running" in log.read_text(errors="replace"),
            procs,
            log,
            timeout=300,
        )
        procs.append(start_worker("stock", root / "worker", port, "w1", "pw"))
        _wait_for(result.exists, procs, log, timeout=600)
    finally:
        for proc in reversed(procs):
            end_popen(proc)
    figures = json.loads(result.read_text())
    if "error" in figures:
        raise RuntimeError(f"the Buildbot step failed:\n{figures['error']}")
    assert figures["stdout_bytes"] == lines * 100, figures  # every byte reached the log
    return (
        float(figures["round_trips_per_second"]),
        figures["stdout_bytes"] / 1e6 / figures["stdout_seconds"],
    )


COMBINATIONS = {
    "buildyard": "buildyard master + buildyard-worker",
    "stock": "buildyard master + stock buildbot-worker",
    "buildbot": "Buildbot 4.3.0 master + stock buildbot-worker",
}


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--round-trips", type=int, default=300)
    parser.add_argument("--megabytes", type=int, default=200)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    results: dict[str, tuple[float, float]] = {}
    for kind in COMBINATIONS:
        root = Path(tempfile.mkdtemp(prefix="buildyard-bench-"))
        try:
            if kind == "buildbot":
                results[kind] = await asyncio.to_thread(
                    measure_buildbot, root, args.round_trips, args.megabytes
                )
            else:
                results[kind] = await measure(kind, root, args.round_trips, args.megabytes)
        finally:
            shutil.rmtree(root, ignore_errors=True)
    theirs = results["buildbot"]
    rows = [
        (COMBINATIONS[kind], f"{rps:.1f}", f"{mbps:.1f}") for kind, (rps, mbps) in results.items()
    ]
    for kind in ("buildyard", "stock"):
        ours = results[kind]
        rows.append(
            (
                f"ratio to Buildbot: {COMBINATIONS[kind]}",
                f"{ours[0] / theirs[0]:.2f}x",
                f"{ours[1] / theirs[1]:.2f}x",
            )
        )
    ours, stock = results["buildyard"], results["stock"]
    rows.append(
        (
            "ratio buildyard-worker / stock worker (buildyard master)",
            f"{ours[0] / stock[0]:.2f}x",
            f"{ours[1] / stock[1]:.2f}x",
        )
    )
    width = max(len(label) for label, _, _ in rows)
    print(f"round_trips={args.round_trips} megabytes={args.megabytes}")
    print(f"{'master + worker':{width}s}  round trips/s  stdout MB/s")
    for label, rps_text, mbps_text in rows:
        print(f"{label:{width}s}  {rps_text:>13s}  {mbps_text:>11s}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
