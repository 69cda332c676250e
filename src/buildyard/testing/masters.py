"""A master in this process with a real worker, and helpers to run builds on it (tests only)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from buildyard.master.config.loader import load_master_config
from buildyard.master.db import migrate
from buildyard.master.master import BuildMaster
from buildyard.master.model.builds import Build
from buildyard.master.model.sourcestamps import SourceStampSpec
from buildyard.master.model.steps import Step
from buildyard.testing.postgres import free_port
from buildyard.testing.processes import end_popen, eventually
from buildyard.testing.workers import STOCK_PB, start_worker

HEADER = """\
from buildyard.plugins import *
c = BuildmasterConfig = {{}}
c['workers'] = [worker.Worker("w1", "pw")]
c['protocols'] = {{'msgpack_experimental_v7': {{'port': {port}, 'interface': '127.0.0.1'}}}}
c['db'] = {{'db_url': {db_url!r}}}
"""


#: the source stamp of a build forced without parameters
PLAIN_STAMP: dict[str, Any] = {
    "branch": None,
    "revision": None,
    "repository": "",
    "project": "",
    "codebase": "",
}


async def add_plain_buildset(updates: Any, builderid: int) -> tuple[int, dict[int, int]]:
    """A buildset for one builder with one empty source stamp (as a force without parameters
    makes), through the data API's ``updates``: its id and its requests' ids by builder."""
    bsid, brids = await updates.add_buildset(
        scheduler="test",
        sourcestamps=[dict(PLAIN_STAMP)],
        reason="test",
        properties={},
        builderids=[builderid],
    )
    return bsid, brids


@dataclasses.dataclass
class Running:
    master: BuildMaster
    # the worker's base directory
    worker_dir: Path
    basedir: Path

    async def build(
        self,
        builder: str,
        *,
        properties: Mapping[str, Any] | None = None,
        sourcestamps: Sequence[SourceStampSpec] | None = None,
        within: float = 120,
    ) -> BuildResult:
        """Request one build of ``builder`` and wait until it ended (its buildset's
        ``complete`` event; ``within`` only bounds a build that never ends)."""
        updates = self.master.data.updates
        builderid = await updates.find_builder_id(builder)
        stamps: Sequence[SourceStampSpec] = sourcestamps or [
            {"branch": None, "revision": None, "repository": "", "project": "", "codebase": ""}
        ]
        async with self.master.mq.subscribe(("buildsets", None, "complete")) as completed:
            bsid, brids = await updates.add_buildset(
                scheduler="test",
                sourcestamps=stamps,
                reason="test",
                properties={k: (v, "Test") for k, v in (properties or {}).items()},
                builderids=[builderid],
            )
            async with asyncio.timeout(within):
                while (await completed.get())[0][1] != str(bsid):
                    pass
        db = self.master.db
        [build] = await db.builds.get_builds(buildrequestid=brids[builderid])
        return await self.result(build.id)

    async def started_build(self, brid: int, *, within: float = 60) -> int:
        """The id of the build of request ``brid``, once its first step has started."""
        db = self.master.db

        async def started() -> bool:
            builds = await db.builds.get_builds(buildrequestid=brid)
            return bool(builds) and bool(await db.steps.get_steps(builds[0].id))

        await eventually(started, within=within)
        [build] = await db.builds.get_builds(buildrequestid=brid)
        return build.id

    async def result(self, buildid: int) -> BuildResult:
        db = self.master.db
        build = await db.builds.get_build(buildid)
        assert build is not None
        steps = await db.steps.get_steps(buildid)
        logs: dict[tuple[str, str], str] = {}
        for step in steps:
            for lg in await db.logs.get_logs(step.id):
                text = await db.logs.get_log_lines(lg.id, 0, lg.num_lines - 1)
                logs[(step.name, lg.name)] = text
        props = await db.builds.get_build_properties(buildid)
        return BuildResult(build=build, steps=steps, logs=logs, properties=props)


@dataclasses.dataclass
class BuildResult:
    build: Build
    steps: list[Step]
    # (step name, log name) -> stored text (stdio lines keep their stream letter)
    logs: dict[tuple[str, str], str]
    properties: dict[str, tuple[Any, str]]

    def step(self, name: str) -> Step:
        [found] = [s for s in self.steps if s.name == name]
        return found

    def stdout(self, step: str, log: str = "stdio") -> str:
        """What the step's command printed on stdout (stream letters removed)."""
        return "".join(
            line[1:] + "\n" for line in self.logs[(step, log)].splitlines() if line[:1] == "o"
        )


@contextlib.asynccontextmanager
async def running_master(
    tmp_path: Path, body: str, *, worker: str = "buildyard", db_url: str = "sqlite:///state.sqlite"
) -> AsyncIterator[Running]:
    """A started master whose master.cfg is :data:`HEADER` (worker ``w1``, a free port; PB
    instead of msgpack for ``worker=STOCK_PB``) plus ``body`` (builders, ...), with a real
    worker of kind ``worker`` attached."""
    basedir = tmp_path / "master"
    basedir.mkdir()
    port = free_port()
    header = HEADER.format(port=port, db_url=db_url)
    if worker == STOCK_PB:  # the stock worker's default protocol, on the same port
        header += f"c['protocols'] = {{'pb': {{'port': {port}, 'interface': '127.0.0.1'}}}}\n"
    (basedir / "master.cfg").write_text(header + body)
    master = BuildMaster(basedir, config=load_master_config(basedir))
    await migrate.upgrade(master.db)
    await master.start()
    worker_dir = tmp_path / "worker"
    try:
        # the worker is given builds once its connect sequence is over, which is when the
        # master announces it connected
        async with master.mq.subscribe(("workers", None, "connected")) as connected:
            proc = await asyncio.to_thread(start_worker, worker, worker_dir, port, "w1", "pw")
            try:
                async with asyncio.timeout(120):  # bounds a worker that never connects
                    await connected.get()
            except BaseException:
                end_popen(proc)
                raise
        try:
            yield Running(master=master, worker_dir=worker_dir, basedir=basedir)
        finally:
            end_popen(proc)
    finally:
        await master.stop()
