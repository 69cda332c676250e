"""The workers a distribution pass leaves alone (paused, or shutting down gracefully) are read
once and kept: read again after their ``state_updated`` event, and at each full reading of the
index (a change made by another master without a shared queue reaches the database only)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from buildyard.testing.masters import add_plain_buildset, running_master
from buildyard.testing.processes import eventually

BODY = """
c['builders'] = [
    util.BuilderConfig(name="b", workernames=["w1"], factory=util.BuildFactory([
        steps.ShellCommand(name="quick", command=["true"]),
    ])),
]
"""


async def test_a_pause_made_in_the_database_alone_is_seen_at_the_next_full_reading(
    tmp_path: Path,
) -> None:
    async with running_master(tmp_path, BODY) as running:
        master = running.master
        brd = master.botmaster.brd
        await running.build("b")  # the passes so far read the held workers: none
        builderid = await master.data.updates.find_builder_id("b")
        workerid = await master.data.updates.find_worker_id("w1")
        # what another master without a shared queue does: the row changes, no event here
        await master.db.workers.set_worker_state(workerid, paused=True, graceful=False)
        brd.request_resync()
        async with master.mq.subscribe(("buildsets", None, "complete")) as done:
            bsid, brids = await add_plain_buildset(master.data.updates, builderid)
            # a whole pass after the request came: it was not given to the paused worker
            passes = brd.passes
            brd.maybe_start_builds()
            await eventually(lambda: brd.passes >= passes + 2, within=60)
            (brid,) = brids.values()
            request = await master.db.buildrequests.get_buildrequest(brid)
            assert request is not None and not request.claimed
            # unpaused the same way: the next full reading gives it the build
            await master.db.workers.set_worker_state(workerid, paused=False, graceful=False)
            brd.request_resync()
            async with asyncio.timeout(60):
                while (await done.get())[0][1] != str(bsid):
                    pass
