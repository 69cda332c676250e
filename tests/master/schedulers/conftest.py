"""Schedulers over a real database (both backends), the in-process MQ and a FakeClock."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from buildyard.master.data.queries import Queries
from buildyard.master.data.updates import Updates
from buildyard.master.db.connector import Database
from buildyard.master.mq.local import LocalMQ, LocalSubscription
from buildyard.master.schedulers.arguments import SchedulerBase
from buildyard.master.schedulers.base import SchedulerContext
from buildyard.master.schedulers.service import BuildsetScheduler
from buildyard.testing.clock import FakeClock


@pytest.fixture
def mq() -> LocalMQ:
    return LocalMQ()


@pytest.fixture
def updates(database: Database, mq: LocalMQ, clock: FakeClock) -> Updates:
    return Updates(db=database, mq=mq, clock=clock)


@pytest.fixture
async def ctx(
    updates: Updates, mq: LocalMQ, clock: FakeClock, database: Database
) -> SchedulerContext:
    masterid = await updates.find_master_id("master-1")
    await updates.master_active(name="master-1", masterid=masterid)
    for name in ("b1", "b2", "b3"):
        await updates.find_builder_id(name)
    return SchedulerContext(
        updates=updates,
        mq=mq,
        clock=clock,
        masterid=lambda: masterid,
        queries=Queries(db=database),
    )


@dataclasses.dataclass
class BuildsetSeen:
    bsid: int
    reason: str
    properties: dict[str, tuple[Any, str]]
    builders: list[str]
    priority: int
    # (codebase, branch, revision, repository, project) per source stamp, by codebase
    stamps: list[tuple[str, str | None, str | None, str, str]]
    changeids: list[int]


class Buildsets:
    """The buildsets the schedulers add, read back from the database as they are announced.

    A task takes the announcements as they come, so the queue counts as idle for ``settle``."""

    def __init__(self, mq: LocalMQ, database: Database) -> None:
        self._sub: LocalSubscription = mq.subscribe(("buildsets", None, "new"))
        self._db = database
        self._seen: asyncio.Queue[int] = asyncio.Queue()

    async def run(self) -> None:
        async with self._sub:
            async for _key, body in self._sub:
                self._seen.put_nowait(int(body["bsid"]))

    async def next(self, within: float = 10) -> BuildsetSeen:
        async with asyncio.timeout(within):
            bsid = await self._seen.get()
        return await self._read(bsid)

    def pending(self) -> int:
        return self._seen.qsize()

    async def _read(self, bsid: int) -> BuildsetSeen:
        bs = await self._db.buildsets.get_buildset(bsid)
        assert bs is not None
        props = await self._db.buildsets.get_buildset_properties(bsid)
        requests = await self._db.buildrequests.get_buildrequests(bsid=bsid)
        names = []
        for br in sorted(requests, key=lambda r: r.builderid):
            builder = await self._db.builders.get_builder(br.builderid)
            assert builder is not None
            names.append(builder.name)
        stamps = [await self._db.sourcestamps.get_sourcestamp(i) for i in bs.sourcestamps]
        changes = await self._db.changes.get_changes_for_buildset(bsid)
        return BuildsetSeen(
            bsid=bsid,
            reason=bs.reason or "",
            properties=dict(props),
            builders=names,
            priority=requests[0].priority if requests else 0,
            stamps=sorted(
                (s.codebase, s.branch, s.revision, s.repository, s.project)
                for s in stamps
                if s is not None
            ),
            changeids=sorted(c.id for c in changes),
        )


@pytest.fixture
async def buildsets(mq: LocalMQ, database: Database) -> AsyncIterator[Buildsets]:
    seen = Buildsets(mq, database)
    task = asyncio.create_task(seen.run())
    try:
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@asynccontextmanager
async def running(config: SchedulerBase, ctx: SchedulerContext) -> AsyncIterator[Any]:
    """The scheduler's service, started and activated (this master holds it)."""
    service = config.make_service(config.name, ctx)
    assert isinstance(service, BuildsetScheduler)
    await service.start()
    try:
        async with asyncio.timeout(10):
            await service.activated.wait()
        yield service
    finally:
        await service.stop()


async def settle(service: BuildsetScheduler) -> None:
    """Every event delivered and handled, and no write of the scheduler in progress."""
    for _ in range(3):
        await service.ctx.mq.wait_idle()
        async with service.lock:
            pass
        await asyncio.sleep(0)


AddChange = Callable[..., Awaitable[int]]


@pytest.fixture
def add_change(updates: Updates) -> AddChange:
    async def add(**kw: Any) -> int:
        values: dict[str, Any] = {"author": "alice <alice@example.com>", "files": ["src/a.c"]}
        values.update(kw)
        return await updates.add_change(**values)

    return add
