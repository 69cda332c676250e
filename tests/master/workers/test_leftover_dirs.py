"""A worker created with ``--delete-leftover-dirs`` has the directories of its basedir that no
builder uses removed at connect (msgpack; on PB the stock worker does it itself), files and
the builders' directories left alone."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from buildyard.testing.masters import running_master
from buildyard.testing.processes import end_popen, eventually
from buildyard.testing.workers import start_worker

BODY = """
c['workers'].append(worker.Worker("w2", "pw"))
c['builders'] = [
    util.BuilderConfig(name="b", workernames=["w1"], factory=util.BuildFactory([
        steps.ShellCommand(name="hi", command=["true"])])),
    util.BuilderConfig(name="kept", workernames=["w2"], factory=util.BuildFactory([
        steps.ShellCommand(name="hi", command=["true"])])),
]
"""


@pytest.mark.parametrize("kind", ["buildyard", "stock"])
async def test_leftover_builder_directories_are_removed_at_connect(
    tmp_path: Path, kind: str
) -> None:
    async with running_master(tmp_path, BODY) as running:
        cfg = (running.basedir / "master.cfg").read_text()
        port = int(re.search(r"'port': (\d+)", cfg).group(1))  # type: ignore[union-attr]
        basedir = tmp_path / "w2"
        # what an old builder left in the worker's directory, and a file of the user's
        (basedir / "old_builder" / "build").mkdir(parents=True)
        (basedir / "old_builder" / "build" / "f").write_text("x")
        (basedir / "notes.txt").write_text("mine")
        proc = await asyncio.to_thread(
            start_worker, kind, basedir, port, "w2", "pw", create_options=["--delete-leftover-dirs"]
        )
        try:
            await eventually((basedir / "kept").is_dir, within=60)
            await eventually(lambda: not (basedir / "old_builder").exists(), within=30)
            assert (basedir / "notes.txt").read_text() == "mine"
            assert (basedir / "info").is_dir()
        finally:
            await asyncio.to_thread(end_popen, proc)
