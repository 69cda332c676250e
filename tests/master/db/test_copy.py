"""The order copy-db copies tables in, and rows whose parent row is missing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from buildyard.master.db import copy, migrate
from buildyard.master.db.connector import Database
from buildyard.master.db.errors import DbError
from buildyard.master.db.schema import metadata
from buildyard.testing.clock import FakeClock


def test_every_table_comes_after_the_tables_its_required_keys_point_to() -> None:
    order = copy.plan()
    names = [step.table.name for step in order]
    assert sorted(names) == sorted(metadata.tables)
    for i, step in enumerate(order):
        before = set(names[:i])
        for fk in step.table.foreign_keys:
            target = fk.column.table.name
            if fk.parent.name in step.deferred:
                # only nullable links to later tables or the table itself wait for the end
                assert fk.parent.nullable and (target not in before)
            else:
                assert target in before, (step.table.name, fk.parent.name)
    deferred = {(s.table.name, c) for s in order for c in s.deferred}
    # links into their own table, and the buildset -> build links that close the cycle
    # buildsets -> buildrequests -> builds -> buildsets
    assert deferred == {
        ("changes", "parent_changeids"),
        ("codebase_commits", "parent_commitid"),
        ("buildsets", "parent_buildid"),
        ("buildsets", "rebuilt_buildid"),
    }


async def _database(path: Path) -> Database:
    db = Database(f"sqlite:///{path}", clock=FakeClock())
    await migrate.upgrade(db)
    return db


async def test_rows_whose_parent_is_missing_fail_the_copy_or_are_left_out(tmp_path: Path) -> None:
    source = await _database(tmp_path / "src.sqlite")
    await source.close()
    # a database whose foreign keys were not enforced (as an old SQLite file can be)
    with sqlite3.connect(tmp_path / "src.sqlite") as raw:
        raw.execute("PRAGMA foreign_keys=OFF")
        raw.execute("INSERT INTO objects (id, name, class_name) VALUES (1, 'o', 'C')")
        raw.execute("INSERT INTO object_state VALUES (1, 'kept', '1')")
        raw.execute("INSERT INTO object_state VALUES (7, 'orphan', '2')")
    source = Database(f"sqlite:///{tmp_path / 'src.sqlite'}", clock=FakeClock())
    dest = await _database(tmp_path / "dst.sqlite")
    try:
        with pytest.raises(DbError, match=r"copying object_state.*--ignore-fk-error-rows"):
            async with copy.snapshot(source.engine) as src, dest.transaction() as dst:
                await copy.copy_rows(src, dst)
        async with dest.reading() as conn:  # the failed copy left nothing behind
            assert await copy.non_empty_tables(conn) == {}

        said: list[str] = []
        async with copy.snapshot(source.engine) as src, dest.transaction() as dst:
            report = await copy.copy_rows(src, dst, ignore_fk_error_rows=True, say=said.append)
        assert report.skipped == {"object_state": 1}
        assert any("orphan" in line for line in said)
        async with dest.reading() as conn:
            rows = (await conn.execute(sa.select(metadata.tables["object_state"]))).all()
        assert [tuple(r) for r in rows] == [(1, "kept", "1")]
    finally:
        await source.close()
        await dest.close()
