"""The builders connector on both backends."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from buildyard.master.db import schema as t
from buildyard.master.db.base import inserted_id
from buildyard.master.db.builders import BuildersRepository
from buildyard.master.db.connector import Database
from buildyard.master.db.errors import DbError
from buildyard.master.db.hashes import name_hash
from buildyard.master.db.query import Filter, Op, QueryOptions
from buildyard.master.model.builders import Builder
from buildyard.testing.clock import FakeClock
from tests.master.db import _rows


def _repo(database: Database, clock: FakeClock) -> BuildersRepository:
    return BuildersRepository(engine=database.engine, clock=clock)


async def _count(database: Database, table: sa.Table) -> int:
    async with database.reading() as c:
        return int((await c.execute(sa.select(sa.func.count()).select_from(table))).scalar_one())


async def _configure(database: Database, workerid: int, builderid: int, masterid: int) -> None:
    async with database.transaction() as c:
        bmid = (
            await c.execute(
                sa.select(t.builder_masters.c.id).where(
                    t.builder_masters.c.builderid == builderid,
                    t.builder_masters.c.masterid == masterid,
                )
            )
        ).scalar_one()
        await c.execute(
            t.configured_workers.insert().values(buildermasterid=bmid, workerid=workerid)
        )


async def test_find_builder_id_creates_stable_distinct_builders(
    database: Database, clock: FakeClock
) -> None:
    repo = _repo(database, clock)
    a = await repo.find_builder_id("linux")
    b = await repo.find_builder_id("windows")
    assert a != b
    assert await repo.find_builder_id("linux") == a
    assert await repo.get_builder(a) == Builder(id=a, name="linux")
    async with database.reading() as c:
        stored = (
            await c.execute(sa.select(t.builders.c.name_hash).where(t.builders.c.id == a))
        ).scalar_one()
    assert stored == name_hash("linux")
    assert await repo.get_builder(a + b + 100) is None


async def test_find_builder_id_concurrent_callers_agree(
    database: Database, clock: FakeClock
) -> None:
    repo = _repo(database, clock)
    ids = await asyncio.gather(*(repo.find_builder_id("same") for _ in range(8)))
    assert len(set(ids)) == 1
    assert await _count(database, t.builders) == 1


async def test_update_builder_info_sets_fields_and_sorted_tags(
    database: Database, clock: FakeClock
) -> None:
    repo = _repo(database, clock)
    bid = await repo.find_builder_id("b")
    async with database.transaction() as c:
        projectid = inserted_id(
            await c.execute(
                t.projects.insert().values(name="p", name_hash=name_hash("p"), slug="p")
            )
        )
    await repo.update_builder_info(
        bid,
        description="*builds* things",
        description_format="markdown",
        description_html="<em>builds</em> things",
        projectid=projectid,
        tags=["slow", "arm", "slow"],
    )
    assert await repo.get_builder(bid) == Builder(
        id=bid,
        name="b",
        description="*builds* things",
        description_format="markdown",
        description_html="<em>builds</em> things",
        projectid=projectid,
        tags=("arm", "slow"),
    )
    assert await _count(database, t.builders_tags) == 2
    # what a start compares with the configuration: the same, read without building Builders
    other = await repo.find_builder_id("other")
    assert await repo.get_infos([bid, other, other + 100]) == {
        bid: ("*builds* things", "markdown", "<em>builds</em> things", projectid, ("arm", "slow")),
        other: (None, None, None, None, ()),
    }


async def test_update_builder_info_replaces_tags_and_shares_tag_rows(
    database: Database, clock: FakeClock
) -> None:
    repo = _repo(database, clock)
    b1 = await repo.find_builder_id("b1")
    b2 = await repo.find_builder_id("b2")
    info = {
        "description": None,
        "description_format": None,
        "description_html": None,
        "projectid": None,
    }
    await repo.update_builder_info(b1, tags=["a", "b"], **info)
    await repo.update_builder_info(b2, tags=["b", "c"], **info)
    # tag "b" is one row used by both builders
    assert await _count(database, t.tags) == 3
    await repo.update_builder_info(b1, tags=["c", "d"], **info)
    one, two = await repo.get_builders()
    assert (one.tags, two.tags) == (("c", "d"), ("b", "c"))
    assert await _count(database, t.builders_tags) == 4
    await repo.update_builder_info(b1, tags=[], **info)
    builder = await repo.get_builder(b1)
    assert builder is not None and builder.tags == ()
    other = await repo.get_builder(b2)
    assert other is not None and other.tags == ("b", "c")


async def test_concurrent_identical_updates_do_not_collide(
    database: Database, clock: FakeClock
) -> None:
    repo = _repo(database, clock)
    bid = await repo.find_builder_id("b")
    await asyncio.gather(
        *(
            repo.update_builder_info(
                bid,
                description="d",
                description_format=None,
                description_html=None,
                projectid=None,
                tags=["x", "y"],
            )
            for _ in range(6)
        )
    )
    builder = await repo.get_builder(bid)
    assert builder is not None and builder.tags == ("x", "y")
    assert await _count(database, t.tags) == 2
    assert await _count(database, t.builders_tags) == 2


async def test_add_and_remove_builder_master_are_idempotent(
    database: Database, clock: FakeClock
) -> None:
    repo = _repo(database, clock)
    bid = await repo.find_builder_id("b")
    m2 = await _rows.add_master(database, "m2")
    m1 = await _rows.add_master(database, "m1")
    await repo.add_builder_master(bid, m1)
    await repo.add_builder_master(bid, m2)
    await repo.add_builder_master(bid, m1)
    builder = await repo.get_builder(bid)
    assert builder is not None and builder.masterids == tuple(sorted((m1, m2)))
    assert await _count(database, t.builder_masters) == 2
    wid = await _rows.add_worker(database)
    await _configure(database, wid, bid, m1)
    await _configure(database, wid, bid, m2)
    await repo.remove_builder_master(bid, m1)
    await repo.remove_builder_master(bid, m1)
    builder = await repo.get_builder(bid)
    assert builder is not None and builder.masterids == (m2,)
    # the worker configuration through the removed link went with it; the other stays
    async with database.reading() as c:
        left = (await c.execute(sa.select(t.configured_workers.c.buildermasterid))).scalars().all()
        m2_link = (
            await c.execute(
                sa.select(t.builder_masters.c.id).where(t.builder_masters.c.masterid == m2)
            )
        ).scalar_one()
    assert left == [m2_link]


async def test_update_builder_list_makes_the_exact_set(
    database: Database, clock: FakeClock
) -> None:
    repo = _repo(database, clock)
    a, b, c, d = [await repo.find_builder_id(n) for n in "abcd"]
    me = await _rows.add_master(database, "me")
    other = await _rows.add_master(database, "other")
    await repo.add_builder_master(a, other)
    assert await repo.update_builder_list(me, [c, a, b]) == ((a, b, c), ())
    assert await repo.update_builder_list(me, [b, c, a]) == ((), ())
    wid = await _rows.add_worker(database)
    await _configure(database, wid, a, me)
    await _configure(database, wid, b, me)
    await _configure(database, wid, a, other)
    assert await repo.update_builder_list(me, [b, d]) == ((d,), (a, c))
    assert [x.id for x in await repo.get_builders(masterid=me)] == [b, d]
    # the other master keeps its link and its worker configuration
    assert [x.id for x in await repo.get_builders(masterid=other)] == [a]
    assert await _count(database, t.configured_workers) == 2
    assert await repo.update_builder_list(me, []) == ((), (b, d))
    assert await repo.get_builders(masterid=me) == []
    assert await _count(database, t.configured_workers) == 1


async def test_get_builders_filters(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    a, b, c = [await repo.find_builder_id(n) for n in ("a", "b", "c")]
    m1 = await _rows.add_master(database, "m1")
    m2 = await _rows.add_master(database, "m2")
    await repo.add_builder_master(a, m1)
    await repo.add_builder_master(a, m2)
    await repo.add_builder_master(b, m2)
    async with database.transaction() as conn:
        pid = inserted_id(
            await conn.execute(
                t.projects.insert().values(name="p", name_hash=name_hash("p"), slug="p")
            )
        )
    info = {"description": None, "description_format": None, "description_html": None}
    await repo.update_builder_info(b, projectid=pid, tags=[], **info)
    await repo.update_builder_info(c, projectid=pid, tags=[], **info)
    wid = await _rows.add_worker(database)
    await _configure(database, wid, a, m2)

    on_m1 = await repo.get_builders(masterid=m1)
    # filtering by master still lists every master of the builder
    assert [(x.id, x.masterids) for x in on_m1] == [(a, (m1, m2))]
    assert [x.id for x in await repo.get_builders(masterid=m2)] == [a, b]
    assert [x.id for x in await repo.get_builders(projectid=pid)] == [b, c]
    assert [x.id for x in await repo.get_builders(masterid=m2, projectid=pid)] == [b]
    assert [x.id for x in await repo.get_builders(workerid=wid)] == [a]
    assert await repo.get_builders(workerid=wid + 1) == []
    assert await repo.count_builders(masterid=m2) == 2
    assert await repo.count_builders() == 3


async def test_get_builders_options(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    for name in ("delta", "alpha", "charlie", "bravo"):
        await repo.find_builder_id(name)
    assert [x.name for x in await repo.get_builders()] == ["delta", "alpha", "charlie", "bravo"]
    paged = QueryOptions(order=("-name",), limit=2, offset=1)
    assert [x.name for x in await repo.get_builders(options=paged)] == ["charlie", "bravo"]
    named = QueryOptions(filters=(Filter(field="name", op=Op.IN, values=("alpha", "delta")),))
    assert [x.name for x in await repo.get_builders(options=named)] == ["delta", "alpha"]
    assert await repo.count_builders(options=QueryOptions(filters=named.filters, limit=1)) == 2


async def test_links_to_missing_rows_are_errors_not_duplicates(
    database: Database, clock: FakeClock
) -> None:
    repo = _repo(database, clock)
    bid = await repo.find_builder_id("b")
    with pytest.raises(DbError, match="builder_masters: row refused"):
        await repo.add_builder_master(bid, 999)
    with pytest.raises(DbError, match="builder_masters: row refused"):
        await repo.update_builder_list(999, [bid])
    assert await _count(database, t.builder_masters) == 0


async def test_find_builder_ids_reads_known_and_creates_new(database: Database) -> None:
    known = await database.builders.find_builder_id("known")
    names = ["known", *(f"new{i}" for i in range(600))]  # more than one SELECT batch
    ids = await database.builders.find_builder_ids(names)
    assert ids["known"] == known
    assert len(set(ids.values())) == len(names)
    assert await database.builders.find_builder_ids(names) == ids
    assert {b.name: b.id for b in await database.builders.get_builders()} == ids


async def test_ids_by_name_reads_known_builders_and_creates_none(
    database: Database, clock: FakeClock
) -> None:
    repo = _repo(database, clock)
    ids = await repo.find_builder_ids(["a", "b", "c"])
    before = await _count(database, t.builders)
    assert await repo.ids_by_name(["b"]) == {"b": ids["b"]}
    assert await repo.ids_by_name(["nope"]) == {}
    assert await repo.ids_by_name(["c", "nope", "a"]) == {"a": ids["a"], "c": ids["c"]}
    assert await repo.ids_by_name([]) == {}
    assert await _count(database, t.builders) == before
