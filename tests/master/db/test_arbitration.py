"""Races lost for real: a second writer blocked behind an uncommitted first one must, once the
first commits, read the winner's row instead of failing (docs/database.md, "Several masters
on one database").

Only PostgreSQL lets two write transactions overlap; SQLite serialises them (BEGIN IMMEDIATE), so
the lost-race branches are unreachable there and those tests are skipped on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from buildyard.master.db import schema as t
from buildyard.master.db.arbitration import insert_ignoring_duplicates
from buildyard.master.db.base import inserted_id
from buildyard.master.db.builders import BuildersRepository
from buildyard.master.db.connector import Database
from buildyard.master.db.errors import AlreadyClaimed
from buildyard.master.db.schedulers import SchedulersRepository
from buildyard.master.db.state import StateRepository
from buildyard.master.db.users import UsersRepository
from buildyard.master.db.workers import WorkersRepository
from buildyard.testing.clock import FakeClock
from tests.master.db import _rows

T = TypeVar("T")

_BLOCKED = sa.text(
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


def _postgres_only(database: Database) -> None:
    if database.backend != "postgresql":
        pytest.skip("SQLite serialises writers: there is no race to lose")


async def _wait_until_blocked(database: Database) -> None:
    """Until another session of this database waits for a lock (polls the server's view)."""
    async with database.engine.connect() as c:
        for _ in range(2000):
            blocked = (await c.execute(_BLOCKED)).scalar_one()
            # the statistics views are a snapshot per transaction: end it to see changes
            await c.rollback()
            if blocked:
                return
            await asyncio.sleep(0.005)
    raise AssertionError("the second writer never blocked on the first")


async def _lose_race(
    database: Database,
    first: Callable[[AsyncConnection], Awaitable[T]],
    second: Callable[[], Awaitable[T]],
) -> tuple[T, T]:
    """Run ``first`` in an open transaction, start ``second`` so that it blocks behind it, then
    commit ``first``; the results of both."""
    async with database.transaction() as c:
        won = await first(c)
        loser = asyncio.ensure_future(second())
        await _wait_until_blocked(database)
    return won, await loser


async def test_find_or_create_loser_reads_the_winners_row(
    database: Database, clock: FakeClock
) -> None:
    _postgres_only(database)
    repo = BuildersRepository(engine=database.engine, clock=clock)
    won, lost = await _lose_race(
        database,
        lambda c: repo.find_builder_id("b", conn=c),
        lambda: repo.find_builder_id("b"),
    )
    assert won == lost
    assert [b.id for b in await repo.get_builders()] == [won]


async def test_duplicate_link_is_ignored_after_the_race(
    database: Database, clock: FakeClock
) -> None:
    _postgres_only(database)
    repo = WorkersRepository(engine=database.engine, clock=clock)
    wid = await repo.find_worker_id("w")
    mid = await _rows.add_master(database)
    await _lose_race(
        database,
        lambda c: repo.worker_connected(wid, mid, {"n": 1}, conn=c),
        lambda: repo.worker_connected(wid, mid, {"n": 2}),
    )
    worker = await repo.get_worker(wid)
    assert worker is not None
    assert (worker.connected_to, dict(worker.workerinfo)) == ((mid,), {"n": 2})


async def test_claim_lost_to_another_master(database: Database, clock: FakeClock) -> None:
    _postgres_only(database)
    repo = SchedulersRepository(engine=database.engine, clock=clock)
    sid = await repo.find_scheduler_id("s")
    m1 = await _rows.add_master(database, "m1")
    m2 = await _rows.add_master(database, "m2")

    async def second() -> None:
        with pytest.raises(AlreadyClaimed):
            await repo.set_scheduler_master(sid, m2)

    await _lose_race(database, lambda c: repo.set_scheduler_master(sid, m1, conn=c), second)
    scheduler = await repo.get_scheduler(sid)
    assert scheduler is not None and scheduler.masterid == m1


async def test_claim_raced_by_the_same_master_is_fine(database: Database, clock: FakeClock) -> None:
    _postgres_only(database)
    repo = SchedulersRepository(engine=database.engine, clock=clock)
    sid = await repo.find_scheduler_id("s")
    mid = await _rows.add_master(database)
    await _lose_race(
        database,
        lambda c: repo.set_scheduler_master(sid, mid, conn=c),
        lambda: repo.set_scheduler_master(sid, mid),
    )
    scheduler = await repo.get_scheduler(sid)
    assert scheduler is not None and scheduler.masterid == mid


async def test_atomic_state_loser_gets_the_winners_value(
    database: Database, clock: FakeClock
) -> None:
    _postgres_only(database)
    repo = StateRepository(engine=database.engine, clock=clock)
    oid = await repo.get_object_id("www", "WWWService")
    won, lost = await _lose_race(
        database,
        lambda c: repo.atomic_create_or_get_state(oid, "secret", "first", conn=c),
        lambda: repo.atomic_create_or_get_state(oid, "secret", "second"),
    )
    assert (won, lost) == ("first", "first")


async def test_set_state_loser_writes_last(database: Database, clock: FakeClock) -> None:
    _postgres_only(database)
    repo = StateRepository(engine=database.engine, clock=clock)
    oid = await repo.get_object_id("o", "C")
    await _lose_race(
        database,
        lambda c: repo.set_state(oid, "v", "first", conn=c),
        lambda: repo.set_state(oid, "v", "second"),
    )
    assert await repo.get_state(oid, "v") == "second"


async def test_user_by_attr_loser_finds_the_new_user(database: Database, clock: FakeClock) -> None:
    _postgres_only(database)
    repo = UsersRepository(engine=database.engine, clock=clock)
    won, lost = await _lose_race(
        database,
        lambda c: repo.find_user_id_by_attr("jane", "git", "jane@a", conn=c),
        lambda: repo.find_user_id_by_attr("jane", "git", "jane@a"),
    )
    assert won == lost
    assert [u.identifier for u in await repo.get_users()] == ["jane"]


async def test_classification_loser_writes_last(database: Database, clock: FakeClock) -> None:
    _postgres_only(database)
    repo = SchedulersRepository(engine=database.engine, clock=clock)
    sid = await repo.find_scheduler_id("s")
    ssid = await _rows.add_sourcestamp(database)
    async with database.transaction() as c:
        result = await c.execute(
            t.changes.insert().values(author="a", comments="", when_timestamp=0, sourcestampid=ssid)
        )
        changeid = inserted_id(result)
    await _lose_race(
        database,
        lambda c: repo.classify_changes(sid, {changeid: True}, conn=c),
        lambda: repo.classify_changes(sid, {changeid: False}),
    )
    assert await repo.get_change_classifications(sid) == {changeid: False}


async def test_insert_ignoring_duplicates_keeps_the_new_rows_of_a_mixed_batch(
    database: Database,
) -> None:
    """Both backends: one existing row must not make the whole batch go."""
    a, b, c = [await _rows.add_builder(database, n) for n in "abc"]
    mid = await _rows.add_master(database)
    async with database.transaction() as conn:
        await insert_ignoring_duplicates(
            conn, t.builder_masters, [{"builderid": b, "masterid": mid}]
        )
        await insert_ignoring_duplicates(
            conn,
            t.builder_masters,
            [{"builderid": x, "masterid": mid} for x in (a, b, c, b)],
        )
    async with database.reading() as conn:
        linked = (
            await conn.execute(
                sa.select(t.builder_masters.c.builderid).order_by(t.builder_masters.c.builderid)
            )
        ).scalars()
        assert list(linked) == [a, b, c]
