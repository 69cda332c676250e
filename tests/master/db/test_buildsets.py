"""The buildsets connector on both backends."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from buildyard.master.db import schema as t
from buildyard.master.db.buildsets import BuildsetsRepository
from buildyard.master.db.connector import Database
from buildyard.master.db.errors import BuildsetAlreadyComplete
from buildyard.master.db.query import Filter, Op, QueryOptions
from buildyard.master.model.results import Results
from buildyard.master.model.sourcestamps import SourceStampSpec
from buildyard.testing.clock import FakeClock
from tests.master.db import _rows

SPEC: SourceStampSpec = {
    "branch": "main",
    "revision": "abc",
    "repository": "https://git/r",
    "project": "p",
    "codebase": "",
}


def _repo(database: Database, clock: FakeClock) -> BuildsetsRepository:
    return BuildsetsRepository(engine=database.engine, clock=clock)


async def _count(database: Database, table: sa.Table) -> int:
    async with database.reading() as c:
        return int((await c.execute(sa.select(sa.func.count()).select_from(table))).scalar_one())


async def test_add_buildset_writes_everything(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    b1 = await _rows.add_builder(database, "b1")
    b2 = await _rows.add_builder(database, "b2")
    ssid = await _rows.add_sourcestamp(database, codebase="other")
    bsid, brids = await repo.add_buildset(
        sourcestamps=[ssid, SPEC],
        reason="forced",
        properties={"owner": ("me", "Force"), "n": ([1, 2], "Scheduler")},
        builderids=[b1, b2],
        waited_for=True,
        external_idstring="ext",
        priority=5,
    )
    assert set(brids) == {b1, b2} and brids[b1] != brids[b2]
    bs = await repo.get_buildset(bsid)
    assert bs is not None
    assert bs.sourcestamps[0] == ssid and len(bs.sourcestamps) == 2
    assert (bs.reason, bs.external_idstring, bs.submitted_at) == ("forced", "ext", int(clock.now()))
    assert (bs.complete, bs.complete_at, bs.results) == (False, None, None)
    assert await repo.get_buildset_properties(bsid) == {
        "owner": ("me", "Force"),
        "n": ([1, 2], "Scheduler"),
    }
    async with database.reading() as c:
        reqs = (await c.execute(sa.select(t.buildrequests).order_by(t.buildrequests.c.id))).all()
        stored_results = (await c.execute(sa.select(t.buildsets.c.results))).scalar_one()
        stored_prop = (
            await c.execute(
                sa.select(t.buildset_properties.c.property_value).where(
                    t.buildset_properties.c.property_name == "owner"
                )
            )
        ).scalar_one()
    assert [(r.builderid, r.priority, r.waited_for, r.complete, r.results) for r in reqs] == [
        (b1, 5, 1, 0, -1),
        (b2, 5, 1, 0, -1),
    ]
    assert [r.id for r in reqs] == [brids[b1], brids[b2]]
    # Buildbot's encodings: -1 for "no results yet", properties as JSON [value, source]
    assert stored_results == -1
    assert stored_prop == '["me", "Force"]'


async def test_add_buildset_is_one_transaction(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    builderid = await _rows.add_builder(database)
    with pytest.raises(sa.exc.IntegrityError):
        # the second builder does not exist: nothing at all may remain
        await repo.add_buildset(
            sourcestamps=[SPEC],
            reason="r",
            properties={"p": (1, "s")},
            builderids=[builderid, 9999],
            waited_for=False,
        )
    for table in (
        t.buildsets,
        t.buildrequests,
        t.buildset_properties,
        t.buildset_sourcestamps,
        t.sourcestamps,
    ):
        assert await _count(database, table) == 0, table.name


async def test_add_buildset_in_callers_transaction(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    builderid = await _rows.add_builder(database)
    async with database.transaction() as c:
        bsid, _ = await repo.add_buildset(
            sourcestamps=[SPEC],
            reason="r",
            properties={},
            builderids=[builderid],
            waited_for=False,
            submitted_at=123,
            conn=c,
        )
        bs = await repo.get_buildset(bsid, conn=c)
        assert bs is not None and bs.submitted_at == 123
    assert await _count(database, t.buildrequests) == 1


async def test_complete_buildset_once(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    builderid = await _rows.add_builder(database)
    bsid, _ = await repo.add_buildset(
        sourcestamps=[SPEC], reason="r", properties={}, builderids=[builderid], waited_for=False
    )
    clock.advance(60)
    await repo.complete_buildset(bsid, Results.WARNINGS)
    bs = await repo.get_buildset(bsid)
    assert bs is not None
    assert (bs.complete, bs.results, bs.complete_at) == (True, Results.WARNINGS, int(clock.now()))
    with pytest.raises(BuildsetAlreadyComplete):
        await repo.complete_buildset(bsid, Results.FAILURE)
    bs = await repo.get_buildset(bsid)
    assert bs is not None and bs.results == Results.WARNINGS
    with pytest.raises(BuildsetAlreadyComplete):
        await repo.complete_buildset(9999, Results.SUCCESS)


async def test_concurrent_completion_one_wins(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    builderid = await _rows.add_builder(database)
    bsid, _ = await repo.add_buildset(
        sourcestamps=[SPEC], reason="r", properties={}, builderids=[builderid], waited_for=False
    )
    outcomes = await asyncio.gather(
        repo.complete_buildset(bsid, Results.SUCCESS),
        repo.complete_buildset(bsid, Results.FAILURE),
        return_exceptions=True,
    )
    assert sum(isinstance(o, BuildsetAlreadyComplete) for o in outcomes) == 1
    assert sum(o is None for o in outcomes) == 1


async def test_get_buildsets_complete_filter_and_options(
    database: Database, clock: FakeClock
) -> None:
    repo = _repo(database, clock)
    builderid = await _rows.add_builder(database)
    ids = []
    for reason in ("c", "a", "b"):
        bsid, _ = await repo.add_buildset(
            sourcestamps=[SPEC],
            reason=reason,
            properties={},
            builderids=[builderid],
            waited_for=False,
        )
        ids.append(bsid)
    await repo.complete_buildset(ids[1], Results.SUCCESS)
    assert [bs.id for bs in await repo.get_buildsets()] == ids
    assert [bs.id for bs in await repo.get_buildsets(complete=True)] == [ids[1]]
    assert [bs.id for bs in await repo.get_buildsets(complete=False)] == [ids[0], ids[2]]
    by_reason = QueryOptions(order=("-reason",), limit=2)
    assert [bs.reason for bs in await repo.get_buildsets(options=by_reason)] == ["c", "b"]
    reason_a = QueryOptions(filters=(Filter(field="reason", op=Op.EQ, values=("a",)),))
    found = await repo.get_buildsets(options=reason_a)
    # the same stamp values were found, not duplicated
    assert [bs.sourcestamps for bs in found] == [(await repo.get_buildsets())[0].sourcestamps]
    assert await repo.get_buildset(9999) is None
