"""The source stamps connector on both backends."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa

from buildyard.master.db import schema as t
from buildyard.master.db.connector import Database
from buildyard.master.db.hashes import multi_hash
from buildyard.master.db.query import Filter, Op, QueryOptions
from buildyard.master.db.sourcestamps import SourcestampsRepository
from buildyard.master.model.sourcestamps import SourceStampSpec
from buildyard.testing.clock import FakeClock
from tests.master.db import _rows


def _repo(database: Database, clock: FakeClock) -> SourcestampsRepository:
    return SourcestampsRepository(engine=database.engine, clock=clock)


STAMP: SourceStampSpec = {
    "branch": "main",
    "revision": "abc",
    "repository": "r",
    "project": "p",
    "codebase": "cb",
}


async def test_find_creates_with_hash_and_values(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    ssid = await repo.find_sourcestamp_id(**STAMP)
    ss = await repo.get_sourcestamp(ssid)
    assert ss is not None
    assert (ss.branch, ss.revision, ss.repository, ss.project, ss.codebase, ss.patch) == (
        "main",
        "abc",
        "r",
        "p",
        "cb",
        None,
    )
    assert ss.created_at == int(clock.now())
    async with database.reading() as c:
        stored = (await c.execute(sa.select(t.sourcestamps.c.ss_hash))).scalar_one()
    # docs/database.md, "Conventions": branch, revision, repository, project, codebase, patchid
    assert stored == multi_hash("main", "abc", "r", "p", "cb", None)


async def test_find_is_stable_and_distinguishes_values(
    database: Database, clock: FakeClock
) -> None:
    repo = _repo(database, clock)
    a = await repo.find_sourcestamp_id(
        branch="main", revision="abc", repository="r", project="p", codebase="cb"
    )
    clock.advance(10)
    assert (
        await repo.find_sourcestamp_id(
            branch="main", revision="abc", repository="r", project="p", codebase="cb"
        )
        == a
    )
    # None and "" differ, and each field counts
    b = await repo.find_sourcestamp_id(
        branch=None, revision="abc", repository="r", project="p", codebase="cb"
    )
    c = await repo.find_sourcestamp_id(
        branch="", revision="abc", repository="r", project="p", codebase="cb"
    )
    d = await repo.find_sourcestamp_id(
        branch="main", revision="abc", repository="r", project="p", codebase="other"
    )
    assert len({a, b, c, d}) == 4
    ss = await repo.get_sourcestamp(a)
    assert ss is not None and ss.created_at == int(clock.now()) - 10


async def test_patch_always_creates_new_stamp(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)

    common: SourceStampSpec = {
        "branch": "main",
        "revision": "abc",
        "repository": "r",
        "project": "p",
        "codebase": "",
    }
    plain = await repo.find_sourcestamp_id(**common)
    with_patch: SourceStampSpec = {
        **common,
        "patch_body": b"--- a\n+++ b\n\xff",
        "patch_level": 1,
        "patch_author": "me",
        "patch_comment": "try",
        "patch_subdir": "sub",
    }
    p1 = await repo.find_sourcestamp_id(**with_patch)
    text_patch: SourceStampSpec = {**common, "patch_body": "--- a\n", "patch_level": 0}
    p2 = await repo.find_sourcestamp_id(**text_patch)
    assert len({plain, p1, p2}) == 3
    ss = await repo.get_sourcestamp(p1)
    assert ss is not None and ss.patch is not None
    assert (ss.patch.body, ss.patch.level, ss.patch.author, ss.patch.comment, ss.patch.subdir) == (
        b"--- a\n+++ b\n\xff",
        1,
        "me",
        "try",
        "sub",
    )
    ss2 = await repo.get_sourcestamp(p2)
    assert ss2 is not None and ss2.patch is not None
    assert (ss2.patch.body, ss2.patch.author, ss2.patch.comment) == (b"--- a\n", "", "")
    async with database.reading() as c:
        n = (await c.execute(sa.select(sa.func.count()).select_from(t.patches))).scalar_one()
    assert n == 2


async def test_get_unknown_is_none(database: Database, clock: FakeClock) -> None:
    assert await _repo(database, clock).get_sourcestamp(404) is None


async def test_get_sourcestamps_all_by_buildset_and_options(
    database: Database, clock: FakeClock
) -> None:
    repo = _repo(database, clock)
    ids = [
        await repo.find_sourcestamp_id(
            branch=b, revision=None, repository="r", project="", codebase=cb
        )
        for b, cb in (("z", "a"), ("y", "b"), ("x", "c"))
    ]
    assert [s.id for s in await repo.get_sourcestamps()] == ids
    builderid = await _rows.add_builder(database)
    bsid, _brid = await _rows.add_request(database, builderid, ssids=(ids[2], ids[0]))
    assert [s.branch for s in await repo.get_sourcestamps(bsid)] == ["z", "x"]
    by_branch = QueryOptions(order=("branch",), limit=2)
    assert [s.branch for s in await repo.get_sourcestamps(options=by_branch)] == ["x", "y"]
    only_b = QueryOptions(filters=(Filter(field="codebase", op=Op.EQ, values=("b",)),))
    assert [s.id for s in await repo.get_sourcestamps(options=only_b)] == [ids[1]]


async def test_sourcestamps_for_build(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    s1 = await _rows.add_sourcestamp(database, codebase="one")
    s2 = await _rows.add_sourcestamp(database, codebase="two")
    masterid = await _rows.add_master(database)
    builderid = await _rows.add_builder(database)
    _bsid, brid = await _rows.add_request(database, builderid, ssids=(s2, s1))
    buildid = await _rows.add_build(
        database, builderid=builderid, buildrequestid=brid, masterid=masterid, number=1
    )
    assert [s.codebase for s in await repo.get_sourcestamps_for_build(buildid)] == ["one", "two"]
    assert await repo.get_sourcestamps_for_build(buildid + 1) == []


async def test_concurrent_finders_agree(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    ids = await asyncio.gather(
        *(
            repo.find_sourcestamp_id(
                branch="main", revision="r1", repository="r", project="", codebase=""
            )
            for _ in range(8)
        )
    )
    assert len(set(ids)) == 1
    assert len(await repo.get_sourcestamps()) == 1


async def test_sourcestamps_of_many_buildsets(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    s1 = await _rows.add_sourcestamp(database, codebase="one")
    s2 = await _rows.add_sourcestamp(database, codebase="two")
    builderid = await _rows.add_builder(database)
    both, _ = await _rows.add_request(database, builderid, ssids=(s2, s1))
    one, _ = await _rows.add_request(database, builderid, ssids=(s1,))
    none, _ = await _rows.add_request(database, builderid)
    found = await repo.get_sourcestamps_of_buildsets([none, one, both, both])
    assert {bsid: [s.codebase for s in stamps] for bsid, stamps in found.items()} == {
        both: ["one", "two"],
        one: ["one"],
    }
    # more buildsets than one query takes are read in several
    many = [(await _rows.add_request(database, builderid, ssids=(s2,)))[0] for _ in range(3)]
    found = await repo.get_sourcestamps_of_buildsets([*many, *range(10_000, 11_000)])
    assert sorted(found) == many
    assert await repo.get_sourcestamps_of_buildsets([]) == {}
