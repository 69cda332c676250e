"""Whole builds, buildyard vs stock Buildbot 4.3.0 side by side: throughput, CPU, latency, logs.

Each master runs as its own process (``buildyard start --nodaemon``, ``buildbot start
--nodaemon``) from the SAME master.cfg text (Buildbot's vocabulary; the ports come from the
environment), on SQLite, with 4 local workers over ``msgpack_experimental_v7``: the buildyard
master with buildyard-worker and with the stock buildbot-worker 4.3.0, Buildbot with the stock
worker. ``--combinations stock-pb,buildbot-pb`` runs both masters with the stock worker created
with its defaults, on PB, and compares those two. The masters run one after another, never
together.

Builds are requested as a user would, through each master's REST API: JSON-RPC ``force`` posted
to ``/api/v2/forceschedulers/force`` (Buildbot needs buildbot-www for it, which scripts/setup.sh
installs in its venv); ``collapseRequests`` is off, so every request makes its own build. A
build is finished when its build request is marked complete in the master's database, which
this process polls read-only every ``--poll-ms`` (both schemas store times in whole seconds, too
coarse for latency). Master CPU is utime+stime from ``/proc/<pid>/stat`` before and after. The
masters, their workers and this process share the machine's CPUs: mind its load (printed).

* 500 one-step builds (``--builds``) requested at once (``--in-flight`` requests outstanding)
  across 4 workers: builds/s (first request to last finish), master CPU seconds per build,
  p50/p95 latency from request to finish;
* one build at a time (``--sequential`` builds one after another): its latency alone;
* 5-step builds (``--five-step-builds``): builds/s and CPU per build, so per-step overhead;
* a step printing ``--megabytes`` of 100-byte lines: the build's wall time and master CPU,
  against the command's own time (run here, its output read through a pipe).

Buildbot is left as shipped: its msgpack server protocol has ``debug = True`` and so logs every
message, output included, to twistd.log (``--quiet-buildbot`` turns that off). Its msgpack
listener takes only a port and binds every interface; a line added to its buildbot.tac (not the
master.cfg) keeps it on 127.0.0.1. ``--py-spy PATH`` samples the buildyard master during the
one-step batch and the big step and prints where its event loop spends its time.

    .venv/bin/python bench/builds.py --builds 500 --five-step-builds 200 --megabytes 50
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from buildyard.testing.postgres import free_port
from buildyard.testing.processes import end_popen
from buildyard.testing.stock import buildbot_venv
from buildyard.testing.workers import STOCK_PB, start_worker

WORKERS = 4

# One text for both masters.
CONFIG = """\
import os

from buildbot.plugins import *

WORKER_PORT = int(os.environ['BENCH_WORKER_PORT'])
PB_PORT = int(os.environ['BENCH_PB_PORT'])
WWW_PORT = int(os.environ['BENCH_WWW_PORT'])
BIG_LINES = int(os.environ['BENCH_BIG_LINES'])
WORKERS = ['w%d' % i for i in range(int(os.environ['BENCH_WORKERS']))]

c = BuildmasterConfig = {}
c['workers'] = [worker.Worker(name, 'pw') for name in WORKERS]
c['protocols'] = {
    'msgpack_experimental_v7': {'port': WORKER_PORT, 'interface': '127.0.0.1'},
    'pb': {'port': 'tcp:%d:interface=127.0.0.1' % PB_PORT},
}
one = util.BuildFactory([steps.ShellCommand(command=['true'])])
five = util.BuildFactory([steps.ShellCommand(name='s%d' % i, command=['true']) for i in range(5)])
big = util.BuildFactory([
    steps.ShellCommand(command=['sh', '-c', 'yes %s | head -n %d' % ('a' * 99, BIG_LINES)]),
])
c['builders'] = [
    util.BuilderConfig(name='one', workernames=WORKERS, factory=one),
    util.BuilderConfig(name='five', workernames=WORKERS, factory=five),
    util.BuilderConfig(name='big', workernames=WORKERS, factory=big),
]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['one', 'five', 'big'])]
c['www'] = {'port': 'tcp:%d:interface=127.0.0.1' % WWW_PORT}
c['db'] = {'db_url': 'sqlite:///state.sqlite'}
c['collapseRequests'] = False  # every request gets its own build
c['logCompressionMethod'] = 'gz'
c['buildbotNetUsageData'] = None
"""

# Appended to Buildbot's buildbot.tac: its msgpack listener takes only a port number and binds
# every interface; keep it on the loopback interface (not on any measured path).
BUILDBOT_TAC_LOOPBACK = """
from buildbot.worker.protocols.manager import msgpack as _bench_msgpack

