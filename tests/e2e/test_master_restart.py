"""A master SIGKILLed mid-build and started again: the build it left is ended RETRY (its state
string says so), and the request runs to completion exactly once more."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

import pytest

from buildyard.common.clock import SystemClock
from buildyard.master.db.connector import Database
from buildyard.master.model.results import Results
from buildyard.testing.postgres import free_port
from buildyard.testing.processes import buildyard, end_popen, eventually, spawn_master
from buildyard.testing.workers import start_worker

pytestmark = pytest.mark.e2e

CONFIG = """\
from buildyard.plugins import *
c = BuildmasterConfig = {{}}
c['workers'] = [worker.Worker("w1", "pw")]
c['protocols'] = {{'msgpack_experimental_v7': {{'port': {port}, 'interface': '127.0.0.1'}}}}
c['db'] = {{'db_url': {db_url!r}}}
f = util.BuildFactory([
    steps.ShellCommand(
        name="slow",
        command="if [ -f {marker} ]; then echo again; exit 0; fi; touch {marker}; sleep 120",
    ),
])
c['builders'] = [util.BuilderConfig(name="b", workernames=["w1"], factory=f)]
"""


async def test_builds_left_by_a_killed_master_end_and_their_requests_run_again(
    tmp_path: Path, db_url: str
) -> None:
    basedir = tmp_path / "master"
    basedir.mkdir()
    port = free_port()
    marker = tmp_path / "started"
    (basedir / "master.cfg").write_text(CONFIG.format(port=port, marker=marker, db_url=db_url))
    assert buildyard("upgrade-master", str(basedir)).returncode == 0
    db = Database(db_url, clock=SystemClock(), basedir=basedir)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        # a request waiting before the master starts: its first distribution pass takes it
        builderid = await db.builders.find_builder_id("b")
        bsid, brids = await db.buildsets.add_buildset(
            sourcestamps=[
                {"branch": None, "revision": None, "repository": "", "project": "", "codebase": ""}
            ],
            reason="test",
            properties={},
            builderids=[builderid],
            waited_for=False,
        )
        brid = brids[builderid]
        procs.append(spawn_master(basedir))
        procs.append(
            await asyncio.to_thread(start_worker, "buildyard", tmp_path / "w", port, "w1", "pw")
        )
        await eventually(marker.exists, within=60)
        os.kill(procs[0].pid, signal.SIGKILL)
        procs[0].wait()

        procs[0] = spawn_master(basedir)

        async def complete() -> bool:
            bs = await db.buildsets.get_buildset(bsid)
            return bs is not None and bs.complete

        await eventually(complete, within=90)
        builds = sorted(await db.builds.get_builds(buildrequestid=brid), key=lambda b: b.id)
        assert [b.results for b in builds] == [Results.RETRY, Results.SUCCESS]
        # the build the dead master left says why it ended, no longer "building"
        assert builds[0].state_string == "retry (master lost)"
        assert all(b.complete_at is not None for b in builds)
        [request] = await db.buildrequests.get_buildrequests(bsid=bsid)
        assert request.results == Results.SUCCESS
        # nothing is left running, and no other build was made
        assert [b for b in await db.builds.get_builds() if b.complete_at is None] == []
    finally:
        for proc in reversed(procs):
            end_popen(proc)
        await db.close()
