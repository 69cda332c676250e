"""An upload interrupted on a running master leaves nothing behind: stopped (the build is
cancelled) or cut (the worker is lost) mid-transfer, its partial file and its journal entry go."""

from __future__ import annotations

from pathlib import Path

import pytest

from buildyard.master.model.results import Results
from buildyard.master.model.sourcestamps import SourceStampSpec
from buildyard.master.workers.transfers import JOURNAL
from buildyard.testing.masters import Running, running_master
from buildyard.testing.processes import eventually

BODY = """
f = util.BuildFactory([
    steps.ShellCommand(name="make", command="truncate -s 1G big.bin"),
    steps.FileUpload(workersrc="big.bin", masterdest="uploads/big.bin", blocksize=16 * 1024),
])
c['builders'] = [util.BuilderConfig(name="b", workernames=["w1"], factory=f)]
"""


async def _uploading(running: Running) -> tuple[int, Path]:
    """Start a build; (its id, the partial file) once the upload is under way."""
    updates = running.master.data.updates
    builderid = await updates.find_builder_id("b")
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
    uploads = running.basedir / "uploads"

    def receiving() -> list[Path]:
        found = list(uploads.glob(".big.bin.*.part")) if uploads.is_dir() else []
        return [p for p in found if p.stat().st_size > 0]

    await eventually(lambda: bool(receiving()), within=120)
    [part] = receiving()
    # the journal names it while it exists
    [entry] = (running.basedir / JOURNAL).iterdir()
    assert entry.read_text() == str(part)
    [build] = await running.master.db.builds.get_builds(buildrequestid=brids[builderid])
    return build.id, part


@pytest.mark.parametrize("how", ["stopped", "worker_lost"])
async def test_an_interrupted_upload_leaves_nothing_behind(tmp_path: Path, how: str) -> None:
    async with running_master(tmp_path, BODY) as running:
        master = running.master
        buildid, part = await _uploading(running)
        if how == "stopped":
            assert await master.botmaster.brd.stop_build(buildid, "enough")
        else:
            # paused, so that the request the lost build gives back does not run again at once
            conn = master.workers.listener.connections["w1"]
            assert conn.workerid is not None
            await master.data.updates.set_worker_state(
                workerid=conn.workerid, paused=True, graceful=False
            )
            await conn.abort()

        async def ended() -> bool:
            build = await master.db.builds.get_build(buildid)
            return build is not None and build.complete_at is not None

        await eventually(ended, within=120)
        build = await master.db.builds.get_build(buildid)
        assert build is not None
        expected = Results.CANCELLED if how == "stopped" else Results.RETRY
        assert build.results == expected
        assert not part.exists()
        assert list((running.basedir / "uploads").iterdir()) == []
        assert list((running.basedir / JOURNAL).iterdir()) == []
