"""Several master processes on one PostgreSQL database, each test its own masters:

- ``buildyard stop --clean`` on one master: its running build finishes (SUCCESS, not RETRY)
  while the new requests, forced through that same master's REST API, are built by the other;
- roles by master.cfg alone: master A serves the web and runs the schedulers (no worker port,
  no worker connects to it), master B only builds (no web server, no schedulers); a build
  forced through A's REST runs on B's worker and A's /ws shows it;
- the change-driven scheduler's failover: its master is SIGKILLed; once the other master
  expires it (``expireAfter`` 4 s), it takes the scheduler at once (the ``masters/<id>/stopped``
  event wakes the claim, rather than the next claim attempt a minute later) and builds the next
  change.
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import subprocess
import time
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from buildyard.master.model.results import Results
from buildyard.testing.multimaster import (
    Master,
    call,
    cluster,
    get_json,
    worker_on,
)
from buildyard.testing.postgres import PostgresServer, free_port
from buildyard.testing.processes import buildyard, end_popen, eventually, spawn_master, wait_for
from buildyard.testing.workers import start_worker

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.postgres,
    pytest.mark.timeout(400),
    pytest.mark.xdist_group("multimaster-scale"),
]

# a long build that only the first master's worker w0 can run
SLOW = """
c['builders'].append(util.BuilderConfig(name="slow", workernames=["w0"],
    factory=util.BuildFactory([steps.ShellCommand(name="sleep", command=["sleep", "15"])])))
