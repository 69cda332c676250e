"""The change sources connector on both backends: identity and ownership."""

from __future__ import annotations

import asyncio

import pytest

from buildyard.master.db.changesources import ChangeSourcesRepository
from buildyard.master.db.connector import Database
from buildyard.master.db.errors import AlreadyClaimed
from buildyard.master.db.query import Filter, Op, QueryOptions
from buildyard.master.model.changesources import ChangeSource
from buildyard.testing.clock import FakeClock
from tests.master.db import _rows


def _repo(database: Database, clock: FakeClock) -> ChangeSourcesRepository:
    return ChangeSourcesRepository(engine=database.engine, clock=clock)


async def test_find_changesource_id_creates_unowned(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    cid = await repo.find_changesource_id("GitPoller:https://example.org/r.git")
    assert await repo.find_changesource_id("GitPoller:https://example.org/r.git") == cid
    assert await repo.find_changesource_id("other") != cid
    expected = ChangeSource(id=cid, name="GitPoller:https://example.org/r.git", masterid=None)
    assert await repo.get_changesource(cid) == expected
    assert await repo.get_changesource(cid + 100) is None
    ids = await asyncio.gather(*(repo.find_changesource_id("raced") for _ in range(8)))
    assert len(set(ids)) == 1


async def test_claim_release_and_conflict(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    cid = await repo.find_changesource_id("c")
    m1 = await _rows.add_master(database, "m1")
    m2 = await _rows.add_master(database, "m2")
    await repo.set_changesource_master(cid, m1)
    await repo.set_changesource_master(cid, m1)
    with pytest.raises(
        AlreadyClaimed, match=f"change source {cid} is already owned by master {m1}"
    ):
        await repo.set_changesource_master(cid, m2)
    source = await repo.get_changesource(cid)
    assert source is not None and source.masterid == m1
    await repo.set_changesource_master(cid, None)
    source = await repo.get_changesource(cid)
    assert source is not None and source.masterid is None
    await repo.set_changesource_master(cid, m2)
    source = await repo.get_changesource(cid)
    assert source is not None and source.masterid == m2


async def test_concurrent_claims_have_one_winner(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    cid = await repo.find_changesource_id("c")
    masters = [await _rows.add_master(database, f"m{i}") for i in range(6)]
    outcomes = await asyncio.gather(
        *(repo.set_changesource_master(cid, m) for m in masters), return_exceptions=True
    )
    winners = [m for m, o in zip(masters, outcomes, strict=True) if o is None]
    assert len(winners) == 1
    assert all(isinstance(o, AlreadyClaimed) for o in outcomes if o is not None)
    source = await repo.get_changesource(cid)
    assert source is not None and source.masterid == winners[0]


async def test_get_changesources_filters(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    a, b, c = [await repo.find_changesource_id(n) for n in ("a", "b", "c")]
    m1 = await _rows.add_master(database, "m1")
    m2 = await _rows.add_master(database, "m2")
    await repo.set_changesource_master(b, m1)
    await repo.set_changesource_master(c, m2)

    def ids(found: list[ChangeSource]) -> list[int]:
        return [s.id for s in found]

    assert [(s.id, s.masterid) for s in await repo.get_changesources()] == [
        (a, None),
        (b, m1),
        (c, m2),
    ]
    assert ids(await repo.get_changesources(active=True)) == [b, c]
    assert ids(await repo.get_changesources(active=False)) == [a]
    assert ids(await repo.get_changesources(masterid=m1)) == [b]
    assert await repo.get_changesources(masterid=m1, active=False) == []
    named = QueryOptions(filters=(Filter(field="name", op=Op.NE, values=("b",)),), order=("-name",))
    assert ids(await repo.get_changesources(options=named)) == [c, a]
    assert await repo.count_changesources(options=named) == 2
    assert await repo.count_changesources(active=True) == 2
