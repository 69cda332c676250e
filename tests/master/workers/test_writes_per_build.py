"""The socket writes the master makes to a msgpack worker per one-step build (issue 19: master
CPU per build).

Each write to a loopback socket is a system call that also runs the worker's receiving side; it
was a quarter of the master's CPU per build. The master writes the frames of one pass of its
event loop together (:class:`buildyard.protocol.frames.FrameBatch`). A real master with a real
worker runs one-step builds (``true``); the frames and the writes on the worker's connection are
counted between the request of each build and its buildset's ``complete``. The figures must not
grow: a write that comes back fails here.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from buildyard.testing.masters import add_plain_buildset, running_master

BODY = """
c['builders'] = [
    util.BuilderConfig(name="b", workernames=["w1"], factory=util.BuildFactory([
        steps.ShellCommand(name="quick", command=["true"]),
    ])),
]
"""

BUILDS = 3


async def _frames_and_writes(tmp_path: Path, worker: str) -> list[tuple[int, int]]:
    async with running_master(tmp_path, BODY, worker=worker) as running:
        master = running.master
        await running.build("b")  # warm: the worker has run the builder once
        builderid = await master.data.updates.find_builder_id("b")
        conn = master.workers.listener.connections["w1"]
        frames = conn.frames
        assert frames is not None
        per_build: list[tuple[int, int]] = []
        for _ in range(BUILDS):
            async with master.mq.subscribe(("buildsets", None, "complete")) as done:
                frames0, writes0 = frames.frames, frames.writes
                bsid, _brids = await add_plain_buildset(master.data.updates, builderid)
                async with asyncio.timeout(60):
                    while (await done.get())[0][1] != str(bsid):
                        pass
                per_build.append((frames.frames - frames0, frames.writes - writes0))
        builds = await master.db.builds.get_builds(builderid=builderid)
        assert [b.results for b in builds[-BUILDS:]] == [0] * BUILDS
    return per_build


@pytest.mark.parametrize(
    ("worker", "expected"),
    [
        # start_command; the answers to the update and to the complete, in one write (the
        # worker sends the complete without waiting for the answer to its update)
        ("buildyard", (3, 2)),
        ("stock", (3, 2)),
    ],
)
async def test_a_one_step_build_costs_a_fixed_number_of_writes(
    tmp_path: Path, worker: str, expected: tuple[int, int]
) -> None:
    per_build = await _frames_and_writes(tmp_path, worker)
    assert min(per_build) == expected, per_build
