"""A buildset completion whose event never reached the scheduler waiting for it (another
master completed it while this one was not listening, or its queue lost more than it keeps)
is found in the database: by a Trigger's wait and by a Dependent."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from buildyard.master.model.results import Results
from buildyard.master.schedulers import triggerable
from buildyard.testing.masters import running_master
from buildyard.testing.processes import eventually

BODY = """
up = schedulers.Triggerable(name="up", builderNames=["nowhere"])
c['schedulers'] = [up, schedulers.Dependent(name="dep", upstream=up, builderNames=["after"])]
c['workers'] = [worker.Worker("w1", "pw"), worker.Worker("absent", "pw")]
c['builders'] = [
    # its only worker never connects: the request waits until the test completes it
    util.BuilderConfig(name="nowhere", workernames=["absent"], factory=util.BuildFactory()),
    util.BuilderConfig(name="after", workernames=["w1"], factory=util.BuildFactory([
        steps.ShellCommand(name="after", command="echo after"),
    ])),
]
"""


async def test_waits_find_a_completion_no_event_announced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(triggerable, "RECHECK", 0.5)
    async with running_master(tmp_path, BODY) as running:
        m = running.master
        db = m.db
        up = m.scheduler_manager.configured()["up"]
        dep = m.scheduler_manager.configured()["dep"]
        ids, result = await up.trigger(waited_for=True)  # type: ignore[attr-defined]

        async def remembered() -> bool:
            return ids.bsid in await dep.get_state("upstream_bsids", [])  # type: ignore[attr-defined]

        await eventually(remembered, within=30)
        # as another master would, but no event reaches this one: only the database says so
        [brid] = ids.brids.values()
        await db.buildrequests.claim_buildrequests([brid], masterid=m.masterid or 0)
        await db.buildrequests.complete_buildrequests([brid], Results.WARNINGS)
        await db.buildsets.complete_buildset(ids.bsid, Results.WARNINGS)

        async with asyncio.timeout(30):
            assert await result == Results.WARNINGS
        builders = {b.name: b.id for b in await db.builders.get_builders()}

        async def after_built() -> bool:
            builds = await db.builds.get_builds(builderid=builders["after"])
            return any(b.complete_at is not None for b in builds)

        await eventually(after_built, within=60)
        [after] = await db.builds.get_builds(builderid=builders["after"])
        assert after.results == Results.SUCCESS
        assert await dep.get_state("upstream_bsids", []) == []  # type: ignore[attr-defined]
