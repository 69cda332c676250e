"""Generic query options behave the same on both backends."""

from __future__ import annotations

from buildyard.master.db.connector import Database
from buildyard.master.db.query import Filter, Op, QueryOptions


async def _builders(database: Database) -> None:
    for name, description in (("a", "zeta"), ("b", None), ("c", "alpha")):
        bid = await database.builders.find_builder_id(name)
        await database.builders.update_builder_info(
            bid,
            description=description,
            description_format=None,
            description_html=None,
            projectid=None,
            tags=(),
        )


async def test_null_sorts_first_ascending_and_last_descending(database: Database) -> None:
    await _builders(database)
    asc = await database.builders.get_builders(options=QueryOptions(order=("description",)))
    assert [b.name for b in asc] == ["b", "c", "a"]
    desc = await database.builders.get_builders(options=QueryOptions(order=("-description",)))
    assert [b.name for b in desc] == ["a", "c", "b"]


async def test_boolean_filter_on_integer_flag(database: Database) -> None:
    a = await database.masters.find_master_id("a")
    await database.masters.find_master_id("b")
    await database.masters.set_master_state(a, active=True)
    active = QueryOptions(filters=(Filter(field="active", op=Op.EQ, values=(True,)),))
    assert [m.name for m in await database.masters.get_masters(active)] == ["a"]
    inactive = QueryOptions(filters=(Filter(field="active", op=Op.NE, values=(True,)),))
    assert [m.name for m in await database.masters.get_masters(inactive)] == ["b"]
