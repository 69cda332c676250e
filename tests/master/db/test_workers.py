"""The workers connector on both backends."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from buildyard.master.db import schema as t
from buildyard.master.db.connector import Database
from buildyard.master.db.query import Filter, Op, QueryOptions
from buildyard.master.db.workers import WorkersRepository
from buildyard.master.model.workers import ConfiguredOn, Worker
from buildyard.testing.clock import FakeClock
from tests.master.db import _rows


def _repo(database: Database, clock: FakeClock) -> WorkersRepository:
    return WorkersRepository(engine=database.engine, clock=clock)


async def _count(database: Database, table: sa.Table) -> int:
    async with database.reading() as c:
        return int((await c.execute(sa.select(sa.func.count()).select_from(table))).scalar_one())


async def _link(database: Database, builderid: int, masterid: int) -> None:
    async with database.transaction() as c:
        await c.execute(t.builder_masters.insert().values(builderid=builderid, masterid=masterid))


async def test_find_worker_id_creates_unpaused_worker_without_info(
    database: Database, clock: FakeClock
) -> None:
    repo = _repo(database, clock)
    wid = await repo.find_worker_id("w1")
    assert await repo.find_worker_id("w1") == wid
    assert await repo.find_worker_id("w2") != wid
    expected = Worker(id=wid, name="w1", workerinfo={}, paused=False, graceful=False)
    assert await repo.get_worker(wid) == expected
    assert await repo.get_worker(name="w1") == expected
    assert await repo.get_worker(name="nope") is None
    assert await repo.get_worker(wid, name="w2") is None


async def test_find_worker_id_rejects_long_names_and_races(
    database: Database, clock: FakeClock
) -> None:
    repo = _repo(database, clock)
    with pytest.raises(ValueError, match="longer than 50"):
        await repo.find_worker_id("w" * 51)
    assert await repo.find_worker_id("w" * 50) > 0
    ids = await asyncio.gather(*(repo.find_worker_id("same") for _ in range(8)))
    assert len(set(ids)) == 1
    assert await _count(database, t.workers) == 2


async def test_get_worker_needs_id_or_name(database: Database, clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="workerid or a name"):
        await _repo(database, clock).get_worker()


async def test_worker_connected_is_idempotent_and_replaces_info(
    database: Database, clock: FakeClock
) -> None:
    repo = _repo(database, clock)
    wid = await repo.find_worker_id("w")
    m2 = await _rows.add_master(database, "m2")
    m1 = await _rows.add_master(database, "m1")
    await repo.worker_connected(wid, m1, {"host": "a", "version": "1"})
    await repo.worker_connected(wid, m1, {"host": "b", "admin": None})
    assert await _count(database, t.connected_workers) == 1
    worker = await repo.get_worker(wid)
    assert worker is not None
    assert (worker.connected_to, dict(worker.workerinfo)) == ((m1,), {"host": "b", "admin": None})
    await repo.worker_connected(wid, m2, {"host": "c"})
    worker = await repo.get_worker(wid)
    assert worker is not None and worker.connected_to == tuple(sorted((m1, m2)))
    await repo.worker_disconnected(wid, m1)
    await repo.worker_disconnected(wid, m1)
    worker = await repo.get_worker(wid)
    assert worker is not None and worker.connected_to == (m2,)
    # the info outlives the connection
    assert dict(worker.workerinfo) == {"host": "c"}


async def test_concurrent_connects_leave_one_row(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    wid = await repo.find_worker_id("w")
    mid = await _rows.add_master(database)
    await asyncio.gather(*(repo.worker_connected(wid, mid, {"n": i}) for i in range(6)))
    assert await _count(database, t.connected_workers) == 1


async def test_worker_configured_replaces_the_set_on_that_master_only(
    database: Database, clock: FakeClock
) -> None:
    repo = _repo(database, clock)
    wid = await repo.find_worker_id("w")
    me = await _rows.add_master(database, "me")
    other = await _rows.add_master(database, "other")
    a, b, c, lonely = [await _rows.add_builder(database, n) for n in ("a", "b", "c", "lonely")]
    for builderid in (a, b, c):
        await _link(database, builderid, me)
    await _link(database, a, other)
    await repo.worker_configured(wid, other, [a])
    # "lonely" is not on this master: ignored
    await repo.worker_configured(wid, me, [c, a, lonely])
    worker = await repo.get_worker(wid)
    assert worker is not None
    assert worker.configured_on == tuple(
        sorted([ConfiguredOn(me, a), ConfiguredOn(me, c), ConfiguredOn(other, a)])
    )
    await repo.worker_configured(wid, me, [b, c])
    await repo.worker_configured(wid, me, [b, c])
    worker = await repo.get_worker(wid)
    assert worker is not None
    assert set(worker.configured_on) == {
        ConfiguredOn(me, b),
        ConfiguredOn(me, c),
        ConfiguredOn(other, a),
    }
    assert await _count(database, t.configured_workers) == 3
    await repo.worker_configured(wid, me, [])
    worker = await repo.get_worker(wid)
    assert worker is not None and worker.configured_on == (ConfiguredOn(other, a),)


async def test_deconfigure_all_workers_for_master(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    w1, w2 = await repo.find_worker_id("w1"), await repo.find_worker_id("w2")
    me = await _rows.add_master(database, "me")
    other = await _rows.add_master(database, "other")
    bid = await _rows.add_builder(database)
    await _link(database, bid, me)
    await _link(database, bid, other)
    for wid in (w1, w2):
        await repo.worker_configured(wid, me, [bid])
    await repo.worker_configured(w1, other, [bid])
    await repo.deconfigure_all_workers_for_master(me)
    assert [(w.id, w.configured_on) for w in await repo.get_workers()] == [
        (w1, (ConfiguredOn(other, bid),)),
        (w2, ()),
    ]
    # the builder links themselves stay
    assert await _count(database, t.builder_masters) == 2


async def test_configure_workers_for_master_writes_only_the_difference(
    database: Database, clock: FakeClock
) -> None:
    repo = _repo(database, clock)
    ids = await repo.find_worker_ids(["w1", "w2", "w1"])
    assert ids == {"w1": await repo.find_worker_id("w1"), "w2": await repo.find_worker_id("w2")}
    w1, w2 = ids["w1"], ids["w2"]
    w3 = (await repo.find_worker_ids(["w3"]))["w3"]  # created by the batch call
    assert await repo.get_worker(name="w3") is not None
    me = await _rows.add_master(database, "me")
    other = await _rows.add_master(database, "other")
    a, b, lonely = [await _rows.add_builder(database, n) for n in ("a", "b", "lonely")]
    for builderid in (a, b):
        await _link(database, builderid, me)
    await _link(database, a, other)
    await repo.worker_configured(w3, other, [a])

    async def rows() -> set[tuple[int, int, int]]:
        cw = t.configured_workers
        async with database.reading() as c:
            found = await c.execute(sa.select(cw.c.id, cw.c.workerid, cw.c.buildermasterid))
            return {(r.id, r.workerid, r.buildermasterid) for r in found}

    # "lonely" is not on this master: ignored
    assert await repo.configure_workers_for_master(me, {w1: [a, b, lonely], w2: [b]}) == (3, 0)
    first = await rows()
    # the same again writes nothing: the very same rows stay
    assert await repo.configure_workers_for_master(me, {w1: [a, b], w2: [b]}) == (0, 0)
    assert await rows() == first
    # w2 left out and w1 off b: their rows on this master go, the other master's row stays
    assert await repo.configure_workers_for_master(me, {w1: [a]}) == (0, 2)
    assert {(w.id, w.configured_on) for w in await repo.get_workers()} == {
        (w1, (ConfiguredOn(me, a),)),
        (w2, ()),
        (w3, (ConfiguredOn(other, a),)),
    }
    # the row that stays is the one written first, not a deleted and re-inserted copy
    assert await rows() <= first | {r for r in await rows() if r[1] == w3}
    with pytest.raises(ValueError, match="longer than 50"):
        await repo.find_worker_ids(["w" * 51])


async def test_get_workers_master_and_builder_views(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    w1, w2, w3 = [await repo.find_worker_id(n) for n in ("w1", "w2", "w3")]
    m1 = await _rows.add_master(database, "m1")
    m2 = await _rows.add_master(database, "m2")
    a, b = await _rows.add_builder(database, "a"), await _rows.add_builder(database, "b")
    for builderid in (a, b):
        await _link(database, builderid, m1)
        await _link(database, builderid, m2)
    await repo.worker_configured(w1, m1, [a, b])
    await repo.worker_configured(w1, m2, [a])
    await repo.worker_configured(w2, m2, [b])
    await repo.worker_connected(w1, m1, {})
    await repo.worker_connected(w1, m2, {})
    await repo.worker_connected(w3, m1, {})

    assert [w.id for w in await repo.get_workers()] == [w1, w2, w3]
    seen_from_m1 = await repo.get_workers(masterid=m1)
    # configured there only; links and connections of other masters are not shown
    assert [(w.id, w.configured_on, w.connected_to) for w in seen_from_m1] == [
        (w1, (ConfiguredOn(m1, a), ConfiguredOn(m1, b)), (m1,))
    ]
    seen_from_b = await repo.get_workers(builderid=b)
    assert [(w.id, w.configured_on) for w in seen_from_b] == [
        (w1, (ConfiguredOn(m1, b),)),
        (w2, (ConfiguredOn(m2, b),)),
    ]
    assert [w.id for w in await repo.get_workers(masterid=m2, builderid=a)] == [w1]
    assert await repo.get_worker(w2, masterid=m1) is None
    w = await repo.get_worker(w1)
    assert w is not None and w.connected_to == (m1, m2)
    assert await repo.count_workers(builderid=b) == 2


async def test_held_workers_are_the_paused_or_graceful_ones_configured_on_the_master(
    database: Database, clock: FakeClock
) -> None:
    # what a distribution pass reads: the workers it must not give a build to
    repo = _repo(database, clock)
    w1, w2, w3, w4 = [await repo.find_worker_id(n) for n in ("w1", "w2", "w3", "w4")]
    m1 = await _rows.add_master(database, "m1")
    m2 = await _rows.add_master(database, "m2")
    a = await _rows.add_builder(database, "a")
    await _link(database, a, m1)
    await _link(database, a, m2)
    for wid in (w1, w2, w3):
        await repo.worker_configured(wid, m1, [a])
    await repo.worker_configured(w4, m2, [a])
    assert await repo.held_workers(masterid=m1) == []
    await repo.set_worker_state(w1, paused=True, graceful=False)
    await repo.set_worker_state(w2, paused=False, graceful=True)
    await repo.set_worker_state(w4, paused=True, graceful=True)  # another master's
    assert await repo.held_workers(masterid=m1) == [("w1", True, False), ("w2", False, True)]
    assert await repo.held_workers(masterid=m2) == [("w4", True, True)]
    await repo.set_worker_state(w1, paused=False, graceful=False)
    assert await repo.held_workers(masterid=m1) == [("w2", False, True)]


async def test_set_worker_state_and_filters(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    w1, w2, w3 = [await repo.find_worker_id(n) for n in ("w1", "w2", "w3")]
    await repo.set_worker_state(w1, paused=True, graceful=False, pause_reason="disk full")
    await repo.set_worker_state(w2, paused=True, graceful=True)
    await repo.set_worker_state(w3, paused=False, graceful=True, pause_reason="ignored")
    state = {w.id: (w.paused, w.graceful, w.pause_reason) for w in await repo.get_workers()}
    assert state == {
        w1: (True, False, "disk full"),
        w2: (True, True, None),
        w3: (False, True, None),
    }
    assert [w.id for w in await repo.get_workers(paused=True)] == [w1, w2]
    assert [w.id for w in await repo.get_workers(paused=True, graceful=False)] == [w1]
    assert [w.id for w in await repo.get_workers(graceful=True)] == [w2, w3]
    await repo.set_worker_state(w1, paused=False, graceful=False)
    w = await repo.get_worker(w1)
    assert w is not None and (w.paused, w.pause_reason) == (False, None)
    opts = QueryOptions(
        filters=(Filter(field="graceful", op=Op.EQ, values=(True,)),), order=("-name",)
    )
    assert [w.name for w in await repo.get_workers(options=opts)] == ["w3", "w2"]
    assert await repo.count_workers(options=opts) == 2
