"""The JSON-RPC control actions (POST /api/v2/<path>) on a real master with a real worker, on
both databases: stop and rebuild a build; cancel a build request and change its priority;
pause / unpause a worker; enable and disable a scheduler. Each shows its effect; bad requests
get clear errors and change nothing; a cancel racing the claim of its request still stops the
build. (Graceful shutdown and kill, which end the worker's process, are in
tests/e2e/test_rest_control.py.)"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from buildyard.master.model.buildrequests import BuildRequest
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
c['schedulers'] = [
    schedulers.SingleBranchScheduler(name=name, branch="main", treeStableTimer=None,
                                     builderNames=["quick"])
    for name in ("on", "off")
]
c['collapseRequests'] = False
c['workers'] = [worker.Worker("w1", "pw", max_builds=1)]
c['www'] = {{'port': {port}}}
"""


class Api:
    def __init__(self, http: aiohttp.ClientSession, port: int) -> None:
        self.http = http
        self.base = f"http://127.0.0.1:{port}/api/v2"

    async def call(self, path: str, method: str, **params: Any) -> tuple[int, Any]:
        body = {"jsonrpc": "2.0", "method": method, "id": 1, "params": params}
        async with self.http.post(f"{self.base}/{path}", json=body) as resp:
            return resp.status, json.loads(await resp.text())

    async def ok(self, path: str, method: str, **params: Any) -> Any:
        status, reply = await self.call(path, method, **params)
        assert status == 200, reply
        assert reply["id"] == 1 and "error" not in reply
        return reply["result"]

    async def error(self, path: str, method: str, **params: Any) -> tuple[int, int, str]:
        """(HTTP status, JSON-RPC code, message) of a call that must fail."""
        status, reply = await self.call(path, method, **params)
        assert "result" not in reply, reply
        assert reply["id"] == 1
        return status, reply["error"]["code"], str(reply["error"]["message"])

    async def get(self, path: str) -> Any:
        async with self.http.get(f"{self.base}/{path}") as resp:
            assert resp.status == 200, await resp.text()
            return json.loads(await resp.text())


async def _request(running: Running, builder: str, revision: str = "r") -> int:
    updates = running.master.data.updates
    builderid = await updates.find_builder_id(builder)
    stamp: SourceStampSpec = {
        "branch": None,
        "revision": revision,
        "repository": "",
        "project": "",
        "codebase": "",
    }
    ids = await updates.add_buildset(
        scheduler="test",
        sourcestamps=[stamp],
        reason="test",
        properties={"given": ("yes", "Test")},
        builderids=[builderid],
    )
    return ids.brids[builderid]


async def _done(running: Running, brid: int) -> BuildRequest:
    db = running.master.db

    async def complete() -> bool:
        r = await db.buildrequests.get_buildrequest(brid)
        return r is not None and r.complete

    await eventually(complete, within=60)
    request = await db.buildrequests.get_buildrequest(brid)
    assert request is not None
    return request


async def _distribution_passes(running: Running) -> None:
    """Wait for two distribution passes to start and end after this call: anything the
    distributor would do with the requests now waiting, it has done."""
    brd = running.master.botmaster.brd
    start = brd.passes

    def passed() -> bool:
        brd.maybe_start_builds()
        return brd.passes >= start + 2

    await eventually(passed, within=30)


