"""Stopping builds, cancelling requests, rebuilding, pausing workers, priorities and dynamic
steps, with real builds on a real worker."""

from __future__ import annotations

import asyncio
from pathlib import Path

from buildyard.master.master import BuildMaster
from buildyard.master.model.results import Results
from buildyard.testing.masters import running_master
from buildyard.testing.processes import eventually

BODY = """
from buildyard.master.steps.base import BuildStep

class AddSteps(BuildStep):
    async def run(self):
        self.build.addStepsAfterCurrentStep([
            steps.ShellCommand(name="added1", command="echo one"),
            steps.ShellCommand(name="added2", command="echo two"),
        ])
        return util.SUCCESS

c['builders'] = [
    util.BuilderConfig(name="slow", workernames=["w1"], factory=util.BuildFactory([
        steps.ShellCommand(name="sleep", command="sleep 60"),
        steps.ShellCommand(name="later", command="echo later"),
    ])),
    util.BuilderConfig(name="quick", workernames=["w1"], factory=util.BuildFactory([
        steps.ShellCommand(name="say", command=util.Interpolate("echo %(prop:revision)s")),
    ])),
    util.BuilderConfig(name="dynamic", workernames=["w1"], factory=util.BuildFactory([
        AddSteps(name="add"),
        steps.ShellCommand(name="last", command="echo last"),
    ])),
]
c['collapseRequests'] = False
# one build at a time, so the order of build numbers is the order builds were chosen in
c['workers'] = [worker.Worker("w1", "pw", max_builds=1)]
"""


async def _add(m: BuildMaster, builder: str, *, revision: str = "r", priority: int = 0) -> int:
    builderid = await m.data.updates.find_builder_id(builder)
    _bsid, brids = await m.data.updates.add_buildset(
        scheduler="test",
        sourcestamps=[
            {
                "branch": "main",
                "revision": revision,
                "repository": "",
                "project": "",
                "codebase": "",
            }
        ],
        reason="test",
        properties={},
        builderids=[builderid],
        priority=priority,
    )
    return brids[builderid]


async def _request_done(m: BuildMaster, brid: int) -> None:
    async def done() -> bool:
        r = await m.db.buildrequests.get_buildrequest(brid)
        return r is not None and r.complete

    await eventually(done, within=60)


async def test_stop_cancel_rebuild_pause_priority_and_dynamic_steps(tmp_path: Path) -> None:
    async with running_master(tmp_path, BODY) as running:
        m = running.master
        db = m.db
        brd = m.botmaster.brd

        # stop a running build: its running step and the build end CANCELLED, the rest skipped
        brid = await _add(m, "slow")

        async def sleeping() -> bool:
            builds = await db.builds.get_builds(buildrequestid=brid)
            return bool(builds) and bool(await db.steps.get_steps(builds[0].id))

        await eventually(sleeping, within=60)
        [build] = await db.builds.get_builds(buildrequestid=brid)
        await asyncio.sleep(0.5)  # the command is running on the worker
        assert await brd.stop_build(build.id, "enough")
        await _request_done(m, brid)
        stopped = await running.result(build.id)
        assert stopped.build.results == Results.CANCELLED
        assert [(s.name, s.results) for s in stopped.steps] == [("sleep", Results.CANCELLED)]
        request = await db.buildrequests.get_buildrequest(brid)
        assert request is not None
        assert request.results == Results.CANCELLED
        assert stopped.build.state_string.startswith("cancelled (enough)")  # as Buildbot says

        # a paused worker takes no build; a waiting request can be cancelled
        workerid = await m.data.updates.find_worker_id("w1")
        await m.data.updates.set_worker_state(workerid=workerid, paused=True, graceful=False)
        waiting = await _add(m, "quick", revision="cancelled")
        low = await _add(m, "quick", revision="low", priority=1)
        high = await _add(m, "quick", revision="high", priority=5)
        await asyncio.sleep(1)
        assert await db.builds.get_builds(buildrequestid=waiting) == []
        assert await brd.cancel_buildrequest(waiting, "not wanted")
        cancelled = await db.buildrequests.get_buildrequest(waiting)
        assert cancelled is not None
        assert cancelled.results == Results.CANCELLED
        assert not await brd.cancel_buildrequest(waiting, "again")  # complete already

        # unpaused: the higher priority request is built first
        await m.data.updates.set_worker_state(workerid=workerid, paused=False, graceful=False)
        await _request_done(m, low)
        await _request_done(m, high)
        [b_low] = await db.builds.get_builds(buildrequestid=low)
        [b_high] = await db.builds.get_builds(buildrequestid=high)
        assert b_high.number < b_low.number
        assert await db.builds.get_builds(buildrequestid=waiting) == []

        # rebuild: the same source stamp and properties, on a new buildset
        bsid, brids = await brd.rebuild(b_high.id)
        [again_brid] = brids.values()
        await _request_done(m, again_brid)
        [again] = await db.builds.get_builds(buildrequestid=again_brid)
        rebuilt = await running.result(again.id)
        assert rebuilt.stdout("say") == "high\n"
        buildset = await db.buildsets.get_buildset(bsid)
        assert buildset is not None
        assert buildset.rebuilt_buildid == b_high.id

        # steps added while the build runs come right after the step that added them
        dynamic = await running.build("dynamic")
        assert [s.name for s in dynamic.steps] == ["add", "added1", "added2", "last"]
        assert dynamic.build.results == Results.SUCCESS
