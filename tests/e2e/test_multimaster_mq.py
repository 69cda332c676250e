"""Two master processes on one PostgreSQL database acting as one through the shared queue
(c['mq'] type postgres): events, control actions and triggered builds cross masters.

Worker ``wa`` connects only to master A, ``wb`` and ``wc`` only to master B, so the builders
of ``wb`` (quick, slow) can only build on B while the ones of ``wa`` (parent) build on A. The test
talks to A's REST API and /ws, and to B's /ws to compare.
"""

from __future__ import annotations

import asyncio
import functools
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import pytest

from buildyard.master.model.results import Results
from buildyard.testing.multimaster import Master
from buildyard.testing.multimaster import call as _call
from buildyard.testing.multimaster import get_json as _get
from buildyard.testing.multimaster import worker_on as _worker_on
from buildyard.testing.postgres import PostgresServer, free_port
from buildyard.testing.processes import buildyard, end_popen, spawn_master, wait_for
from buildyard.testing.workers import start_worker

# one xdist worker starts the module's two masters
pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.xdist_group("multimaster-mq")]

CONFIG = """\
from buildyard.plugins import *
c = BuildmasterConfig = {{}}
c['workers'] = [worker.Worker(name, "pw") for name in ("wa", "wb", "wc")]
c['protocols'] = {{'msgpack_experimental_v7': {{'port': {port}, 'interface': '127.0.0.1'}}}}
c['db'] = {{'db_url': {db_url!r}}}
c['www'] = {{'port': 'tcp:{www}:interface=127.0.0.1', 'change_hook_dialects': {{'base': True}}}}
c['multiMaster'] = True
c['mq'] = {{'type': 'postgres', 'retention': 300}}
c['collapseRequests'] = False
c['builders'] = [
    util.BuilderConfig(name="quick", workernames=["wb"], factory=util.BuildFactory([
        steps.ShellCommand(name="one", command="echo one"),
        steps.ShellCommand(name="two", command="echo two"),
    ])),
    util.BuilderConfig(name="slow", workernames=["wb"], factory=util.BuildFactory([
        steps.ShellCommand(name="sleep", command="sleep 120"),
    ])),
    util.BuilderConfig(name="spare", workernames=["wc"], factory=util.BuildFactory()),
    util.BuilderConfig(name="parent", workernames=["wa"], factory=util.BuildFactory([
        steps.Trigger(name="trigger", schedulerNames=["trig"], waitForFinish=True),
    ])),
]
c['schedulers'] = [
    schedulers.ForceScheduler(name="force", builderNames=["quick", "slow", "parent"]),
    schedulers.Triggerable(name="trig", builderNames=["quick"]),
]
{extra}"""

# master B alone runs this scheduler: the changes it builds come in through master A's hook
ON_B = """\
c['schedulers'].append(schedulers.AnyBranchScheduler(
    name="changes", builderNames=["quick"], treeStableTimer=None))
"""


@dataclass
class Cluster:
    a: Master
    b: Master
    db_url: str
    builderids: dict[str, int]
    workers: dict[str, subprocess.Popen[bytes]]