c['schedulers'].append(schedulers.ForceScheduler(name="force-slow", builderNames=["slow"]))
"""


async def _masterid(db: asyncpg.Connection, master: Master) -> int:
    rows = await db.fetch("SELECT id, name FROM masters")
    [mid] = [r["id"] for r in rows if r["name"].endswith(str(master.basedir))]
    return int(mid)


async def _force(master: Master, scheduler: str, builderid: int) -> int:
    """Force through ``master``'s REST API; the request's id."""
    status, reply = await call(
        master.api, f"forceschedulers/{scheduler}", "force", builderid=str(builderid)
    )
    assert status == 200, reply
    return int(reply["result"][1][str(builderid)])


async def _log_says(master: Master, text: str, within: float) -> None:
    await eventually(lambda: text in master.log(), within=within, interval=0.2)


async def test_stop_clean_lets_its_build_finish_while_the_other_master_takes_new_work(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    async with cluster(postgres_server, tmp_path, masters=2, worker_count=4, extra=SLOW) as c:
        a, b = c.masters
        db = await asyncpg.connect(c.db_url)
        try:
            a_id, b_id = await _masterid(db, a), await _masterid(db, b)
            slow = await _force(b, "force-slow", c.builderids["slow"])

            async def running() -> bool:
                return bool(
                    await db.fetchval(
                        "SELECT count(*) FROM steps s JOIN builds b ON b.id = s.buildid"
                        " WHERE b.buildrequestid = $1 AND s.name = 'sleep'"
                        " AND s.started_at IS NOT NULL",
                        slow,
                    )
                )

            await eventually(running, within=90, interval=0.2)
            stop = asyncio.ensure_future(
                asyncio.to_thread(buildyard, "stop", "--clean", str(a.basedir), timeout=120)
            )
            await _log_says(a, "draining", within=60)
            # new work, through the master that stops: its web and schedulers still run, the
            # other master builds it
            quick = [await _force(a, "force", c.builderids["quick"]) for _ in range(4)]
            # the master is this process's child: reaped here, so that `stop` sees it gone
            assert await asyncio.to_thread(a.proc.wait, 120) == 0
            stopped = await stop
            assert stopped.returncode == 0, stopped.stdout + stopped.stderr
            assert "stopped" in stopped.stdout
            log = a.log()
            assert "clean_shutdown_started" in log and "clean_shutdown_builds_done" in log
            # the running build ran to its end on A, once
            builds = await db.fetch(
                "SELECT masterid, results, complete_at FROM builds WHERE buildrequestid = $1",
                slow,
            )
            assert [(r["masterid"], r["results"]) for r in builds] == [(a_id, Results.SUCCESS)]

            # the new requests: each built once, on B
            async def built() -> bool:
                done = await db.fetchval(
                    "SELECT count(*) FROM buildrequests WHERE id = ANY($1) AND complete = 1",
                    quick,
                )
                return bool(done == len(quick))

            await eventually(built, within=120, interval=0.2)
            rows = await db.fetch(
                "SELECT buildrequestid, masterid, results FROM builds"
                " WHERE buildrequestid = ANY($1)",
                quick,
            )
            assert sorted((r["buildrequestid"], r["masterid"], r["results"]) for r in rows) == [
                (brid, b_id, Results.SUCCESS) for brid in sorted(quick)
            ]
        finally:
            await db.close()


ROLE_CONFIG = """\
from buildyard.plugins import *
c = BuildmasterConfig = {{}}
c['workers'] = [worker.Worker("w", "pw")]
c['db'] = {{'db_url': {db_url!r}}}
c['multiMaster'] = True
c['collapseRequests'] = False
c['builders'] = [
    util.BuilderConfig(name="quick", workernames=["w"], factory=util.BuildFactory([
        steps.ShellCommand(name="echo", command=["echo", "built"]),
    ])),
]
c['schedulers'] = [schedulers.ForceScheduler(name="force", builderNames=["quick"])]
{role}"""

# A: the web server and the schedulers; no worker port
WEB = "c['www'] = {{'port': 'tcp:{www}:interface=127.0.0.1'}}\n"
# B: the worker port, no web server, no schedulers
BUILD = (
    "c['protocols'] = {{'msgpack_experimental_v7': {{'port': {port}, 'interface': '127.0.0.1'}}}}\n"
    "c['schedulers'] = []\n"
)


async def test_a_web_and_scheduler_master_and_a_build_master(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    db_url = postgres_server.create_database()
    www, port = free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        masters = []
        for name, role in (("a", WEB.format(www=www)), ("b", BUILD.format(port=port))):
            basedir = tmp_path / name
            basedir.mkdir()
            (basedir / "master.cfg").write_text(ROLE_CONFIG.format(db_url=db_url, role=role))
            if name == "a":
                upgraded = buildyard("upgrade-master", str(basedir))
                assert upgraded.returncode == 0, upgraded.stderr
            procs.append(spawn_master(basedir))
            masters.append(Master(basedir, www if name == "a" else 0, procs[-1], port))
        a, b = masters
        procs.append(
            await asyncio.to_thread(start_worker, "buildyard", tmp_path / "w", port, "w", "pw")
        )
        connected = functools.partial(worker_on, a.api, "w")
        assert await asyncio.to_thread(wait_for, connected, timeout=90), b.log()[-3000:]
        db = await asyncpg.connect(db_url)
        try:
            a_id, b_id = await _masterid(db, a), await _masterid(db, b)
            [worker] = get_json(f"{a.api}/workers?name=w")["workers"]
            assert [m["masterid"] for m in worker["connected_to"]] == [b_id]
            [builder] = get_json(f"{a.api}/builders?name=quick")["builders"]
            async with (
                aiohttp.ClientSession() as http,
                http.ws_connect(f"http://127.0.0.1:{www}/ws") as ws,
            ):
                await ws.send_json({"cmd": "startConsuming", "path": "builds/*/*", "_id": 1})
                assert (await ws.receive_json())["code"] == 200
                brid = await _force(a, "force", builder["builderid"])
                seen: list[tuple[str, dict[str, object]]] = []
                async with asyncio.timeout(90):
                    while not any(k.endswith("/finished") for k, _ in seen):
                        msg = await ws.receive_json()
                        if "k" in msg:
                            seen.append((msg["k"], msg["m"]))
            [(new_key, new), *_, (_end_key, finished)] = seen
            assert new_key.endswith("/new") and new["buildrequestid"] == brid
            assert (finished["masterid"], finished["results"]) == (b_id, Results.SUCCESS)
            # A held the scheduler; B, configured with none, holds none
            holders = await db.fetch(
                "SELECT s.name, sm.masterid FROM schedulers s"
                " JOIN scheduler_masters sm ON sm.schedulerid = s.id"
            )
            assert [(r["name"], r["masterid"]) for r in holders] == [("force", a_id)]
        finally:
            await db.close()
        # no web server on B, no worker port on A
        assert "www_listening" in a.log() and "www_listening" not in b.log()
    finally:
        for proc in reversed(procs):
            end_popen(proc)


async def test_a_dead_masters_change_scheduler_moves_to_a_live_master(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    async with cluster(postgres_server, tmp_path, masters=2, worker_count=4) as c:
        db = await asyncpg.connect(c.db_url)
        try:
            ids = [await _masterid(db, m) for m in c.masters]
            query = (
                "SELECT sm.masterid FROM schedulers s"
                " JOIN scheduler_masters sm ON sm.schedulerid = s.id WHERE s.name = 'changes'"
            )

            async def held() -> bool:
                return await db.fetchval(query) is not None

            await eventually(held, within=60, interval=0.2)
            holder = ids.index(await db.fetchval(query))
            dead, live = c.masters[holder], c.masters[1 - holder]
            # the live master tried, and waits for its next chance
            await _log_says(live, "scheduler_held_elsewhere", within=60)
            killed_at = time.monotonic()
            os.kill(dead.proc.pid, signal.SIGKILL)
            dead.proc.wait(timeout=10)

            async def taken() -> bool:
                return bool(await db.fetchval(query) == ids[1 - holder])

            # expiry after 4 s, then the stopped event: well before the minute between two
            # claim attempts
            await eventually(taken, within=40, interval=0.2)
            took = time.monotonic() - killed_at
            assert "master_expired" in live.log()
            form = {"author": "Ann <ann@example.org>", "comments": "after", "branch": "main"}
            form |= {"revision": "f" * 40, "project": "p", "repository": "https://e.org/r.git"}
            async with (
                aiohttp.ClientSession() as http,
                http.post(f"http://127.0.0.1:{live.www}/change_hook/base", data=form) as resp,
            ):
                assert resp.status == 200, await resp.text()

            async def built() -> bool:
                row = await db.fetchrow(
                    "SELECT b.masterid, b.results FROM builds b"
                    " JOIN buildrequests br ON br.id = b.buildrequestid"
                    " WHERE br.builderid = $1 AND b.complete_at IS NOT NULL",
                    c.builderids["built"],
                )
                return row is not None and tuple(row) == (ids[1 - holder], Results.SUCCESS)

            await eventually(built, within=90, interval=0.2)
            print(f"scheduler taken over {took:.1f} s after the SIGKILL")
        finally:
            await db.close()
