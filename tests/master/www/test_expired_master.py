"""A master that expires (silent for longer than masterHouseKeeping's expireAfter) takes its
per-master rows with it, as the REST API shows on both databases: its workers are no longer
connected; and a master expired while alive records its own workers again when it checks in."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp

from buildyard.common.clock import SystemClock
from buildyard.master.data.updates import Updates
from buildyard.master.db import migrate
from buildyard.master.db.connector import Database
from buildyard.master.mq.local import LocalMQ
from buildyard.testing.masters import running_master
from buildyard.testing.postgres import free_port
from buildyard.testing.processes import eventually

BODY = """
c['workers'].append(worker.Worker("w2", "pw"))
c['builders'] = [util.BuilderConfig(name="b", workernames=["w1", "w2"],
                                    factory=util.BuildFactory([steps.ShellCommand(command="true")]))]
c['masterHouseKeeping'] = {{'interval': 1, 'expireAfter': 3}}
c['www'] = {{'port': 'tcp:{www}:interface=127.0.0.1'}}
"""


async def _get(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as resp:
        assert resp.status == 200, await resp.text()
        return json.loads(await resp.text())


async def test_an_expired_master_leaves_no_worker_connected(tmp_path: Path, db_url: str) -> None:
    # another master, gone without cleaning up: it checked in once, with w2 connected to it
    db = Database(db_url, clock=SystemClock(), basedir=tmp_path)
    try:
        await migrate.upgrade(db)
        updates = Updates(db=db, mq=LocalMQ(), clock=SystemClock())
        dead = await updates.find_master_id("elsewhere:/dead")
        await updates.master_active(name="elsewhere:/dead", masterid=dead)
        w2 = await updates.find_worker_id("w2")
        await updates.worker_connected(workerid=w2, masterid=dead, workerinfo={"host": "gone"})
        before = await db.workers.get_worker(w2)
        assert before is not None and list(before.connected_to) == [dead]
    finally:
        await db.close()

    www = free_port()
    async with running_master(tmp_path, BODY.format(www=www), db_url=db_url) as running:
        master = running.master
        api = f"http://127.0.0.1:{www}/api/v2"
        async with aiohttp.ClientSession() as http:

            async def expired() -> bool:
                [m] = (await _get(http, f"{api}/masters/{dead}"))["masters"]
                return not m["active"]

            await eventually(expired, within=60, interval=0.2)
            workers = {w["name"]: w for w in (await _get(http, f"{api}/workers"))["workers"]}
            assert workers["w2"]["connected_to"] == []
            assert workers["w1"]["connected_to"] == [{"masterid": master.masterid}]
            assert (await _get(http, f"{api}/masters/{dead}/workers"))["workers"] == []

            # this master found silent by another one (it stalled, say): its rows go too ...
            assert await master.data.updates.expire_masters(expire_after=-3600) == [master.masterid]
            mine = f"{api}/masters/{master.masterid}/workers"
            assert (await _get(http, mine))["workers"] == []
            # ... and come back when it checks in again, with its configured workers
            await master.housekeeping.check_in()
            again = {w["name"]: w for w in (await _get(http, mine))["workers"]}
            [builder] = (await _get(http, f"{api}/builders"))["builders"]
            link = {"masterid": master.masterid, "builderid": builder["builderid"]}
            assert sorted(again) == ["w1", "w2"]
            assert all(link in w["configured_on"] for w in again.values())
            assert again["w1"]["connected_to"] == [{"masterid": master.masterid}]
            assert again["w2"]["connected_to"] == []
