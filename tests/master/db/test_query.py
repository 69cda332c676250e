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


async def test_integers_beyond_a_column_are_still_bounds(database: Database) -> None:
    # PostgreSQL's INTEGER columns are 32-bit; a filter value beyond them compares all the same
    await _builders(database)

    def named(op: Op, value: int) -> QueryOptions:
        return QueryOptions(filters=(Filter(field="builderid", op=op, values=(value,)),))

    big = 2**40
    assert len(await database.builders.get_builders(options=named(Op.LT, big))) == 3
    assert await database.builders.get_builders(options=named(Op.GT, big)) == []
    assert await database.builders.get_builders(options=named(Op.EQ, -big)) == []
    both = QueryOptions(filters=(Filter(field="builderid", op=Op.NE, values=(big, -big)),))
    assert await database.builders.count_builders(options=both) == 3


async def test_contains_is_a_plain_substring_of_text_only(database: Database) -> None:
    await _builders(database)

    def containing(field: str, *values: object) -> QueryOptions:
        return QueryOptions(filters=(Filter(field=field, op=Op.CONTAINS, values=values),))

    # % and _ are characters, not LIKE wildcards
    assert await database.builders.get_builders(options=containing("description", "%")) == []
    assert await database.builders.get_builders(options=containing("description", "_")) == []
    found = await database.builders.get_builders(options=containing("description", "lph"))
    assert [b.name for b in found] == ["c"]
    # a number contains nothing (as the Python filters have it)
    assert await database.builders.get_builders(options=containing("builderid", 1)) == []
