"""The SQLite adapter: one trip to aiosqlite's thread per statement, and DBAPI results intact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiosqlite
import pytest
import sqlalchemy as sa

from buildyard.master.db.engine import make_engine, write_transaction

T = sa.table("t", sa.column("id", sa.Integer), sa.column("v", sa.String))


async def test_statements_are_one_hop_each_with_their_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(sa.make_url(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"))
    try:
        async with write_transaction(engine) as c:
            await c.execute(sa.text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT UNIQUE)"))
        hops = 0
        real = aiosqlite.Connection._execute

        async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kw: Any) -> Any:
            nonlocal hops
            hops += 1
            return await real(self, fn, *args, **kw)  # type: ignore[no-untyped-call]

        monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
        async with write_transaction(engine) as c:
            hops = 0
            inserted = await c.execute(sa.text("INSERT INTO t (v) VALUES ('a')"))
            assert (inserted.rowcount, inserted.lastrowid, hops) == (1, 1, 1)
            await c.execute(T.insert(), [{"v": "b"}, {"v": "c"}])  # executemany
            assert hops == 2
            rows = (await c.execute(sa.select(T).order_by(T.c.id))).all()
            assert [tuple(r) for r in rows] == [(1, "a"), (2, "b"), (3, "c")]
            assert hops == 3
            changed = await c.execute(
                T.update().where(T.c.id > 1).values(v=T.c.v + "!").returning(T.c.id, T.c.v)
            )
            assert sorted(tuple(r) for r in changed) == [(2, "b!"), (3, "c!")]
            assert hops == 4
            with pytest.raises(sa.exc.IntegrityError, match="UNIQUE"):
                async with c.begin_nested():
                    await c.execute(T.insert().values(v="a"))
        async with engine.connect() as c:
            assert (await c.execute(sa.select(sa.func.count()).select_from(T))).scalar() == 3
    finally:
        await engine.dispose()
