"""Trigger steps firing Triggerable schedulers, and a Dependent scheduler, in real builds."""

from __future__ import annotations

from pathlib import Path

from buildyard.master.model.results import Results
from buildyard.master.model.sourcestamps import SourceStampSpec
from buildyard.testing.masters import running_master
from buildyard.testing.processes import eventually

BODY = """
trig = schedulers.Triggerable(name="trig", builderNames=["child"])
bad = schedulers.Triggerable(name="bad", builderNames=["failing"])
# the two "bad" requests would be collapsed into one build when the second comes in time
c['collapseRequests'] = False
c['schedulers'] = [
    trig,
    bad,
    schedulers.Dependent(name="dep", upstream=trig, builderNames=["after"]),
]

def shell(name, command):
    return steps.ShellCommand(name=name, command=command)

c['builders'] = [
    util.BuilderConfig(name="parent", workernames=["w1"], factory=util.BuildFactory([
        steps.Trigger(name="wait", schedulerNames=["trig"], waitForFinish=True,
                      set_properties={"x": util.Interpolate("%(prop:word)s!")},
                      copy_properties=["word"]),
        steps.Trigger(name="nowait", schedulerNames=["bad"]),
        steps.Trigger(name="waitbad", schedulerNames=["bad"], waitForFinish=True),
    ])),
    util.BuilderConfig(name="child", workernames=["w1"], factory=util.BuildFactory([
        shell("show", util.Interpolate("echo %(prop:x)s %(prop:word)s")),
    ])),
    util.BuilderConfig(name="failing", workernames=["w1"], factory=util.BuildFactory([
        shell("fail", "exit 1"),
    ])),
    util.BuilderConfig(name="after", workernames=["w1"], factory=util.BuildFactory([
        shell("after", "echo after"),
    ])),
]
"""


async def test_trigger_waits_passes_properties_and_dependent_follows(tmp_path: Path) -> None:
    async with running_master(tmp_path, BODY) as running:
        parent = await running.build("parent", properties={"word": "hi"})
        db = running.master.db
        assert [(s.name, s.results) for s in parent.steps] == [
            ("wait", Results.SUCCESS),
            ("nowait", Results.SUCCESS),  # not waiting: SUCCESS once triggered
            ("waitbad", Results.FAILURE),  # waiting: the triggered build's FAILURE
        ]
        assert parent.build.results == Results.FAILURE
        assert parent.step("wait").urls  # a link to each triggered request

        builders = {b.name: b.id for b in await db.builders.get_builders()}
        [child] = await db.builds.get_builds(builderid=builders["child"])
        result = await running.result(child.id)
        assert result.build.results == Results.SUCCESS
        assert result.stdout("show") == "hi! hi\n"
        assert result.properties["x"] == ("hi!", "Trigger")
        assert result.properties["word"] == ("hi", "Trigger")
        [request] = await db.buildrequests.get_buildrequests(builderid=builders["child"])
        buildset = await db.buildsets.get_buildset(request.buildsetid)
        assert buildset is not None
        assert buildset.parent_buildid == parent.build.id
        assert buildset.parent_relationship == "Triggered from"

        # Dependent: the successful "trig" buildset made an "after" build
        async def after_built() -> bool:
            return any(
                b.complete_at is not None
                for b in await db.builds.get_builds(builderid=builders["after"])
            )

        await eventually(after_built, within=60)
        [after] = await db.builds.get_builds(builderid=builders["after"])
        assert after.results == Results.SUCCESS

        # the failing buildsets of "bad" are not upstream of anything: two "failing" builds
        # (the one "nowait" triggered may still be running when the parent ends)
        async def both_failed() -> bool:
            failing = await db.builds.get_builds(builderid=builders["failing"])
            return len(failing) == 2 and all(b.results == Results.FAILURE for b in failing)

        await eventually(both_failed, within=60)


