"""Prepared statements: the same rows, counts and errors as SQLAlchemy gives, on both backends
(on SQLite they run straight on sqlite3); statements whose values SQLAlchemy converts are
refused."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from buildyard.master.db import schema as t
from buildyard.master.db.connector import Database
from buildyard.master.db.engine import sqlite_of
from buildyard.master.db.prepared import Prepared
from buildyard.testing.clock import FakeClock

_m = t.masters
_BY_NAME = Prepared(
    sa.select(_m.c.id, _m.c.name, sa.literal(7).label("seven"))
    .where(_m.c.name == sa.bindparam("name"))
    .order_by(_m.c.id)
)
_RENAME = Prepared(
    _m.update().where(_m.c.name == sa.bindparam("old")).values(name=sa.bindparam("new"))
)
_INSERT = Prepared(
    _m.insert().values(
        name=sa.bindparam("name"),
        name_hash=sa.bindparam("name_hash"),
        active=0,
        last_active=sa.bindparam("last_active"),
    )
)


async def test_rows_counts_and_errors_are_sqlalchemys(database: Database) -> None:
    async with database.transaction() as c:
        assert (sqlite_of(c) is not None) == (database.backend == "sqlite")
        for name, when in (("a", 1), ("b", 2)):
            inserted = await _INSERT.execute(
                c, {"name": name, "name_hash": name * 40, "last_active": when}
            )
            assert inserted.rowcount == 1
            by_name = sa.select(_m.c.id).where(_m.c.name == name)
            assert inserted.inserted_id() == (await c.execute(by_name)).scalar()
        found = await _BY_NAME.execute(c, {"name": "b"})
        [row] = found.all()
        assert (row.name, row.seven, row[1]) == ("b", 7, "b")
        plain = (await c.execute(_BY_NAME.stmt, {"name": "b"})).one()
        assert tuple(row) == tuple(plain)
        assert (await _BY_NAME.execute(c, {"name": "none"})).first() is None
        assert (await _RENAME.execute(c, {"old": "a", "new": "c"})).rowcount == 1
        assert (await _BY_NAME.execute(c, {"name": "c"})).scalar() is not None
        with pytest.raises(sa.exc.IntegrityError):
            async with c.begin_nested():
                await _INSERT.execute(c, {"name": "b", "name_hash": "b" * 40, "last_active": 3})
        with pytest.raises(sa.exc.SQLAlchemyError, match="name"):
            await _BY_NAME.execute(c, {})
    async with database.reading() as c:
        names = (await c.execute(sa.select(_m.c.name).order_by(_m.c.name))).scalars().all()
    assert names == ["b", "c"]


async def test_a_savepoint_undoes_only_its_own_statements(database: Database) -> None:
    rows = [{"name": f"s{i}", "name_hash": f"{i:040d}", "last_active": i} for i in range(4)]
    async with database.transaction() as c:
        await _INSERT.execute(c, rows[0])
        async with c.begin_nested():  # released: kept
            await _INSERT.execute(c, rows[1])

        async def undone() -> None:
            async with c.begin_nested():
                await _INSERT.execute(c, rows[2])
                async with c.begin_nested():  # nested in the one undone
                    await _INSERT.execute(c, rows[3])
                raise RuntimeError("undo")

        with pytest.raises(RuntimeError, match="undo"):
            await undone()
    async with database.reading() as c:
        names = (await c.execute(sa.select(_m.c.name).order_by(_m.c.name))).scalars().all()
    assert names == ["s0", "s1"]


async def test_execute_many_runs_once_per_set_of_parameters(database: Database) -> None:
    rows = [{"name": f"m{i}", "name_hash": f"{i:040d}", "last_active": i} for i in range(3)]
    async with database.transaction() as c:
        await _INSERT.execute_many(c, rows)
        await _INSERT.execute_many(c, [])
        await _RENAME.execute_many(c, [{"old": "m0", "new": "x0"}, {"old": "m2", "new": "x2"}])
        with pytest.raises(sa.exc.IntegrityError):
            async with c.begin_nested():
                await _INSERT.execute_many(c, [rows[1]])
        with pytest.raises(sa.exc.SQLAlchemyError, match="name"):
            await _INSERT.execute_many(c, [{"name": "y"}])
    async with database.reading() as c:
        stored = await c.execute(sa.select(_m.c.name, _m.c.last_active).order_by(_m.c.name))
        assert [tuple(r) for r in stored] == [("m1", 1), ("x0", 0), ("x2", 2)]


@pytest.mark.parametrize(
    "stmt",
    [
        sa.select(_m.c.id).where(_m.c.last_active == sa.bindparam("when", type_=sa.DateTime())),
        sa.select(_m.c.id).where(_m.c.id.in_(sa.bindparam("ids", expanding=True))),
    ],
    ids=["converted-value", "expanding-in"],
)
async def test_statements_sqlalchemy_must_convert_are_refused(
    tmp_path: Path, stmt: sa.Select[tuple[int]]
) -> None:
    db = Database(f"sqlite:///{tmp_path}/x.sqlite", clock=FakeClock())
    try:
        async with db.reading() as c:
            with pytest.raises(TypeError, match="not a statement to prepare"):
                await Prepared(stmt).execute(c, {"when": datetime.datetime.now(), "ids": [1]})
    finally:
        await db.close()
