"""A master SIGKILLed while a worker uploads a large file to it: the partial file it was writing
(``.NAME.RANDOM.part`` beside the destination) is removed when the master starts again."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

import pytest

from buildyard.common.clock import SystemClock
from buildyard.master.db.connector import Database
from buildyard.testing.postgres import free_port
from buildyard.testing.processes import buildyard, end_popen, eventually, spawn_master
from buildyard.testing.workers import start_worker

pytestmark = pytest.mark.e2e

CONFIG = """\
from buildyard.plugins import *
c = BuildmasterConfig = {{}}
c['workers'] = [worker.Worker("w1", "pw")]
c['protocols'] = {{'msgpack_experimental_v7': {{'port': {port}, 'interface': '127.0.0.1'}}}}
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
f = util.BuildFactory([
    # 1 GiB, sparse on the worker; small blocks keep the upload going for a while
    steps.ShellCommand(name="make", command="truncate -s 1G big.bin"),
    steps.FileUpload(workersrc="big.bin", masterdest="uploads/big.bin", blocksize=16 * 1024),
])
c['builders'] = [util.BuilderConfig(name="b", workernames=["w1"], factory=f)]
"""


async def test_a_killed_masters_partial_upload_is_removed_when_it_starts_again(
    tmp_path: Path,
) -> None:
    basedir = tmp_path / "master"
    basedir.mkdir()
    port = free_port()
    (basedir / "master.cfg").write_text(CONFIG.format(port=port))
    assert buildyard("upgrade-master", str(basedir)).returncode == 0
    uploads = basedir / "uploads"
    db_url = f"sqlite:///{basedir / 'state.sqlite'}"
    db = Database(db_url, clock=SystemClock(), basedir=basedir)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        builderid = await db.builders.find_builder_id("b")
        await db.buildsets.add_buildset(
            sourcestamps=[
                {"branch": None, "revision": None, "repository": "", "project": "", "codebase": ""}
            ],
            reason="test",
            properties={},
            builderids=[builderid],
            waited_for=False,
        )
        procs.append(spawn_master(basedir))
        procs.append(
            await asyncio.to_thread(start_worker, "buildyard", tmp_path / "w", port, "w1", "pw")
        )

        def receiving() -> list[Path]:
            found = list(uploads.glob(".big.bin.*.part")) if uploads.is_dir() else []
            return [p for p in found if p.stat().st_size > 0]

        await eventually(lambda: bool(receiving()), within=120)
        os.kill(procs[0].pid, signal.SIGKILL)
        procs[0].wait()
        [part] = receiving()
        assert not (uploads / "big.bin").exists()  # the upload was under way
        end_popen(procs[1])  # no worker: the request it gives back does not run again

        procs[0] = spawn_master(basedir)
        await eventually(lambda: not part.exists(), within=120)
        assert list(uploads.iterdir()) == []
        assert "interrupted_upload_removed" in (basedir / "out.log").read_text()
        assert list((basedir / "uploads-in-progress").iterdir()) == []  # the journal is empty
    finally:
        for proc in reversed(procs):
            end_popen(proc)
        await db.close()