@pytest.fixture(scope="module")
def cluster(
    postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    db_url = postgres_server.create_database()
    root = tmp_path_factory.mktemp("mm")
    procs: list[subprocess.Popen[bytes]] = []
    masters: list[Master] = []
    workers: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name in ("a", "b"):
            basedir = root / name
            basedir.mkdir()
            port, www = free_port(), free_port()
            extra = ON_B if name == "b" else ""
            config = CONFIG.format(port=port, www=www, db_url=db_url, extra=extra)
            (basedir / "master.cfg").write_text(config)
            if name == "a":
                upgraded = buildyard("upgrade-master", str(basedir))
                assert upgraded.returncode == 0, upgraded.stderr
            proc = spawn_master(basedir)
            procs.append(proc)
            masters.append(Master(basedir, www, proc))
            for worker in ("wa",) if name == "a" else ("wb", "wc"):
                workers[worker] = start_worker("buildyard", root / worker, port, worker, "pw")
                procs.append(workers[worker])
        a, b = masters
        for master, worker in ((a, "wa"), (b, "wb"), (b, "wc")):
            api = master.api
            assert wait_for(functools.partial(_worker_on, api, worker), timeout=90), master.log()[
                -3000:
            ]
        builders = {x["name"]: x["builderid"] for x in _get(f"{a.api}/builders")["builders"]}
        yield Cluster(a, b, db_url, builders, workers)
    finally:
        for proc in reversed(procs):
            end_popen(proc)


class Events:
    """A /ws client of one master, following build and step events."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.seen: list[tuple[str, dict[str, Any]]] = []

    async def next(self) -> tuple[str, dict[str, Any]]:
        while True:
            msg = await self.ws.receive_json()
            if "k" in msg:
                self.seen.append((msg["k"], msg["m"]))
                return msg["k"], msg["m"]

    async def until_finished(self, buildid: int, *, within: float = 90) -> dict[str, Any]:
        """Read on until ``builds/<buildid>/finished``; its body."""
        for key, body in self.seen:
            if key == f"builds/{buildid}/finished":
                return body
        async with asyncio.timeout(within):
            while True:
                key, body = await self.next()
                if key == f"builds/{buildid}/finished":
                    return body

    async def build_of_builder(self, builderid: int, *, within: float = 90) -> int:
        """The id of the next build of ``builderid`` (its ``new`` event)."""
        async with asyncio.timeout(within):
            while True:
                key, body = await self.next()
                new = key.startswith("builds/") and key.endswith("/new")
                if new and body["builderid"] == builderid:
                    return int(body["buildid"])

    def of_build(self, buildid: int, path: str) -> list[tuple[str, Any]]:
        """The keys (and states) of the events under ``path`` ("builds/" or "steps/") of one
        build, in arrival order."""
        return [
            (key, body.get("state_string"))
            for key, body in self.seen
            if key.startswith(path) and body.get("buildid") == buildid
        ]


@pytest.fixture
async def events(cluster: Cluster) -> AsyncIterator[tuple[Events, Events]]:
    async with aiohttp.ClientSession() as http:
        clients = []
        for master in (cluster.a, cluster.b):
            ws = await http.ws_connect(f"http://127.0.0.1:{master.www}/ws")
            for i, path in enumerate(("builds/*/*", "steps/*/*")):
                await ws.send_json({"cmd": "startConsuming", "path": path, "_id": i})
                reply = await ws.receive_json()
                assert reply["code"] == 200, reply
            clients.append(Events(ws))
        try:
            yield clients[0], clients[1]
        finally:
            for client in clients:
                await client.ws.close()


async def _force(cluster: Cluster, builder: str) -> int:
    """Force ``builder`` through master A; the build request's id."""
    builderid = cluster.builderids[builder]
    status, reply = await _call(
        cluster.a.api, "forceschedulers/force", "force", builderid=str(builderid)
    )
    assert status == 200, reply
    return int(reply["result"][1][str(builderid)])


async def _same_events(on_a: Events, on_b: Events, buildid: int) -> None:
    """A's /ws shows the build's events and its steps' events as B's does: each path's in B's
    order, none missing, none twice (the two paths are two subscriptions, whose events
    interleave as they come)."""
    await on_b.until_finished(buildid)
    await on_a.until_finished(buildid)
    wanted = {path: on_b.of_build(buildid, path) for path in ("builds/", "steps/")}
    assert len(wanted["builds/"]) >= 3 and len(wanted["steps/"]) >= 6, wanted
    try:
        async with asyncio.timeout(30):
            while any(len(on_a.of_build(buildid, p)) < len(w) for p, w in wanted.items()):
                await on_a.next()
    except TimeoutError:
        pass
    assert {path: on_a.of_build(buildid, path) for path in wanted} == wanted


async def test_a_sees_every_event_of_a_build_on_b_in_order(
    cluster: Cluster, events: tuple[Events, Events]
) -> None:
    on_a, on_b = events
    await _force(cluster, "quick")
    buildid = await on_a.build_of_builder(cluster.builderids["quick"])
    finished = await on_a.until_finished(buildid)
    assert finished["results"] == Results.SUCCESS
    assert finished["masterid"] != await _masterid(cluster.a)  # it ran on B
    await _same_events(on_a, on_b, buildid)


async def _masterid(master: Master) -> int:
    masters = _get(f"{master.api}/masters")["masters"]
    [mine] = [m for m in masters if m["name"].endswith(str(master.basedir))]
    return int(mine["masterid"])


async def test_rest_stop_and_cancel_sent_to_a_act_on_bs_build_and_request(
    cluster: Cluster, events: tuple[Events, Events]
) -> None:
    on_a, _ = events
    slow = cluster.builderids["slow"]
    await _force(cluster, "slow")
    buildid = await on_a.build_of_builder(slow)
    status, reply = await _call(cluster.a.api, f"builds/{buildid}", "stop", reason="from A")
    # as Buildbot answers: the action is sent to the owner, the result is null
    assert (status, reply) == (200, {"id": 1, "jsonrpc": "2.0", "result": None})
    stopped = await on_a.until_finished(buildid)
    assert stopped["results"] == Results.CANCELLED
    assert "from A" in stopped["state_string"]

    brid = await _force(cluster, "slow")
    buildid = await on_a.build_of_builder(slow)
    status, reply = await _call(cluster.a.api, f"buildrequests/{brid}", "cancel", reason="no")
    assert (status, reply) == (200, {"id": 1, "jsonrpc": "2.0", "result": None})
    cancelled = await on_a.until_finished(buildid)
    assert cancelled["results"] == Results.CANCELLED
    request = _get(f"{cluster.a.api}/buildrequests/{brid}")["buildrequests"][0]
    for _ in range(100):  # the request completes right after its build
        if request["complete"]:
            break
        await asyncio.sleep(0.1)
        request = _get(f"{cluster.a.api}/buildrequests/{brid}")["buildrequests"][0]
    assert (request["complete"], request["results"]) == (True, Results.CANCELLED)
    # a finished build is not running anywhere: refused with a reason, as before
    status, reply = await _call(cluster.a.api, f"builds/{buildid}", "stop")
    assert status == 400, reply
    assert "control_done" in cluster.b.log()


async def test_trigger_on_a_waits_for_the_triggered_build_on_b(
    cluster: Cluster, events: tuple[Events, Events]
) -> None:
    on_a, _ = events
    await _force(cluster, "parent")
    parent = await on_a.build_of_builder(cluster.builderids["parent"])
    child = await on_a.build_of_builder(cluster.builderids["quick"])
    child_done = await on_a.until_finished(child)
    assert child_done["masterid"] != await _masterid(cluster.a)
    parent_done = await on_a.until_finished(parent)
    assert parent_done["masterid"] == await _masterid(cluster.a)
    assert (child_done["results"], parent_done["results"]) == (Results.SUCCESS, Results.SUCCESS)


async def test_a_master_whose_listen_connection_is_cut_catches_up(
    cluster: Cluster, events: tuple[Events, Events]
) -> None:
    on_a, on_b = events
    conn = await asyncpg.connect(cluster.db_url)
    try:
        # cut A's LISTEN connection, then build on B at once: what B produces before A is
        # back (a second later) is read back from the table, the rest comes as notifications
        cut = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name LIKE $1",
            f"buildyard-mq pid={cluster.a.proc.pid} %",
        )
        assert cut == 1
        await _force(cluster, "quick")
        buildid = await on_a.build_of_builder(cluster.builderids["quick"])
        await on_a.until_finished(buildid)
        await _same_events(on_a, on_b, buildid)
    finally:
        await conn.close()
    log = cluster.a.log()
    assert "mq_connection_lost" in log and "mq_reconnected" in log
    assert "mq_events_missed" not in log, log[-3000:]