async def test_build_actions(tmp_path: Path, db_url: str) -> None:
    port = free_port()
    async with (
        running_master(tmp_path, BODY.format(port=port), db_url=db_url) as running,
        aiohttp.ClientSession() as http,
    ):
        api, db = Api(http, port), running.master.db

        # stop a running build: it ends CANCELLED with the reason; `results` is not taken
        # (Buildbot's endpoint passes only the reason on)
        brid = await _request(running, "slow")
        buildid = await running.started_build(brid)
        status, code, message = await api.error(f"builds/{buildid}", "stop", reason=42)
        assert (status, code) == (400, -32602) and "reason" in message
        assert await api.ok(f"builds/{buildid}", "stop", reason="enough", results=2) is None
        assert (await _done(running, brid)).results == Results.CANCELLED
        stopped = await running.result(buildid)
        assert stopped.build.results == Results.CANCELLED
        assert "enough" in stopped.build.state_string

        # a finished build cannot be stopped; unknown actions, builds and paths are refused
        status, code, message = await api.error(f"builds/{buildid}", "stop")
        assert (status, code) == (400, -32600) and "not running" in message
        assert (await api.error(f"builds/{buildid}", "explode"))[:2] == (501, -32601)
        assert (await api.error("builds", "stop"))[:2] == (501, -32601)  # a collection
        assert (await api.error("builds/9999", "stop"))[:2] == (404, -32600)
        assert (await api.error("nothing/1", "stop"))[:2] == (404, -32600)

        # rebuild, through the builder-and-number path: a new buildset like Buildbot's
        # (reason "rebuild", same stamps and properties), pointing at the build
        slow = await db.builders.find_builder_id("slow")
        [number] = [b.number for b in await db.builds.get_builds(buildrequestid=brid)]
        bsid, brids = await api.ok(f"builders/{slow}/builds/{number}", "rebuild")
        assert list(brids) == [str(slow)]
        buildset = await db.buildsets.get_buildset(bsid)
        original = await db.buildsets.get_buildset((await _done(running, brid)).buildsetid)
        assert buildset is not None and original is not None
        assert (buildset.reason, buildset.rebuilt_buildid) == ("rebuild", buildid)
        assert buildset.sourcestamps == original.sourcestamps
        assert (await db.buildsets.get_buildset_properties(bsid))["given"] == ("yes", "Test")
        shown = (await api.get(f"buildsets/{bsid}"))["buildsets"][0]
        assert shown["rebuilt_buildid"] == buildid

        # cancelling the rebuild's request while it builds stops its build
        rebuilt = brids[str(slow)]
        rebuilt_build = await running.started_build(rebuilt)
        assert await api.ok(f"buildrequests/{rebuilt}", "cancel", reason="no") is None
        assert (await _done(running, rebuilt)).results == Results.CANCELLED
        assert (await running.result(rebuilt_build)).build.results == Results.CANCELLED

        # a rebuild of a rebuild still names the first build
        bsid2, brids2 = await api.ok(f"builds/{rebuilt_build}", "rebuild")
        again = await db.buildsets.get_buildset(bsid2)
        assert again is not None and again.rebuilt_buildid == buildid
        assert await api.ok(f"buildrequests/{brids2[str(slow)]}", "cancel") is None
        assert (await _done(running, brids2[str(slow)])).results == Results.CANCELLED

        # nothing else was added by the refused calls
        assert len(await db.buildsets.get_buildsets()) == 3


