"""A worker SIGKILLed mid-build: the build ends RETRY and its request runs again elsewhere."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

import pytest

from buildyard.master.config.loader import load_master_config
from buildyard.master.db import migrate
from buildyard.master.master import BuildMaster
from buildyard.master.model.results import Results
from buildyard.testing.postgres import free_port
from buildyard.testing.processes import end_popen, eventually
from buildyard.testing.workers import KINDS, STOCK_PB, start_worker

pytestmark = pytest.mark.e2e

CONFIG = """\
from buildyard.plugins import *
c = BuildmasterConfig = {{}}
c['workers'] = [worker.Worker("w1", "pw"), worker.Worker("w2", "pw")]
c['protocols'] = {{'msgpack_experimental_v7': {{'port': {port}, 'interface': '127.0.0.1'}},
                   'pb': {{'port': {pb_port}, 'interface': '127.0.0.1'}}}}
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
f = util.BuildFactory([
    steps.ShellCommand(name="first", command="echo first"),
    steps.ShellCommand(
        name="slow",
        command="if [ -f {marker} ]; then echo second run; exit 0; fi; touch {marker}; sleep 120",
    ),
])
c['builders'] = [util.BuilderConfig(name="b", workernames=["w1", "w2"], factory=f)]
"""


@pytest.mark.parametrize("kind", [*KINDS, STOCK_PB])
async def test_a_build_whose_worker_dies_is_retried_on_another_worker(
    tmp_path: Path, kind: str
) -> None:
    basedir = tmp_path / "master"
    basedir.mkdir()
    port, pb_port = free_port(), free_port()
    marker = tmp_path / "started"
    (basedir / "master.cfg").write_text(CONFIG.format(port=port, pb_port=pb_port, marker=marker))
    master = BuildMaster(basedir, config=load_master_config(basedir))
    await migrate.upgrade(master.db)
    await master.start()
    procs: dict[str, subprocess.Popen[bytes]] = {}
    to = pb_port if kind == STOCK_PB else port
    try:
        for name in ("w1", "w2"):
            procs[name] = await asyncio.to_thread(
                start_worker, kind, tmp_path / name, to, name, "pw"
            )
        listener = master.workers.listener
        await eventually(lambda: {"w1", "w2"} <= set(listener.connections), within=60)
        updates = master.data.updates
        builderid = await updates.find_builder_id("b")
        bsid, brids = await updates.add_buildset(
            scheduler="test",
            sourcestamps=[
                {"branch": None, "revision": None, "repository": "", "project": "", "codebase": ""}
            ],
            reason="test",
            properties={},
            builderids=[builderid],
        )
        await eventually(marker.exists, within=60)
        [first] = await master.db.builds.get_builds(buildrequestid=brids[builderid])
        victim = next(n for n, c in listener.connections.items() if c.workerid == first.workerid)
        os.kill(procs[victim].pid, signal.SIGKILL)

        async def complete() -> bool:
            bs = await master.db.buildsets.get_buildset(bsid)
            return bs is not None and bs.complete

        await eventually(complete, within=60)
        builds = sorted(
            await master.db.builds.get_builds(buildrequestid=brids[builderid]), key=lambda b: b.id
        )
        assert [b.results for b in builds] == [Results.RETRY, Results.SUCCESS]
        assert builds[1].workerid != first.workerid
        assert builds[0].state_string.startswith("retry lost connection")  # as Buildbot says
        steps = await master.db.steps.get_steps(builds[0].id)
        assert [(s.name, s.results) for s in steps] == [
            ("first", Results.SUCCESS),
            ("slow", Results.RETRY),
        ]
        [request] = await master.db.buildrequests.get_buildrequests(bsid=bsid)
        assert request.complete
        assert request.results == Results.SUCCESS
    finally:
        for proc in procs.values():
            end_popen(proc)
        await master.stop()
