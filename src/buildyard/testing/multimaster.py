"""Several buildyard master processes on one PostgreSQL database, with buildyard-worker
processes spread over them, and the 300-build mix of issue 18 (forced builds, changes posted to
change hooks, Trigger(waitForFinish=True) parents and their children): shared by
tests/e2e/test_multimaster_scale.py and bench/multimaster.py (tests and benchmarks only).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from buildyard.testing.postgres import PostgresServer, free_port
from buildyard.testing.processes import buildyard, end_popen, spawn_master, wait_for
from buildyard.testing.workers import start_worker


@dataclass
class Master:
    basedir: Path
    www: int
    proc: subprocess.Popen[bytes]
    # the port its workers connect to
    port: int = 0

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.www}/api/v2"

    def log(self) -> str:
        return (self.basedir / "out.log").read_text(errors="replace")


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def worker_on(api: str, name: str) -> bool:
    """Whether worker ``name`` is connected to some master, as ``api`` shows it."""
    try:
        workers = get_json(f"{api}/workers?name={name}")["workers"]
    except OSError:
        return False
    return bool(workers) and bool(workers[0]["connected_to"])


async def call(api: str, path: str, method: str, **params: Any) -> tuple[int, Any]:
    """A JSON-RPC control call of the REST API: (HTTP status, decoded answer)."""
    body = {"jsonrpc": "2.0", "method": method, "id": 1, "params": params}
    async with aiohttp.ClientSession() as http, http.post(f"{api}/{path}", json=body) as resp:
        return resp.status, json.loads(await resp.text())


def workers(count: int) -> list[str]:
    return [f"w{i}" for i in range(count)]


CONFIG = """\
from buildyard.plugins import *
c = BuildmasterConfig = {{}}
c['workers'] = [worker.Worker(name, "pw", max_builds=2) for name in {workers!r}]
c['protocols'] = {{'msgpack_experimental_v7': {{'port': {port}, 'interface': '127.0.0.1'}}}}
c['db'] = {{'db_url': {db_url!r}}}
c['www'] = {{'port': 'tcp:{www}:interface=127.0.0.1', 'change_hook_dialects': {{'base': True}}}}
c['multiMaster'] = True
c['masterHouseKeeping'] = {{'interval': 1, 'expireAfter': 4}}
c['collapseRequests'] = False

def quick():
    return util.BuildFactory([
        steps.ShellCommand(name="true", command=["true"]),
        steps.ShellCommand(name="echo", command=["echo", "done"]),
    ])