async def test_request_worker_and_scheduler_actions(tmp_path: Path, db_url: str) -> None:
    port = free_port()
    async with (
        running_master(tmp_path, BODY.format(port=port), db_url=db_url) as running,
        aiohttp.ClientSession() as http,
    ):
        api, db, master = Api(http, port), running.master.db, running.master
        workerid = await db.workers.find_worker_id("w1")
        masterid = master.masterid
        assert masterid is not None

        async def worker() -> dict[str, Any]:
            return dict((await api.get(f"workers/{workerid}"))["workers"][0])

        # pause: Buildbot's default reason, then one given (on another of the worker's paths)
        status, code, message = await api.error("workers/w1", "pause", reason=["x"])
        assert (status, code) == (400, -32602) and "reason" in message
        assert (await worker())["paused"] is False
        assert (await api.error("workers/w1", "reboot"))[:2] == (501, -32601)
        assert (await api.error("workers/nobody", "pause"))[:2] == (404, -32600)
        assert await api.ok("workers/w1", "pause") is None
        assert ((await worker())["paused"], (await worker())["pause_reason"]) == (
            True,
            "no reason",
        )
        assert await api.ok(f"masters/{masterid}/workers/{workerid}", "pause", reason="fix") is None
        assert ((await worker())["paused"], (await worker())["pause_reason"]) == (True, "fix")

        # a paused worker gets no new build
        low = await _request(running, "quick", "low")
        high = await _request(running, "quick", "high")
        unwanted = await _request(running, "quick", "unwanted")
        await _distribution_passes(running)
        for brid in (low, high, unwanted):
            assert await db.builds.get_builds(buildrequestid=brid) == []

        # set_priority on a waiting request (checked, and unknown requests are refused)
        status, code, message = await api.error(f"buildrequests/{high}", "set_priority")
        assert (status, code) == (400, -32602) and "priority" in message
        status, code, message = await api.error(
            f"buildrequests/{high}", "set_priority", priority="5"
        )
        assert (status, code) == (400, -32602) and "priority" in message
        status, code, message = await api.error(
            f"buildrequests/{high}", "set_priority", priority=2**31
        )
        assert (status, code, message) == (400, -32602, "'priority' is out of range")
        assert (await api.get(f"buildrequests/{high}"))["buildrequests"][0]["priority"] == 0
        assert await api.ok(f"buildrequests/{high}", "set_priority", priority=5) is None
        assert (await api.get(f"buildrequests/{high}"))["buildrequests"][0]["priority"] == 5
        assert (await api.error("buildrequests/9999", "cancel"))[:2] == (404, -32600)
        assert (await api.error(f"buildrequests/{high}", "retry"))[:2] == (501, -32601)

        # cancel a waiting request: complete, CANCELLED, never built; then it cannot be again
        status, code, message = await api.error(f"buildrequests/{unwanted}", "cancel", reason=1)
        assert (status, code) == (400, -32602) and "reason" in message
        assert (await api.get(f"buildrequests/{unwanted}"))["buildrequests"][0]["complete"] is False
        assert await api.ok(f"buildrequests/{unwanted}", "cancel", reason="not wanted") is None
        cancelled = await _done(running, unwanted)
        assert cancelled.results == Results.CANCELLED
        shown = (await api.get(f"buildrequests/{unwanted}"))["buildrequests"][0]
        assert (shown["complete"], shown["results"]) == (True, int(Results.CANCELLED))
        status, code, message = await api.error(f"buildrequests/{unwanted}", "cancel")
        assert status == 400 and "complete" in message

        # unpause (through the builder's path): the waiting requests build, the one of higher
        # priority first
        quick = await db.builders.find_builder_id("quick")
        assert await api.ok(f"builders/{quick}/workers/w1", "unpause") is None
        assert ((await worker())["paused"], (await worker())["pause_reason"]) == (False, None)
        assert (await _done(running, low)).results == Results.SUCCESS
        assert (await _done(running, high)).results == Results.SUCCESS
        [b_low] = await db.builds.get_builds(buildrequestid=low)
        [b_high] = await db.builds.get_builds(buildrequestid=high)
        assert b_high.number < b_low.number
        assert await db.builds.get_builds(buildrequestid=unwanted) == []
        status, code, message = await api.error(f"buildrequests/{low}", "set_priority", priority=1)
        assert status == 400 and "complete" in message

        # scheduler enable: checked; disabled, it shows so and stops triggering
        schedulers = {s["name"]: s for s in (await api.get("schedulers"))["schedulers"]}
        off = f"schedulers/{schedulers['off']['schedulerid']}"
        status, code, message = await api.error(off, "enable", enabled="no")
        assert (status, code) == (400, -32602) and "enabled" in message
        status, code, message = await api.error(off, "enable")
        assert (status, code) == (400, -32602) and "enabled" in message
        assert (await api.error(off, "trigger"))[:2] == (501, -32601)
        assert (await api.error("schedulers/9999", "enable", enabled=False))[:2] == (404, -32600)
        assert (await api.get(off))["schedulers"][0]["enabled"] is True
        assert await api.ok(off, "enable", enabled=False) is None
        schedulers = {s["name"]: s for s in (await api.get("schedulers"))["schedulers"]}
        assert (schedulers["off"]["enabled"], schedulers["on"]["enabled"]) == (False, True)
        running_off = master.scheduler_manager.configured()["off"]
        await eventually(lambda: running_off.statistics()["work_tasks"] == 0, within=30)

        async def buildsets_of(scheduler: str) -> list[int]:
            found = []
            for bs in await db.buildsets.get_buildsets():
                props = await db.buildsets.get_buildset_properties(bs.id)
                if props.get("scheduler") == (scheduler, "Scheduler"):
                    found.append(bs.id)
            return found

        async def change(revision: str) -> None:
            await master.data.updates.add_change(author="me", branch="main", revision=revision)

        async def built_by(scheduler: str, count: int) -> bool:
            return len(await buildsets_of(scheduler)) >= count

        await change("c1")
        await eventually(lambda: built_by("on", 1), within=30)
        # enabled again (through the master's path), it builds the next change, not c1
        path = f"masters/{masterid}/schedulers/{schedulers['off']['schedulerid']}"
        assert await api.ok(path, "enable", enabled=True) is None
        assert (await api.get(off))["schedulers"][0]["enabled"] is True
        await eventually(lambda: running_off.statistics()["work_tasks"] > 0, within=30)
        await change("c2")
        await eventually(lambda: built_by("off", 1), within=30)
        [off_bsid] = await buildsets_of("off")
        off_buildset = await db.buildsets.get_buildset(off_bsid)
        assert off_buildset is not None
        [ssid] = off_buildset.sourcestamps
        stamp = await db.sourcestamps.get_sourcestamp(ssid)
        assert stamp is not None and stamp.revision == "c2"
        await eventually(lambda: built_by("on", 2), within=30)


