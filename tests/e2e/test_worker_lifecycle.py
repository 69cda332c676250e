"""Graceful shutdown of a worker (its build finishes, then it is told to exit), and the
``missing`` event of a worker gone for its missing_timeout, on both workers."""

from __future__ import annotations

import asyncio
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
c['workers'] = [worker.Worker("w1", "pw", missing_timeout=1, notify_on_missing=["ops@example.org"])]
c['protocols'] = {{'msgpack_experimental_v7': {{'port': {port}, 'interface': '127.0.0.1'}},
                   'pb': {{'port': {pb_port}, 'interface': '127.0.0.1'}}}}
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
c['builders'] = [util.BuilderConfig(name="b", workernames=["w1"], factory=util.BuildFactory([
    steps.ShellCommand(command=util.Interpolate("sleep %(prop:pause:-0)s")),
]))]
"""


async def _request(m: BuildMaster, pause: str) -> int:
    builderid = await m.data.updates.find_builder_id("b")
    _bsid, brids = await m.data.updates.add_buildset(
        scheduler="test",
        sourcestamps=[
            {"branch": None, "revision": pause, "repository": "", "project": "", "codebase": ""}
        ],
        reason="test",
        properties={"pause": (pause, "Test")},
        builderids=[builderid],
    )
    return brids[builderid]


@pytest.mark.parametrize("kind", [*KINDS, STOCK_PB])
async def test_graceful_shutdown_then_missing(tmp_path: Path, kind: str) -> None:
    basedir = tmp_path / "master"
    basedir.mkdir()
    port, pb_port = free_port(), free_port()
    (basedir / "master.cfg").write_text(CONFIG.format(port=port, pb_port=pb_port))
    m = BuildMaster(basedir, config=load_master_config(basedir))
    await migrate.upgrade(m.db)
    await m.start()
    proc: subprocess.Popen[bytes] | None = None
    try:
        to = pb_port if kind == STOCK_PB else port
        proc = await asyncio.to_thread(start_worker, kind, tmp_path / "w", to, "w1", "pw")
        await eventually(lambda: "w1" in m.workers.listener.connections, within=60)
        running = await _request(m, "2")

        async def started() -> bool:
            return bool(await m.db.builds.get_builds(buildrequestid=running))

        await eventually(started, within=30)
        workerid = await m.data.updates.find_worker_id("w1")
        missing = m.mq.subscribe(("workers", None, "missing"))
        await m.data.updates.set_worker_state(workerid=workerid, paused=False, graceful=True)
        later = await _request(m, "0")

        # the running build ends normally; then the worker is asked to exit, and does
        assert await asyncio.to_thread(proc.wait, 60) is not None
        [build] = await m.db.builds.get_builds(buildrequestid=running)
        assert build.results == Results.SUCCESS
        assert await m.db.builds.get_builds(buildrequestid=later) == []  # no new build

        # gone for missing_timeout (1 s): announced missing, with whom to tell
        async with asyncio.timeout(30):
            key, body = await missing.get()
        assert key == ("workers", str(workerid), "missing")
        assert body["name"] == "w1"
        assert body["notify"] == ["ops@example.org"]
        assert isinstance(body["last_connection"], str)
        missing.close()
    finally:
        if proc is not None:
            end_popen(proc)
        await m.stop()
