"""The SQLite adapter: sqlite3 on the event loop, DBAPI results intact, and a database locked
by another connection waited for without blocking the loop."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from buildyard.master.db.engine import make_engine, read_transaction, write_transaction

T = sa.table("t", sa.column("id", sa.Integer), sa.column("v", sa.String))


async def _with_table(path: Path, lock_wait: float = 30.0) -> AsyncEngine:
    engine = make_engine(sa.make_url(f"sqlite+aiosqlite:///{path}"), sqlite_timeout=lock_wait)
    async with write_transaction(engine) as c:
        await c.execute(sa.text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT UNIQUE)"))
    return engine


async def test_results_and_errors_are_the_dbapis(tmp_path: Path) -> None:
    engine = await _with_table(tmp_path / "x.db")
    try:
        threads = threading.active_count()
        async with write_transaction(engine) as c:
            inserted = await c.execute(sa.text("INSERT INTO t (v) VALUES ('a')"))
            assert (inserted.rowcount, inserted.lastrowid) == (1, 1)
            await c.execute(T.insert(), [{"v": "b"}, {"v": "c"}])  # executemany
            rows = (await c.execute(sa.select(T).order_by(T.c.id))).all()
            assert [tuple(r) for r in rows] == [(1, "a"), (2, "b"), (3, "c")]
            changed = await c.execute(
                T.update().where(T.c.id > 1).values(v=T.c.v + "!").returning(T.c.id, T.c.v)
            )
            assert sorted(tuple(r) for r in changed) == [(2, "b!"), (3, "c!")]
            with pytest.raises(sa.exc.IntegrityError, match="UNIQUE"):
                async with c.begin_nested():
                    await c.execute(T.insert().values(v="a"))

        # a failed transaction leaves nothing behind
        async def insert_d_then_a() -> None:
            async with write_transaction(engine) as c:
                await c.execute(T.insert().values(v="d"))
                await c.execute(T.insert().values(v="a"))

        with pytest.raises(sa.exc.IntegrityError):
            await insert_d_then_a()
        async with read_transaction(engine) as c:
            count = (await c.execute(sa.select(sa.func.count()).select_from(T))).scalar()
        assert count == 3
        assert threading.active_count() == threads  # no thread per connection
    finally:
        await engine.dispose()


def _hold_write_lock(path: Path, held: threading.Event, release: threading.Event) -> None:
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO t (v) VALUES ('other')")
        held.set()
        release.wait(30)
        other.execute("COMMIT")
    finally:
        other.close()


async def test_a_locked_database_is_waited_for_while_the_loop_runs(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    engine = await _with_table(path)
    held, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(path, held, release))
    holder.start()
    try:
        assert await asyncio.to_thread(held.wait, 10)

        async def write() -> float:
            async with write_transaction(engine) as c:
                await c.execute(T.insert().values(v="mine"))
            return time.monotonic()

        writing = asyncio.create_task(write())
        ticks = 0
        started = time.monotonic()
        while time.monotonic() - started < 0.3:  # the loop keeps turning meanwhile
            await asyncio.sleep(0.01)
            ticks += 1
        assert not writing.done()
        assert ticks >= 10
        released = time.monotonic()
        release.set()
        finished = await asyncio.wait_for(writing, 10)
        assert finished >= released
        async with read_transaction(engine) as c:
            values = (await c.execute(sa.select(T.c.v).order_by(T.c.id))).scalars().all()
        assert values == ["other", "mine"]
    finally:
        release.set()
        holder.join(10)
        await engine.dispose()


async def test_a_lock_held_too_long_fails_the_statement(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    engine = await _with_table(path, lock_wait=0.3)
    held, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(path, held, release))
    holder.start()
    try:
        assert await asyncio.to_thread(held.wait, 10)
        started = time.monotonic()
        with pytest.raises(sa.exc.OperationalError, match="database is locked"):
            async with write_transaction(engine) as c:
                await c.execute(T.insert().values(v="mine"))
        assert 0.3 <= time.monotonic() - started < 5
        # reads go on meanwhile (WAL): the other writer's row is not committed yet
        async with read_transaction(engine) as c:
            assert (await c.execute(sa.select(T.c.v))).scalars().all() == []
    finally:
        release.set()
        holder.join(10)
        await engine.dispose()