_bench_dispatcher_init = _bench_msgpack.Dispatcher.__init__


def _bench_loopback_init(self, config_portstr, portstr):
    _bench_dispatcher_init(self, config_portstr, portstr)
    self.portstr = portstr + ':interface=127.0.0.1'


_bench_msgpack.Dispatcher.__init__ = _bench_loopback_init
"""
BUILDBOT_TAC_QUIET = "_bench_msgpack.BuildbotWebSocketServerProtocol.debug = False\n"

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def big_command(megabytes: int) -> tuple[list[str], int]:
    """The command printing ``megabytes`` MB of 100-byte lines (as master.cfg spells it)."""
    lines = megabytes * 10_000
    return ["sh", "-c", f"yes {'a' * 99} | head -n {lines}"], lines


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """utime + stime of ``pid`` (its own, not its children's), or of its thread ``tid``."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    stat = Path(path).read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def thread_cpu(pid: int) -> dict[int, float]:
    """utime + stime of each thread of ``pid``, by thread id."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out[int(task.name)] = cpu_seconds(pid, int(task.name))
        except (FileNotFoundError, ProcessLookupError):
            continue  # a thread that ended meanwhile
    return out


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def _tail(log: Path) -> str:
    text = log.read_text(errors="replace") if log.exists() else ""
    return f"end of {log}:\n{text[-3000:]}"


@dataclasses.dataclass
class Master:
    """A running master (either kind) with its workers."""

    kind: str  # "buildyard" or "buildbot"
    basedir: Path
    proc: subprocess.Popen[bytes]
    log: Path
    www: str
    workers: list[subprocess.Popen[bytes]] = dataclasses.field(default_factory=list)
    builderids: dict[str, int] = dataclasses.field(default_factory=dict)
    db: sqlite3.Connection | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def check_alive(self) -> None:
        for proc in [self.proc, *self.workers]:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"pid {proc.pid} exited with {proc.returncode}; {_tail(self.log)}"
                )

    def query(self, sql: str, *args: object) -> list[tuple[Any, ...]]:
        if self.db is None:
            uri = f"file:{self.basedir / 'state.sqlite'}?mode=ro"
            self.db = sqlite3.connect(
                uri, uri=True, isolation_level=None, timeout=10, check_same_thread=False
            )
        return self.db.execute(sql, args).fetchall()

    def workers_cpu(self) -> float:
        return sum(cpu_seconds(w.pid) for w in self.workers)

    def stop(self) -> None:
        if self.db is not None:
            self.db.close()
        for proc in [*reversed(self.workers), self.proc]:
            end_popen(proc, timeout=60)


def _wait_for(done: Callable[[], bool], master: Master, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        master.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {what} after {timeout}s; {_tail(master.log)}")
        time.sleep(0.05)


def start_idle_master(
    kind: str, root: Path, big_lines: int, *, quiet_buildbot: bool
) -> tuple[Master, tuple[int, int]]:
    """A master of ``kind`` started from :data:`CONFIG`, with no worker running yet; the ports
    its workers are to connect to (PB, msgpack)."""
    basedir = root / "master"
    worker_port, www_port, pb_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "BENCH_WORKER_PORT": str(worker_port),
        "BENCH_PB_PORT": str(pb_port),
        "BENCH_WWW_PORT": str(www_port),
        "BENCH_BIG_LINES": str(big_lines),
        "BENCH_WORKERS": str(WORKERS),
    }
    if kind == "buildbot":
        buildbot = str(buildbot_venv() / "bin" / "buildbot")
        create = [buildbot, "create-master", "-q", str(basedir)]
        start = [buildbot, "start", "--nodaemon", str(basedir)]
        log, marker = basedir / "twistd.log", "BuildMaster is running"
    else:
        module = [sys.executable, "-m", "buildyard.cli.main"]
        create = [*module, "create-master", "-q", str(basedir)]
        start = [*module, "start", "--nodaemon", str(basedir)]
        log, marker = basedir / "out.log", "master_started"
    subprocess.run(create, check=True, capture_output=True, timeout=300, env=env)
    (basedir / "master.cfg").write_text(CONFIG)
    if kind == "buildbot":
        with (basedir / "buildbot.tac").open("a") as tac:
            tac.write(BUILDBOT_TAC_LOOPBACK + (BUILDBOT_TAC_QUIET if quiet_buildbot else ""))
    with (basedir / "out.log").open("ab") as out:
        proc = subprocess.Popen(
            start,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
    master = Master(kind, basedir, proc, log, f"http://127.0.0.1:{www_port}/api/v2")
    try:
        _wait_for(
            lambda: log.exists() and marker in log.read_text(errors="replace"),
            master,
            300,
            "start",
        )
    except BaseException:
        master.stop()
        raise
    return master, (pb_port, worker_port)


def start_master(
    kind: str, worker_kind: str, root: Path, big_lines: int, *, quiet_buildbot: bool
) -> Master:
    """A master of ``kind`` with its :data:`WORKERS` workers of ``worker_kind`` connected."""
    master, (pb_port, worker_port) = start_idle_master(
        kind, root, big_lines, quiet_buildbot=quiet_buildbot
    )
    try:
        to = pb_port if worker_kind == STOCK_PB else worker_port
        for i in range(WORKERS):
            master.workers.append(start_worker(worker_kind, root / f"w{i}", to, f"w{i}", "pw"))
        _wait_for(
            lambda: master.query("SELECT count(*) FROM connected_workers")[0][0] == WORKERS,
            master,
            120,
            "connected workers",
        )
    except BaseException:
        master.stop()
        raise
    return master


@dataclasses.dataclass
class Batch:
    latencies: list[float]  # seconds, request to finish
    wall: float  # first request to last finish
    master_cpu: float
    workers_cpu: float

    @property
    def per_second(self) -> float:
        return len(self.latencies) / self.wall


async def run_batch(
    master: Master,
    http: aiohttp.ClientSession,
    builder: str,
    count: int,
    *,
    in_flight: int,
    poll: float,
    within: float,
) -> Batch:
    """Request ``count`` builds of ``builder`` (``in_flight`` requests outstanding at most) and
    wait until every one has finished successfully."""
    builderid = master.builderids[builder]
    baseline = master.query("SELECT coalesce(max(id), 0) FROM buildrequests")[0][0]
    seen = baseline  # every request up to this one is finished (and in `finished`)
    submitted: dict[int, float] = {}
    finished: dict[int, float] = {}
    failed: list[tuple[int, int]] = []
    requests = iter(range(count))

    async def submitter() -> None:
        for _ in requests:
            t0 = time.perf_counter()
            brid = await force(master, http, builderid)
            submitted[brid] = t0

    cpu0, wcpu0 = cpu_seconds(master.pid), master.workers_cpu()
    t_start = time.perf_counter()
    tasks = [asyncio.create_task(submitter()) for _ in range(min(in_flight, count))]
    deadline = time.monotonic() + within
    try:
        while len(submitted) < count or not submitted.keys() <= finished.keys():
            for task in tasks:
                if task.done() and task.exception() is not None:
                    raise RuntimeError("a force request failed") from task.exception()
            rows = master.query(
                "SELECT id, results FROM buildrequests WHERE complete = 1 AND id > ?", seen
            )
            now = time.perf_counter()
            for brid, results in rows:
                if brid not in finished:
                    finished[brid] = now
                    if results != 0:
                        failed.append((brid, results))
            # the next poll reads past the requests finished without a gap (not the whole
            # batch's again: on 300 builds that cost this process 1-3 ms of CPU per build,
            # taken from the masters and workers on a machine they keep busy)
            while seen + 1 in finished:
                seen += 1
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{builder}: {len(finished)}/{count} builds finished after {within}s"
                )
            master.check_alive()
            await asyncio.sleep(poll)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    t_end = max(finished[brid] for brid in submitted)
    cpu1, wcpu1 = cpu_seconds(master.pid), master.workers_cpu()
    if failed:
        raise RuntimeError(f"{builder}: {len(failed)} builds did not succeed: {failed[:5]}")
    return Batch(
        latencies=[finished[brid] - t0 for brid, t0 in submitted.items()],
        wall=t_end - t_start,
        master_cpu=cpu1 - cpu0,
        workers_cpu=wcpu1 - wcpu0,
    )


async def force(master: Master, http: aiohttp.ClientSession, builderid: int) -> int:
    """POST the JSON-RPC ``force``; the build request's id."""
    body = {
        "jsonrpc": "2.0",
        "method": "force",
        "id": 1,
        "params": {"builderid": builderid, "reason": "bench"},
    }
    async with http.post(f"{master.www}/forceschedulers/force", json=body) as resp:
        reply = await resp.json(content_type=None)
    if "result" not in reply:
        raise RuntimeError(f"{master.kind}: force failed ({resp.status}): {reply}")
    _bsid, brids = reply["result"]
    return int(brids[str(builderid)])


async def builder_ids(master: Master, http: aiohttp.ClientSession) -> dict[str, int]:
    headers = {"Accept": "application/json"}
    async with http.get(f"{master.www}/builders", headers=headers) as resp:
        text = await resp.text()
    return {b["name"]: int(b["builderid"]) for b in json.loads(text)["builders"]}


def command_seconds(command: list[str], rounds: int = 3) -> float:
    """The big command's own time, its output read through a pipe (the best of ``rounds``, as
    for the big builds)."""
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        proc = subprocess.run(command, stdout=subprocess.PIPE, check=True, timeout=300)
        times.append(time.perf_counter() - t0)
        assert proc.stdout
    return min(times)


class Sampler:
    """py-spy sampling one process into collapsed stacks, ended by SIGINT."""

    def __init__(self, exe: str, pid: int, out: Path) -> None:
        self.out = out
        self.pid = pid
        self.threads0 = thread_cpu(pid)
        # every thread, idle samples left out (py-spy's default); hot_spots keeps the main one
        flags = ["--format", "raw", "--rate", "200", "--threads", "--nonblocking"]
        self.proc = subprocess.Popen(
            [exe, "record", "--pid", str(pid), "--output", str(out), *flags],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                end_popen(self.proc)
        threads1 = thread_cpu(self.pid)
        main = threads1.get(self.pid, 0.0) - self.threads0.get(self.pid, 0.0)
        others = sum(t - self.threads0.get(tid, 0.0) for tid, t in threads1.items())
        others -= main
        split = (
            f"master CPU by thread: event loop (main) {main:.2f}s, "
            f"other threads (the database's) {others:.2f}s"
        )
        spots = hot_spots(self.out) if self.out.exists() else "py-spy wrote nothing"
        return f"{split}\n{spots}"


def _where(frame: str) -> str:
    """The package (or stdlib module) of a py-spy frame, ``name (path/file.py:line)``."""
    path = frame.rsplit("(", 1)[-1].rstrip(")")
    if "sqlalchemy" in frame and not path.startswith("sqlalchemy"):
        return "sqlalchemy"  # its generated wrappers: "<... wrapper for sqlalchemy...>"
    return path.split("/", 1)[0] if "/" in path else path.split(":", 1)[0]


def _function(frame: str) -> str:
    """A py-spy frame without its line number."""
    return frame.rsplit(":", 1)[0] + ")" if frame.endswith(")") and ":" in frame else frame


def _unattributed(root: str) -> str:
    return {
        "<frozen runpy>": "(no buildyard frame: the event loop itself)",
        "sqlalchemy": "(no buildyard frame: SQLAlchemy running a statement, in a greenlet)",
    }.get(root, f"(no buildyard frame: {root})")


def hot_spots(collapsed: Path, top: int = 12) -> str:
    """Where the master's main thread (the event loop) was seen running: by package, by
    function (own time), and by the deepest buildyard function on the stack.

    Samples that wait in ``select`` were woken but not yet back on a CPU (py-spy counts a
    runnable thread as busy), so they are shown apart and left out of the shares. SQLAlchemy
    runs statements in greenlets, whose stacks start at SQLAlchemy, not at our caller.
    """
    by_package: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    ours: collections.Counter[str] = collections.Counter()
    waiting = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        frames = [f.strip() for f in stack.split(";") if f.strip()]
        if not count_text.isdigit() or not frames or "MainThread" not in frames[0]:
            continue
        count, frames = int(count_text), frames[1:]
        if not frames:
            continue
        if frames[-1].startswith("EpollSelector.select"):
            waiting += count
            continue
        by_package[_where(frames[-1])] += count
        own[_function(frames[-1])] += count
        mine = [f for f in frames if "(buildyard/" in f and "(buildyard/cli/" not in f]
        ours[_function(mine[-1]) if mine else _unattributed(_where(frames[0]))] += count
    busy = sum(by_package.values())
    if not busy:
        return "py-spy saw the main thread idle"

    def table(counter: collections.Counter[str]) -> list[str]:
        return [f"  {100 * n / busy:5.1f}%  {name}" for name, n in counter.most_common(top)]

    return "\n".join(
        [
            f"main thread: {busy} samples running, {waiting} woken in select (left out)",
            "by package of the running function:",
            *table(by_package),
            "by function (own time):",
            *table(own),
            "by the deepest buildyard function on the stack:",
            *table(ours),
        ]
    )


@dataclasses.dataclass
class Figures:
    one: Batch
    alone: Batch
    five: Batch
    big: Batch
    load: tuple[float, float]  # load average (1 min) before and after
    profiles: list[tuple[str, str]]


async def measure(kind: str, worker_kind: str, root: Path, args: argparse.Namespace) -> Figures:
    _command, lines = big_command(args.megabytes)
    load0 = os.getloadavg()[0]
    master = await asyncio.to_thread(
        start_master, kind, worker_kind, root, lines, quiet_buildbot=args.quiet_buildbot
    )
    poll = args.poll_ms / 1000
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
            master.builderids = await builder_ids(master, http)

            async def batch(builder: str, count: int, in_flight: int, per_build: float) -> Batch:
                return await run_batch(
                    master,
                    http,
                    builder,
                    count,
                    in_flight=in_flight,
                    poll=poll,
                    within=60 + count * per_build,
                )

            # warm-up: every worker runs each small builder at least once
            await batch("one", 2 * WORKERS, WORKERS, 10)
            await batch("five", 2 * WORKERS, WORKERS, 10)

            alone = [await batch("one", 1, 1, 30) for _ in range(args.sequential)]
            profiles: list[tuple[str, str]] = []

            def sample() -> Sampler | None:
                if not args.py_spy or kind != "buildyard":
                    return None
                return Sampler(args.py_spy, master.pid, root / f"py-spy-{len(profiles)}.txt")

            def sampled(what: str, sampler: Sampler | None) -> None:
                if sampler is not None:
                    profiles.append((what, sampler.stop()))

            sampler = sample()
            one = await batch("one", args.builds, args.in_flight, 2)
            sampled(f"{args.builds} one-step builds", sampler)
            five = await batch("five", args.five_step_builds, args.in_flight, 5)
            sampler = sample()
            big = [await batch("big", 1, 1, 600) for _ in range(args.big_builds)]
            sampled(f"{args.megabytes} MB step", sampler)
    finally:
        await asyncio.to_thread(master.stop)
    return Figures(
        one=one,
        alone=Batch(
            latencies=[b.latencies[0] for b in alone],
            wall=sum(b.wall for b in alone),
            master_cpu=sum(b.master_cpu for b in alone),
            workers_cpu=sum(b.workers_cpu for b in alone),
        ),
        five=five,
        big=min(big, key=lambda b: b.wall),
        load=(load0, os.getloadavg()[0]),
        profiles=profiles,
    )


COMBINATIONS = {
    "buildyard": ("buildyard", "buildyard", "buildyard + buildyard-worker"),
    "stock": ("buildyard", "stock", "buildyard + stock worker"),
    "buildbot": ("buildbot", "stock", "Buildbot 4.3.0 + stock worker"),
    "stock-pb": ("buildyard", STOCK_PB, "buildyard + stock worker on PB"),
    "buildbot-pb": ("buildbot", STOCK_PB, "Buildbot 4.3.0 + stock worker on PB"),
}
# what each combination is compared with
BASELINE = {"stock-pb": "buildbot-pb"}


@dataclasses.dataclass(frozen=True)
class Row:
    label: str
    value: Callable[[Figures], float]
    unit: str
    better: str  # "higher" or "lower"
    target: float | None = None  # for the ratio ours/Buildbot


def rows(args: argparse.Namespace, own_time: float) -> list[Row]:
    ms = 1000.0
    return [
        Row(
            f"{args.builds} one-step builds: builds/s",
            lambda f: f.one.per_second,
            "",
            "higher",
            10.0,
        ),
        Row(
            "  master CPU per build",
            lambda f: f.one.master_cpu / len(f.one.latencies) * ms,
            "ms",
            "lower",
            1 / 20,
        ),
        Row("  latency p50", lambda f: statistics.median(f.one.latencies) * ms, "ms", "lower"),
        Row("  latency p95", lambda f: percentile(f.one.latencies, 95) * ms, "ms", "lower"),
        Row(
            "  4 workers' CPU per build",
            lambda f: f.one.workers_cpu / len(f.one.latencies) * ms,
            "ms",
            "lower",
        ),
        Row(
            f"one build alone ({args.sequential} in a row): p50",
            lambda f: statistics.median(f.alone.latencies) * ms,
            "ms",
            "lower",
            1 / 10,
        ),
        Row(
            "  p95",
            lambda f: percentile(f.alone.latencies, 95) * ms,
            "ms",
            "lower",
        ),
        Row(
            "  master CPU per build",
            lambda f: f.alone.master_cpu / len(f.alone.latencies) * ms,
            "ms",
            "lower",
        ),
        Row(
            f"{args.five_step_builds} five-step builds: builds/s",
            lambda f: f.five.per_second,
            "",
            "higher",
        ),
        Row(
            "  master CPU per build",
            lambda f: f.five.master_cpu / len(f.five.latencies) * ms,
            "ms",
            "lower",
        ),
        Row(
            "  master CPU per extra step",
            lambda f: (
                (
                    f.five.master_cpu / len(f.five.latencies)
                    - f.one.master_cpu / len(f.one.latencies)
                )
                / 4
                * ms
            ),
            "ms",
            "lower",
        ),
        Row(
            f"{args.megabytes} MB step: build wall time",
            lambda f: f.big.wall,
            "s",
            "lower",
        ),
        Row(
            f"  / the command's own {own_time:.3f}s",
            lambda f: f.big.wall / own_time,
            "x",
            "lower",
        ),
        Row("  master CPU", lambda f: f.big.master_cpu, "s", "lower"),
    ]


def render(args: argparse.Namespace, results: dict[str, Figures], own_time: float) -> list[str]:
    kinds = list(results)
    ours = [k for k in kinds if COMBINATIONS[k][0] != "buildbot"]
    compared = [k for k in ours if BASELINE.get(k, "buildbot") in results]
    header = ["metric", *[COMBINATIONS[k][2] for k in kinds]]
    header += [f"{COMBINATIONS[k][2].split(' + ')[1]}: ours/Buildbot" for k in compared]
    table: list[list[str]] = [header]
    verdicts: list[str] = []
    for row in rows(args, own_time):
        values = {k: row.value(f) for k, f in results.items()}
        cells = [row.label, *[f"{values[k]:.3f}{row.unit}" for k in kinds]]
        if compared:
            for k in compared:
                theirs = values[BASELINE.get(k, "buildbot")]
                cells.append(f"{values[k] / theirs:.3f}" if theirs else "-")
                if row.target is not None and theirs:
                    ratio = values[k] / theirs
                    met = ratio >= row.target if row.better == "higher" else ratio <= row.target
                    sign = ">=" if row.better == "higher" else "<="
                    verdicts.append(
                        f"{'MET    ' if met else 'NOT MET'}  {row.label.strip()} [{k}]: "
                        f"ours/Buildbot = {ratio:.3f} (target {sign} {row.target:.3f})"
                    )
        table.append(cells)
    for k in ours:
        ratio = results[k].big.wall / own_time
        verdicts.append(
            f"{'MET    ' if ratio <= 3 else 'NOT MET'}  {args.megabytes} MB step [{k}]: "
            f"build wall / command's own time = {ratio:.2f} (target <= 3)"
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    out = [
        "  ".join(
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
            for i, cell in enumerate(line)
        )
        for line in table
    ]
    return [*out, "", *verdicts]


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builds", type=int, default=500, help="one-step builds in the batch")
    parser.add_argument("--in-flight", type=int, default=8, help="force requests outstanding")
    parser.add_argument("--sequential", type=int, default=20, help="builds one at a time")
    parser.add_argument("--five-step-builds", type=int, default=200)
    parser.add_argument("--megabytes", type=int, default=50)
    parser.add_argument("--big-builds", type=int, default=3, help="big builds (the best counts)")
    parser.add_argument("--poll-ms", type=float, default=5.0)
    parser.add_argument(
        "--combinations",
        default=",".join(COMBINATIONS),
        help=f"comma-separated, of {', '.join(COMBINATIONS)}",
    )
    parser.add_argument("--quiet-buildbot", action="store_true", help="no msgpack debug log")
    parser.add_argument("--keep", action="store_true", help="keep the masters' directories")
    parser.add_argument("--py-spy", metavar="PATH", help="profile our master with this py-spy")
    args = parser.parse_args()
    combos = args.combinations.split(",")
    if unknown := set(combos) - set(COMBINATIONS):
        parser.error(f"unknown combinations: {sorted(unknown)}")

    command, _lines = big_command(args.megabytes)
    own_time = command_seconds(command)
    results: dict[str, Figures] = {}
    for combo in combos:
        kind, worker_kind, label = COMBINATIONS[combo]
        root = Path(tempfile.mkdtemp(prefix="buildyard-bench-"))
        try:
            t0 = time.monotonic()
            results[combo] = await measure(kind, worker_kind, root, args)
            figures = results[combo]
            print(
                f"# {label}: {time.monotonic() - t0:.0f}s, load average "
                f"{figures.load[0]:.2f} -> {figures.load[1]:.2f}",
                flush=True,
            )
            for what, profile in figures.profiles:
                print(f"# py-spy of the buildyard master, {what}:")
                print(profile, flush=True)
        finally:
            if args.keep:
                print(f"# kept {root}", flush=True)
            else:
                shutil.rmtree(root, ignore_errors=True)
    print(
        f"builds={args.builds} in_flight={args.in_flight} sequential={args.sequential} "
        f"five_step_builds={args.five_step_builds} megabytes={args.megabytes} "
        f"workers={WORKERS} poll_ms={args.poll_ms} quiet_buildbot={args.quiet_buildbot} "
        f"cpus={os.cpu_count()}"
    )
    for line in render(args, results, own_time):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
