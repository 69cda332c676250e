"""After start-up the master empties its idle SQLite connections' page caches
(Database.release_cache_memory, docs/performance.md): the memory SQLite holds drops, and the
database reads the same rows afterwards."""

from __future__ import annotations

import ctypes
import ctypes.util
from pathlib import Path

import pytest
import sqlalchemy as sa

from buildyard.common.clock import SystemClock
from buildyard.master.db import migrate
from buildyard.master.db.connector import Database


def _sqlite_memory_used() -> int:
    """The bytes SQLite's allocator holds in this process (sqlite3_memory_used of the library
    Python's sqlite3 module uses)."""
    name = ctypes.util.find_library("sqlite3")
    if name is None:
        pytest.skip("no shared libsqlite3 to ask for its memory")
    lib = ctypes.CDLL(name)
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    return int(lib.sqlite3_memory_used())


async def test_the_idle_connections_page_caches_are_emptied(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'state.sqlite'}", clock=SystemClock())
    await migrate.upgrade(db)
    try:
        names = [{"name": f"b{i:05d}", "name_hash": f"{i:040x}"} for i in range(3000)]
        async with db.transaction() as conn:
            await conn.execute(
                sa.text("INSERT INTO builders (name, name_hash) VALUES (:name, :name_hash)"), names
            )
        async with db.reading() as conn:
            assert len((await conn.execute(sa.text("SELECT * FROM builders"))).all()) == 3000
        before = _sqlite_memory_used()
        assert db.release_cache_memory() >= 1
        after = _sqlite_memory_used()
        # the pages of 3,000 rows (several hundred KiB) left SQLite's cache
        assert before - after > 100_000
        async with db.reading() as conn:
            assert len((await conn.execute(sa.text("SELECT * FROM builders"))).all()) == 3000
    finally:
        await db.close()


async def test_nothing_to_release_on_a_new_database(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'state.sqlite'}", clock=SystemClock())
    try:
        assert db.release_cache_memory() == 0  # no connection opened yet
    finally:
        await db.close()