async def test_a_change_received_by_a_is_built_by_bs_scheduler(
    cluster: Cluster, events: tuple[Events, Events]
) -> None:
    on_a, _ = events
    form = {"author": "Ann <ann@example.org>", "comments": "c", "revision": "abc123"}
    form |= {"branch": "main", "repository": "https://example.org/r.git", "project": "p"}
    async with aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{cluster.a.www}/change_hook/base"
        async with http.post(url, data=form) as resp:
            assert resp.status == 200, await resp.text()
    buildid = await on_a.build_of_builder(cluster.builderids["quick"])
    done = await on_a.until_finished(buildid)
    assert done["results"] == Results.SUCCESS
    build = _get(f"{cluster.a.api}/builds/{buildid}?property=revision")["builds"][0]
    assert build["properties"]["revision"][0] == "abc123"


async def _exits(proc: subprocess.Popen[bytes], within: float) -> bool:
    for _ in range(int(within * 10)):
        if proc.poll() is not None:
            return True
        await asyncio.sleep(0.1)
    return proc.poll() is not None


async def test_worker_stop_and_kill_sent_to_a_reach_the_workers_on_b(cluster: Cluster) -> None:
    workers = {w["name"]: w for w in _get(f"{cluster.a.api}/workers")["workers"]}
    b_id = await _masterid(cluster.b)
    assert [m["masterid"] for m in workers["wc"]["connected_to"]] == [b_id]
    # graceful: stored by A, followed by B, whose idle worker is told to shut down
    status, reply = await _call(cluster.a.api, f"workers/{workers['wc']['workerid']}", "stop")
    assert (status, reply["result"]) == (200, None), reply
    assert await _exits(cluster.workers["wc"], 60), cluster.b.log()[-3000:]
    # kill: sent to B as a control message, B tells the worker to shut down now
    status, reply = await _call(cluster.a.api, f"workers/{workers['wb']['workerid']}", "kill")
    assert (status, reply["result"]) == (200, None), reply
    assert await _exits(cluster.workers["wb"], 60), cluster.b.log()[-3000:]
    assert "worker_kill" in cluster.b.log()
    assert "worker_kill" not in cluster.a.log()