c['builders'] = [
    util.BuilderConfig(name="quick", workernames={workers!r}, factory=quick()),
    util.BuilderConfig(name="built", workernames={workers!r}, factory=quick()),
    util.BuilderConfig(name="child-a", workernames={workers!r}, factory=quick()),
    util.BuilderConfig(name="child-b", workernames={workers!r}, factory=quick()),
    util.BuilderConfig(name="parent", workernames={parents!r}, factory=util.BuildFactory([
        steps.Trigger(name="trigger", schedulerNames=["trig"], waitForFinish=True),
    ])),
]
c['schedulers'] = [
    schedulers.ForceScheduler(name="force", builderNames=["quick", "parent"]),
    schedulers.SingleBranchScheduler(
        name="changes", change_filter=util.ChangeFilter(branch="main"),
        treeStableTimer=None, builderNames=["built"]),
    schedulers.Triggerable(name="trig", builderNames=["child-a", "child-b"]),
]
{extra}"""


@dataclass(frozen=True)
class Mix:
    """What is submitted: ``forced`` builds of "quick", ``changes`` changes (one "built" each)
    and ``parents`` forced "parent" builds, each triggering two children."""

    forced: int = 120
    changes: int = 60
    parents: int = 40

    @property
    def builds(self) -> int:
        return self.forced + self.changes + self.parents * 3


@dataclass
class Cluster:
    masters: list[Master]
    db_url: str
    builderids: dict[str, int]
    # the worker names, in order; worker i is connected to masters[home[i]]
    workers: list[str]
    home: list[int]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)


def homes(workers: int, masters: int) -> list[int]:
    """Which master each worker connects to: two by two, round the masters (w0, w1 on the
    first; w2, w3 on the second; ...), so the six workers of three masters are two per master
    and one master gets all six."""
    return [(i // 2) % masters for i in range(workers)]


@contextlib.asynccontextmanager
async def cluster(
    postgres: PostgresServer,
    root: Path,
    *,
    masters: int = 3,
    worker_count: int = 6,
    extra: str | Sequence[str] = "",
) -> AsyncIterator[Cluster]:
    """``masters`` master processes with :data:`CONFIG` (plus ``extra``, one text for all or
    one per master) on a new database, then ``worker_count`` workers (created side by side),
    all connected. The parents build only on the even-numbered workers, so the odd ones always
    have room for the children the parents wait for."""
    db_url = postgres.create_database()
    names = workers(worker_count)
    home = homes(worker_count, masters)
    extras = [extra] * masters if isinstance(extra, str) else list(extra)
    procs: list[subprocess.Popen[bytes]] = []
    started: list[Master] = []
    try:
        for i in range(masters):
            basedir = root / f"m{i}"
            basedir.mkdir()
            port, www = free_port(), free_port()
            config = CONFIG.format(
                workers=names,
                parents=names[0::2],
                port=port,
                www=www,
                db_url=db_url,
                extra=extras[i],
            )
            (basedir / "master.cfg").write_text(config)
            if i == 0:
                upgraded = buildyard("upgrade-master", str(basedir))
                assert upgraded.returncode == 0, upgraded.stderr
            proc = spawn_master(basedir)
            procs.append(proc)
            started.append(Master(basedir, www, proc, port))
        worker_procs: dict[str, subprocess.Popen[bytes]] = {}

        async def worker(i: int) -> None:
            name = names[i]
            master = started[home[i]]
            proc = await asyncio.to_thread(
                start_worker, "buildyard", root / name, master.port, name, "pw"
            )
            procs.append(proc)
            worker_procs[name] = proc
            connected = functools.partial(worker_on, master.api, name)
            assert await asyncio.to_thread(wait_for, connected, timeout=90), master.log()[-3000:]

        # every one waited for, so that each started is in procs before any failure is raised
        failed = await asyncio.gather(
            *(worker(i) for i in range(worker_count)), return_exceptions=True
        )
        for error in failed:
            if error is not None:
                raise error
        builders = {
            x["name"]: x["builderid"] for x in get_json(f"{started[0].api}/builders")["builders"]
        }
        yield Cluster(started, db_url, builders, names, home, worker_procs)
    finally:
        for proc in reversed(procs):
            end_popen(proc)


async def submit(cluster: Cluster, mix: Mix = Mix()) -> None:
    """Everything at once, spread over the masters: the forced builds through their REST
    APIs, the changes through their change hooks (12 calls at a time)."""
    masters = itertools.cycle(cluster.masters)

    async def force(master: Master, builder: str) -> None:
        builderid = cluster.builderids[builder]
        status, reply = await call(
            master.api, "forceschedulers/force", "force", builderid=str(builderid)
        )
        assert status == 200, reply

    async def change(http: aiohttp.ClientSession, master: Master, n: int) -> None:
        form = {"author": "Ann <ann@example.org>", "comments": f"change {n}"}
        form |= {"revision": f"{n:040x}", "branch": "main", "project": "p"}
        form |= {"repository": "https://example.org/r.git"}
        url = f"http://127.0.0.1:{master.www}/change_hook/base"
        async with http.post(url, data=form) as resp:
            assert resp.status == 200, await resp.text()

    jobs: list[Any] = []
    async with aiohttp.ClientSession() as http:
        for n in range(max(mix.forced, mix.changes, mix.parents)):
            if n < mix.forced:
                jobs.append(force(next(masters), "quick"))
            if n < mix.parents:
                jobs.append(force(next(masters), "parent"))
            if n < mix.changes:
                jobs.append(change(http, next(masters), n))
        limit = asyncio.Semaphore(12)

        async def bounded(job: Any) -> None:
            async with limit:
                await job

        await asyncio.gather(*(bounded(j) for j in jobs))


async def requests(db: asyncpg.Connection) -> tuple[int, int]:
    """(requests, complete ones)."""
    row = await db.fetchrow(
        "SELECT count(*) AS n, count(*) FILTER (WHERE complete = 1) AS done FROM buildrequests"
    )
    return int(row["n"]), int(row["done"])


async def all_complete(db: asyncpg.Connection, expected: int, deadline: float) -> None:
    """Poll until there are at least ``expected`` requests and all are complete."""
    while time.monotonic() < deadline:
        n, done = await requests(db)
        if n >= expected and done == n:
            return
        await asyncio.sleep(0.25)
    n, done = await requests(db)
    raise AssertionError(f"{done} of {n} requests complete (at least {expected} expected)")
