"""The distributor on a master in this process with a real worker: a worker runs one build of a
builder at a time (max_builds unset), while builds of other builders run beside it."""

from __future__ import annotations

import itertools
from pathlib import Path

from buildyard.master.model.results import Results
from buildyard.master.model.sourcestamps import SourceStampSpec
from buildyard.testing.masters import Running, running_master
from buildyard.testing.processes import eventually

BODY = """
wait = ("i=0; while [ ! -f {release} ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done; "
        "[ -f {release} ]")
c['builders'] = [
    util.BuilderConfig(name="slow", workernames=["w1"], factory=util.BuildFactory([
        steps.ShellCommand(name="wait", command=wait),
    ])),
    util.BuilderConfig(name="other", workernames=["w1"], factory=util.BuildFactory([
        steps.ShellCommand(name="wait", command=wait),
    ])),
]
c['collapseRequests'] = False
"""


async def _request(running: Running, builder: str) -> int:
    updates = running.master.data.updates
    builderid = await updates.find_builder_id(builder)
    stamp: SourceStampSpec = {
        "branch": None,
        "revision": None,
        "repository": "",
        "project": "",
        "codebase": "",
    }
    _bsid, brids = await updates.add_buildset(
        scheduler="test", sourcestamps=[stamp], reason="test", properties={}, builderids=[builderid]
    )
    return brids[builderid]


async def test_a_worker_runs_one_build_of_a_builder_at_a_time(tmp_path: Path) -> None:
    release = tmp_path / "release"
    body = BODY.replace("{release}", str(release))
    async with running_master(tmp_path, body) as running:
        db = running.master.db
        brd = running.master.botmaster.brd
        slow = [await _request(running, "slow") for _ in range(3)]
        other = await _request(running, "other")
        # the first "slow" request and the "other" one run at once on w1 (max_builds unset)
        await running.started_build(slow[0])
        await running.started_build(other)
        assert sorted(b.name for b in brd.builds_of("slow") + brd.builds_of("other")) == [
            "other",
            "slow",
        ]
        # the other two "slow" requests wait, unclaimed, for w1's "slow" build to end
        passes = brd.passes
        brd.maybe_start_builds()  # one more pass, now that both builds run
        await eventually(lambda: brd.passes > passes, within=60)
        waiting = await db.buildrequests.get_buildrequests(claimed=False)
        assert sorted(r.id for r in waiting) == slow[1:]
        assert len(brd.building) == 2

        release.touch()

        async def all_done() -> bool:
            requests = [await db.buildrequests.get_buildrequest(b) for b in [*slow, other]]
            return all(r is not None and r.complete for r in requests)

        await eventually(all_done, within=120)
        builds = sorted(
            [b for brid in slow for b in await db.builds.get_builds(buildrequestid=brid)],
            key=lambda b: b.id,
        )
        assert [b.results for b in builds] == [Results.SUCCESS] * 3
        assert [b.buildrequestid for b in builds] == slow
        for before, after in itertools.pairwise(builds):
            assert before.complete_at is not None
            assert after.started_at >= before.complete_at