async def test_cancel_while_a_pass_claims_the_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cancel that comes after a distribution pass claimed the request but before its build
    is known still stops that build (Buildbot: the cancel of an already claimed request)."""
    port = free_port()
    async with (
        running_master(tmp_path, BODY.format(port=port)) as running,
        aiohttp.ClientSession() as http,
    ):
        api, updates = Api(http, port), running.master.data.updates
        claim = updates.claim_buildrequests
        claimed, release = asyncio.Event(), asyncio.Event()

        async def held_claim(brids: Sequence[int], *, masterid: int) -> bool:
            ok = await claim(brids, masterid=masterid)
            if not claimed.is_set():  # the pass's claim: hold it after the commit
                claimed.set()
                await release.wait()
            return ok

        monkeypatch.setattr(updates, "claim_buildrequests", held_claim)
        brid = await _request(running, "slow")
        async with asyncio.timeout(30):
            await claimed.wait()
        cancel = asyncio.ensure_future(api.call(f"buildrequests/{brid}", "cancel", reason="r"))
        await asyncio.sleep(0.2)  # the cancel is in, waiting for the pass
        release.set()
        async with asyncio.timeout(30):
            assert await cancel == (200, {"jsonrpc": "2.0", "id": 1, "result": None})
        assert (await _done(running, brid)).results == Results.CANCELLED
        [build] = await running.master.db.builds.get_builds(buildrequestid=brid)
        assert (await running.result(build.id)).build.results == Results.CANCELLED


async def test_stop_while_a_step_is_being_added(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stop that comes while the build adds its step (before the step runs, so before it is
    the build's current step) still keeps the step's command from running: CANCELLED at once,
    not after the 60 s sleep."""
    port = free_port()
    async with (
        running_master(tmp_path, BODY.format(port=port)) as running,
        aiohttp.ClientSession() as http,
    ):
        api, updates = Api(http, port), running.master.data.updates
        add_step = updates.add_step
        adding, release = asyncio.Event(), asyncio.Event()

        async def held_add_step(*args: Any, **kwargs: Any) -> Any:
            added = await add_step(*args, **kwargs)
            adding.set()
            await release.wait()
            return added

        monkeypatch.setattr(updates, "add_step", held_add_step)
        brid = await _request(running, "slow")
        async with asyncio.timeout(30):
            await adding.wait()
        [build] = await running.master.db.builds.get_builds(buildrequestid=brid)
        await api.ok(f"builds/{build.id}", "stop", reason="enough")
        release.set()
        async with asyncio.timeout(30):
            assert (await _done(running, brid)).results == Results.CANCELLED
        result = await running.result(build.id)
        assert result.build.results == Results.CANCELLED
        [step] = result.steps
        assert step.results == Results.CANCELLED
