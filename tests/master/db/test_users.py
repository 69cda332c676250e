"""The users connector on both backends."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from buildyard.master.db import schema as t
from buildyard.master.db.base import inserted_id
from buildyard.master.db.connector import Database
from buildyard.master.db.errors import DbError
from buildyard.master.db.query import QueryOptions
from buildyard.master.db.users import UsersRepository, next_identifier
from buildyard.master.model.users import User
from buildyard.testing.clock import FakeClock
from tests.master.db import _rows


def _repo(database: Database, clock: FakeClock) -> UsersRepository:
    return UsersRepository(engine=database.engine, clock=clock)


async def _count(database: Database, table: sa.Table) -> int:
    async with database.reading() as c:
        return int((await c.execute(sa.select(sa.func.count()).select_from(table))).scalar_one())


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("jane", "jane_2"),
        ("jane_2", "jane_3"),
        ("jane_9", "jane_10"),
        ("a_b", "a_b_2"),
        ("x" * 255, "x" * 253 + "_2"),
    ],
)
def test_next_identifier(before: str, after: str) -> None:
    assert next_identifier(before) == after


async def test_find_user_id_by_attr_finds_or_creates(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    uid = await repo.find_user_id_by_attr("jane", "git", "Jane <jane@example.org>")
    assert await repo.find_user_id_by_attr("whatever", "git", "Jane <jane@example.org>") == uid
    assert await repo.get_user(uid) == User(
        uid=uid, identifier="jane", attributes={"git": "Jane <jane@example.org>"}
    )
    assert await _count(database, t.users) == 1


async def test_identifier_taken_gives_a_numbered_new_user(
    database: Database, clock: FakeClock
) -> None:
    repo = _repo(database, clock)
    first = await repo.find_user_id_by_attr("jane", "git", "jane@a")
    second = await repo.find_user_id_by_attr("jane", "git", "jane@b")
    third = await repo.find_user_id_by_attr("jane", "svn", "jane")
    assert len({first, second, third}) == 3
    assert [u.identifier for u in await repo.get_users()] == ["jane", "jane_2", "jane_3"]
    found = await repo.find_user_by_identifier("jane_2")
    assert found is not None and (found.uid, dict(found.attributes)) == (second, {"git": "jane@b"})
    assert await repo.find_user_by_identifier("nobody") is None


async def test_concurrent_finders_create_one_user(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    uids = await asyncio.gather(
        *(repo.find_user_id_by_attr("jane", "git", "jane@a") for _ in range(8))
    )
    assert len(set(uids)) == 1
    assert (await _count(database, t.users), await _count(database, t.users_info)) == (1, 1)


async def test_find_user_id_by_attr_checks_lengths(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    with pytest.raises(ValueError, match="attr_data"):
        await repo.find_user_id_by_attr("jane", "git", "x" * 129)
    assert await _count(database, t.users) == 0


async def test_update_user_credentials_identifier_and_attributes(
    database: Database, clock: FakeClock
) -> None:
    repo = _repo(database, clock)
    uid = await repo.find_user_id_by_attr("jane", "git", "jane@a")
    await repo.update_user(uid, identifier="jdoe", bb_username="jd", bb_password="hash")
    await repo.update_user(uid, attr_type="irc", attr_data="jd")
    await repo.update_user(uid, attr_type="git", attr_data="jane@b")
    expected = User(
        uid=uid,
        identifier="jdoe",
        bb_username="jd",
        bb_password="hash",
        attributes={"git": "jane@b", "irc": "jd"},
    )
    assert await repo.get_user(uid) == expected
    assert await repo.get_user_by_username("jd") == expected
    assert await repo.get_user_by_username("nobody") is None
    assert "hash" not in repr(expected)
    with pytest.raises(ValueError, match="together"):
        await repo.update_user(uid, bb_username="only")


async def test_update_user_refuses_what_another_user_has(
    database: Database, clock: FakeClock
) -> None:
    repo = _repo(database, clock)
    jane = await repo.find_user_id_by_attr("jane", "git", "jane@a")
    john = await repo.find_user_id_by_attr("john", "git", "john@a")
    async with database.transaction() as c:
        with pytest.raises(DbError, match="belongs to another user"):
            await repo.update_user(jane, attr_type="git", attr_data="john@a", conn=c)
        with pytest.raises(DbError, match="taken"):
            await repo.update_user(jane, identifier="john", conn=c)
        # the transaction is still usable after the refusals
        await repo.update_user(jane, attr_type="irc", attr_data="jane", conn=c)
    user = await repo.get_user(jane)
    assert user is not None and (user.identifier, dict(user.attributes)) == (
        "jane",
        {"git": "jane@a", "irc": "jane"},
    )
    other = await repo.get_user(john)
    assert other is not None and dict(other.attributes) == {"git": "john@a"}


async def test_remove_user(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    jane = await repo.find_user_id_by_attr("jane", "git", "jane@a")
    john = await repo.find_user_id_by_attr("john", "git", "john@a")
    ssid = await _rows.add_sourcestamp(database)
    async with database.transaction() as c:
        changeid = inserted_id(
            await c.execute(
                t.changes.insert().values(
                    author="jane", comments="", when_timestamp=0, sourcestampid=ssid
                )
            )
        )
        await c.execute(
            t.change_users.insert(), [{"changeid": changeid, "uid": u} for u in (jane, john)]
        )
    await repo.remove_user(jane)
    assert await repo.get_user(jane) is None
    assert [u.uid for u in await repo.get_users()] == [john]
    async with database.reading() as c:
        left = (await c.execute(sa.select(t.change_users.c.uid))).scalars().all()
    assert left == [john]
    assert await _count(database, t.users_info) == 1
    assert await _count(database, t.changes) == 1


async def test_get_users_options(database: Database, clock: FakeClock) -> None:
    repo = _repo(database, clock)
    for name in ("carol", "alice", "bob"):
        await repo.find_user_id_by_attr(name, "git", name)
    assert [u.identifier for u in await repo.get_users(QueryOptions(order=("identifier",)))] == [
        "alice",
        "bob",
        "carol",
    ]
    assert [
        u.identifier for u in await repo.get_users(QueryOptions(order=("-identifier",), limit=1))
    ] == ["carol"]


async def test_attribute_of_a_missing_user_is_an_error(
    database: Database, clock: FakeClock
) -> None:
    repo = _repo(database, clock)
    with pytest.raises(DbError, match="user 999 does not exist"):
        await repo.update_user(999, attr_type="git", attr_data="x")