STOP_BODY = """
c['schedulers'] = [
    schedulers.Triggerable(name="run", builderNames=["sleeper"]),
    schedulers.Triggerable(name="queue", builderNames=["nowhere"]),
]
c['workers'] = [worker.Worker("w1", "pw"), worker.Worker("absent", "pw")]
c['builders'] = [
    util.BuilderConfig(name="parent", workernames=["w1"], factory=util.BuildFactory([
        steps.Trigger(name="both", schedulerNames=["run", "queue"], waitForFinish=True),
    ])),
    util.BuilderConfig(name="sleeper", workernames=["w1"], factory=util.BuildFactory([
        steps.ShellCommand(name="sleep", command="sleep 60"),
    ])),
    # its only worker never connects: the request waits
    util.BuilderConfig(name="nowhere", workernames=["absent"], factory=util.BuildFactory([
        steps.ShellCommand(name="never", command="true"),
    ])),
]
"""


STAMP: SourceStampSpec = {
    "branch": None,
    "revision": None,
    "repository": "",
    "project": "",
    "codebase": "",
}


async def test_stopping_the_parent_cancels_what_it_triggered(tmp_path: Path) -> None:
    async with running_master(tmp_path, STOP_BODY) as running:
        m, db = running.master, running.master.db
        builderids = {b.name: b.id for b in await db.builders.get_builders()}
        parent_brid = (
            await m.data.updates.add_buildset(
                scheduler="test",
                sourcestamps=[STAMP],
                reason="test",
                properties={},
                builderids=[builderids["parent"]],
            )
        ).brids[builderids["parent"]]

        async def child_sleeping() -> bool:
            builds = await db.builds.get_builds(builderid=builderids["sleeper"])
            return bool(builds) and bool(await db.steps.get_steps(builds[0].id))

        await eventually(child_sleeping, within=60)
        [parent] = await db.builds.get_builds(buildrequestid=parent_brid)
        [child] = await db.builds.get_builds(builderid=builderids["sleeper"])
        [waiting] = await db.buildrequests.get_buildrequests(builderid=builderids["nowhere"])
        assert not waiting.complete
        assert await m.botmaster.brd.stop_build(parent.id, "enough")

        async def all_done() -> bool:
            requests = await db.buildrequests.get_buildrequests()
            return all(r.complete for r in requests)

        await eventually(all_done, within=60)
        assert (await running.result(parent.id)).build.results == Results.CANCELLED
        stopped = await running.result(child.id)
        assert stopped.build.results == Results.CANCELLED
        assert "parent build was interrupted" in stopped.build.state_string
        cancelled = await db.buildrequests.get_buildrequest(waiting.id)
        assert cancelled is not None and cancelled.results == Results.CANCELLED
        assert not await db.builds.get_builds(builderid=builderids["nowhere"])


NIGHTLY_BODY = """
c['schedulers'] = [schedulers.NightlyTriggerable(name="later", builderNames=["child"], hour=3)]
c['builders'] = [
    util.BuilderConfig(name="parent", workernames=["w1"], factory=util.BuildFactory([
        steps.Trigger(name="tonight", schedulerNames=["later"], waitForFinish=True,
                      set_properties={"why": "nightly"}),
    ])),
    util.BuilderConfig(name="child", workernames=["w1"], factory=util.BuildFactory([
        steps.ShellCommand(name="never", command="true"),
    ])),
]
"""


async def test_triggering_a_nightly_triggerable_records_the_trigger(tmp_path: Path) -> None:
    async with running_master(tmp_path, NIGHTLY_BODY) as running:
        parent = await running.build("parent", properties={"word": "hi"})
        assert [(s.name, s.results) for s in parent.steps] == [("tonight", Results.SUCCESS)]
        assert not parent.step("tonight").urls  # no buildset yet: it builds at 3 o'clock
        updates = running.master.data.updates
        objectid = await updates.get_object_id("later", "NightlyTriggerable")
        stamps, props, parent_buildid, relationship = await updates.get_state(
            objectid, "lastTrigger"
        )
        assert props == {"why": ["nightly", "Trigger"]}
        assert parent_buildid == parent.build.id and relationship == "Triggered from"
        assert [s["codebase"] for s in stamps] == [""]
        assert await running.master.db.buildsets.get_buildsets() != []  # only the parent's
        assert len(await running.master.db.buildsets.get_buildsets()) == 1
