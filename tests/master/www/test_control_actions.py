"""The JSON-RPC control actions on a real master with a real worker: stop and rebuild a build,
cancel a request, pause / unpause / stop / kill a worker, enable a scheduler; bad requests get
clear errors and change nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp

from buildyard.master.model.results import Results
from buildyard.master.model.sourcestamps import SourceStampSpec
from buildyard.testing.masters import Running, running_master
from buildyard.testing.postgres import free_port
from buildyard.testing.processes import eventually

BODY = """
c['builders'] = [
    util.BuilderConfig(name="slow", workernames=["w1"], factory=util.BuildFactory([
        steps.ShellCommand(name="sleep", command="sleep 60"),
    ])),
    util.BuilderConfig(name="quick", workernames=["w1"], factory=util.BuildFactory([
        steps.ShellCommand(name="hi", command="echo hi"),
    ])),
]
c['schedulers'] = [schedulers.Periodic(name="tick", builderNames=["quick"],
                                       periodicBuildTimer=3600)]
c['collapseRequests'] = False
c['www'] = {{'port': {port}}}
"""

STAMP: SourceStampSpec = {
    "branch": None,
    "revision": None,
    "repository": "",
    "project": "",
    "codebase": "",
}


class Api:
    def __init__(self, http: aiohttp.ClientSession, port: int) -> None:
        self.http = http
        self.base = f"http://127.0.0.1:{port}/api/v2"

    async def call(self, path: str, method: str, **params: Any) -> tuple[int, Any]:
        body = {"jsonrpc": "2.0", "method": method, "id": 1, "params": params}
        async with self.http.post(f"{self.base}/{path}", json=body) as resp:
            return resp.status, json.loads(await resp.text())

    async def get(self, path: str) -> Any:
        async with self.http.get(f"{self.base}/{path}") as resp:
            assert resp.status == 200, await resp.text()
            return json.loads(await resp.text())


async def _request(running: Running, builder: str) -> int:
    updates = running.master.data.updates
    builderid = await updates.find_builder_id(builder)
    ids = await updates.add_buildset(
        scheduler="test",
        sourcestamps=[STAMP],
        reason="test",
        properties={},
        builderids=[builderid],
    )
    return ids.brids[builderid]


async def _done(running: Running, brid: int) -> Any:
    async def complete() -> bool:
        r = await running.master.db.buildrequests.get_buildrequest(brid)
        return r is not None and r.complete

    await eventually(complete, within=60)
    return await running.master.db.buildrequests.get_buildrequest(brid)


async def test_control_actions(tmp_path: Path) -> None:
    port = free_port()
    async with (
        running_master(tmp_path, BODY.format(port=port)) as running,
        aiohttp.ClientSession() as http,
    ):
        api, db = Api(http, port), running.master.db

        # stop a running build: CANCELLED, with the reason
        brid = await _request(running, "slow")

        async def sleeping() -> bool:
            builds = await db.builds.get_builds(buildrequestid=brid)
            return bool(builds) and bool(await db.steps.get_steps(builds[0].id))

        await eventually(sleeping, within=60)
        [build] = await db.builds.get_builds(buildrequestid=brid)
        assert await api.call(f"builds/{build.id}", "stop", reason="enough") == (
            200,
            {"jsonrpc": "2.0", "id": 1, "result": None},
        )
        assert (await _done(running, brid)).results == Results.CANCELLED
        stopped = await running.result(build.id)
        assert stopped.build.results == Results.CANCELLED
        assert "enough" in stopped.build.state_string
        # a finished build cannot be stopped; an unknown action or build is refused
        status, reply = await api.call(f"builds/{build.id}", "stop")
        assert status == 400 and "not running" in reply["error"]["message"]
        status, reply = await api.call(f"builds/{build.id}", "explode")
        assert (status, reply["error"]["code"]) == (501, -32601)
        status, reply = await api.call("builds/9999", "stop")
        assert (status, reply["error"]["code"]) == (404, -32600)
        status, reply = await api.call(f"builds/{build.id}", "stop", reason=42)
        assert (status, reply["error"]["code"]) == (400, -32602)

        # rebuild (through the builder-and-number path): a new buildset pointing at the build
        slow = await db.builders.find_builder_id("slow")
        status, reply = await api.call(f"builders/{slow}/builds/{build.number}", "rebuild")
        assert status == 200
        bsid, brids = reply["result"]
        assert list(brids) == [str(slow)]
        buildset = await db.buildsets.get_buildset(bsid)
        assert buildset is not None and buildset.rebuilt_buildid == build.id
        # and stop that one too, by cancelling its request
        rebuilt = brids[str(slow)]

        async def rebuilding() -> bool:
            return bool(await db.builds.get_builds(buildrequestid=rebuilt))

        await eventually(rebuilding, within=60)
        assert (await api.call(f"buildrequests/{rebuilt}", "cancel", reason="no"))[0] == 200
        assert (await _done(running, rebuilt)).results == Results.CANCELLED

        # pause the worker: a new request waits, and can be cancelled while it waits
        workerid = await db.workers.find_worker_id("w1")
        assert (await api.call(f"workers/{workerid}", "pause", reason="maintenance"))[0] == 200
        shown = (await api.get(f"workers/{workerid}"))["workers"][0]
        assert (shown["paused"], shown["pause_reason"]) == (True, "maintenance")
        waiting = await _request(running, "quick")
        assert (await api.call(f"buildrequests/{waiting}", "cancel"))[0] == 200
        cancelled = await _done(running, waiting)
        assert cancelled.results == Results.CANCELLED
        assert not await db.builds.get_builds(buildrequestid=waiting)  # never built
        status, reply = await api.call(f"buildrequests/{waiting}", "cancel")
        assert status == 400 and "complete" in reply["error"]["message"]
        # unpause: the next request builds
        assert (await api.call("workers/w1", "unpause"))[0] == 200
        built = await _request(running, "quick")
        assert (await _done(running, built)).results == Results.SUCCESS

        # disable the scheduler; enabled must be a boolean
        [tick] = (await api.get("schedulers?name=tick"))["schedulers"]
        sched = f"schedulers/{tick['schedulerid']}"
        status, reply = await api.call(sched, "enable", enabled="no")
        assert (status, reply["error"]["code"]) == (400, -32602)
        assert (await api.call(sched, "enable", enabled=False))[0] == 200
        assert (await api.get(sched))["schedulers"][0]["enabled"] is False

        # graceful shutdown of the worker: marked so, and asked to shut down once idle
        assert (await api.call(f"workers/{workerid}", "stop"))[0] == 200
        assert (await api.get(f"workers/{workerid}"))["workers"][0]["graceful"] is True
        listener = running.master.workers.listener
        await eventually(lambda: "w1" not in listener.connections, within=60)


async def test_kill_disconnects_the_worker(tmp_path: Path) -> None:
    port = free_port()
    async with (
        running_master(tmp_path, BODY.format(port=port)) as running,
        aiohttp.ClientSession() as http,
    ):
        api = Api(http, port)
        sub = running.master.mq.subscribe(("workers", None, "disconnected"))
        async with sub:
            assert (await api.call("workers/w1", "kill"))[0] == 200
            key, _body = await sub.get()
        worker = await running.master.db.workers.get_worker(name="w1")
        assert worker is not None and key == ("workers", str(worker.id), "disconnected")
        status, reply = await api.call("workers/w1", "reboot")
        assert (status, reply["error"]["code"]) == (501, -32601)
