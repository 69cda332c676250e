"""The state connector on both backends: object ids and JSON state values."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from buildyard.master.db import schema as t
from buildyard.master.db.connector import Database
from buildyard.master.db.errors import DbError
from buildyard.master.db.state import StateRepository
from buildyard.testing.clock import FakeClock


def _repo(database: Database, clock: FakeClock) -> StateRepository:
    return StateRepository(engine=database.engine, clock=clock)


async def test_get_object_id_by_name_and_class(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    a = await repo.get_object_id("nightly", "Nightly")
    assert await repo.get_object_id("nightly", "Nightly") == a
    assert (
        len(
            {
                a,
                await repo.get_object_id("nightly", "Periodic"),
                await repo.get_object_id("x", "Nightly"),
            }
        )
        == 3
    )
    ids = await asyncio.gather(*(repo.get_object_id("raced", "C") for _ in range(8)))
    assert len(set(ids)) == 1
    async with database.reading() as c:
        assert (
            await c.execute(sa.select(sa.func.count()).select_from(t.objects))
        ).scalar_one() == 4


async def test_get_state_missing(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    oid = await repo.get_object_id("o", "C")
    with pytest.raises(KeyError, match="last_change"):
        await repo.get_state(oid, "last_change")
    assert await repo.get_state(oid, "last_change", 17) == 17
    # None is a real default, not "no default"
    assert await repo.get_state(oid, "last_change", None) is None


async def test_set_state_round_trips_json_and_overwrites(
    database: Database, clock: FakeClock
) -> None:
    repo = _repo(database, clock)
    oid = await repo.get_object_id("o", "C")
    other = await repo.get_object_id("p", "C")
    value = {"branches": {"main": [1, 2.5, None, True]}, "name": "ü"}
    await repo.set_state(oid, "v", value)
    assert await repo.get_state(oid, "v") == value
    await repo.set_state(oid, "v", None)
    # a stored null is a value, not a missing one
    assert await repo.get_state(oid, "v", "default") is None
    await repo.set_state(oid, "v", 3)
    await repo.set_state(other, "v", 4)
    assert (await repo.get_state(oid, "v"), await repo.get_state(other, "v")) == (3, 4)
    async with database.reading() as c:
        rows = (
            (
                await c.execute(
                    sa.select(t.object_state.c.value_json).order_by(t.object_state.c.objectid)
                )
            )
            .scalars()
            .all()
        )
    assert rows == ["3", "4"]


async def test_set_state_rejects_what_json_cannot_hold(
    database: Database, clock: FakeClock
) -> None:
    repo = _repo(database, clock)
    oid = await repo.get_object_id("o", "C")
    with pytest.raises(TypeError, match="not JSON"):
        await repo.set_state(oid, "v", {1, 2})
    assert await repo.get_state(oid, "v", "absent") == "absent"


async def test_concurrent_set_state_leaves_one_row(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    oid = await repo.get_object_id("o", "C")
    await asyncio.gather(*(repo.set_state(oid, "v", i) for i in range(6)))
    assert await repo.get_state(oid, "v") in range(6)
    async with database.reading() as c:
        assert (
            await c.execute(sa.select(sa.func.count()).select_from(t.object_state))
        ).scalar_one() == 1


async def test_atomic_create_or_get_state(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    oid = await repo.get_object_id("www", "WWWService")
    assert await repo.atomic_create_or_get_state(oid, "secret", ("s", 1)) == ["s", 1]
    assert await repo.atomic_create_or_get_state(oid, "secret", "other") == ["s", 1]
    assert await repo.get_state(oid, "secret") == ["s", 1]


async def test_atomic_create_concurrent_callers_all_get_the_first_value(
    database: Database, clock: FakeClock
) -> None:
    repo = _repo(database, clock)
    oid = await repo.get_object_id("www", "WWWService")
    got = await asyncio.gather(
        *(repo.atomic_create_or_get_state(oid, "secret", f"s{i}") for i in range(8))
    )
    assert len(set(got)) == 1
    assert await repo.get_state(oid, "secret") == got[0]


async def test_state_of_a_missing_object_is_an_error(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    with pytest.raises(DbError, match="object 999"):
        await repo.set_state(999, "v", 1)
    with pytest.raises(DbError, match="object 999"):
        await repo.atomic_create_or_get_state(999, "v", 1)
