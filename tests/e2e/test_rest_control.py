"""A worker's graceful shutdown (``stop``) and ``kill`` through POST /api/v2, with real worker
processes of both kinds: stopped, a worker finishes its build, takes no other and then exits;
killed, it exits at once, its build cut short."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from buildyard.master.config.loader import load_master_config
from buildyard.master.db import migrate
from buildyard.master.master import BuildMaster
from buildyard.master.model.results import Results
from buildyard.testing.postgres import free_port
from buildyard.testing.processes import end_popen, eventually
from buildyard.testing.workers import KINDS, start_worker

pytestmark = pytest.mark.e2e

CONFIG = """\
from buildyard.plugins import *
c = BuildmasterConfig = {{}}
c['workers'] = [worker.Worker("w1", "pw"), worker.Worker("w2", "pw")]
c['protocols'] = {{'msgpack_experimental_v7': {{'port': {port}, 'interface': '127.0.0.1'}}}}
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
c['www'] = {{'port': 'tcp:{www}:interface=127.0.0.1'}}
c['builders'] = [
    util.BuilderConfig(name="short", workernames=["w1"], factory=util.BuildFactory([
        steps.ShellCommand(name="sleep", command="sleep 2"),
    ])),
    util.BuilderConfig(name="long", workernames=["w2"], factory=util.BuildFactory([
        steps.ShellCommand(name="sleep", command="sleep 120"),
    ])),
]
"""


async def _request(m: BuildMaster, builder: str) -> int:
    builderid = await m.data.updates.find_builder_id(builder)
    _bsid, brids = await m.data.updates.add_buildset(
        scheduler="test",
        sourcestamps=[
            {"branch": None, "revision": None, "repository": "", "project": "", "codebase": ""}
        ],
        reason="test",
        properties={},
        builderids=[builderid],
    )
    return brids[builderid]


async def _running(m: BuildMaster, brid: int) -> int:
    async def started() -> bool:
        builds = await m.db.builds.get_builds(buildrequestid=brid)
        return bool(builds) and bool(await m.db.steps.get_steps(builds[0].id))

    await eventually(started, within=60)
    [build] = await m.db.builds.get_builds(buildrequestid=brid)
    return build.id


async def _call(http: aiohttp.ClientSession, url: str, method: str, **params: Any) -> Any:
    body = {"jsonrpc": "2.0", "method": method, "id": "x", "params": params}
    async with http.post(url, json=body) as resp:
        reply = json.loads(await resp.text())
        assert resp.status == 200, reply
        return reply["result"]


@pytest.mark.parametrize("kind", KINDS)
async def test_graceful_stop_and_kill(tmp_path: Path, kind: str) -> None:
    basedir = tmp_path / "master"
    basedir.mkdir()
    port, www = free_port(), free_port()
    (basedir / "master.cfg").write_text(CONFIG.format(port=port, www=www))
    m = BuildMaster(basedir, config=load_master_config(basedir))
    await migrate.upgrade(m.db)
    await m.start()
    procs: list[subprocess.Popen[bytes]] = []
    api = f"http://127.0.0.1:{www}/api/v2"
    try:
        for name in ("w1", "w2"):
            procs.append(
                await asyncio.to_thread(start_worker, kind, tmp_path / name, port, name, "pw")
            )
        w1, w2 = procs
        connections = m.workers.listener.connections
        await eventually(lambda: {"w1", "w2"} <= connections.keys(), within=60)
        short = await _request(m, "short")
        long = await _request(m, "long")
        short_build = await _running(m, short)
        long_build = await _running(m, long)

        async with aiohttp.ClientSession() as http:
            # graceful: the build runs on, no new one starts; then the worker exits
            assert await _call(http, f"{api}/workers/w1", "stop") is None
            later = await _request(m, "short")
            workers = {w["name"]: w for w in (await _get(http, f"{api}/workers"))["workers"]}
            assert (workers["w1"]["graceful"], workers["w1"]["paused"]) == (True, False)
            # kill: the worker is told to shut down now
            w2id = workers["w2"]["workerid"]
            assert await _call(http, f"{api}/workers/{w2id}", "kill") is None

        assert await asyncio.to_thread(w2.wait, 30) is not None
        await eventually(lambda: _complete(m, long_build), within=30)
        long_done = await m.db.builds.get_build(long_build)
        assert long_done is not None and long_done.results == Results.RETRY

        assert await asyncio.to_thread(w1.wait, 60) is not None
        short_done = await m.db.builds.get_build(short_build)
        assert short_done is not None and short_done.results == Results.SUCCESS
        assert await m.db.builds.get_builds(buildrequestid=later) == []
        assert "w1" not in connections and "w2" not in connections
    finally:
        for proc in procs:
            end_popen(proc)
        await m.stop()


async def _get(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as resp:
        assert resp.status == 200
        return json.loads(await resp.text())


async def _complete(m: BuildMaster, buildid: int) -> bool:
    build = await m.db.builds.get_build(buildid)
    return build is not None and build.complete_at is not None
