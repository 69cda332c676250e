"""``Queries.builder_ids``: a scheduler's builders are read from the database once, not for
every buildset it adds (a force through the web reads none), and a name with no builder row
yet is looked up again until it has one."""

from __future__ import annotations

from typing import Any

import pytest

from buildyard.master.data.queries import Queries
from buildyard.master.db.connector import Database


async def test_builder_ids_are_read_once_and_unknown_names_again(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await database.builders.find_builder_ids(["a", "b"])
    asked: list[list[str]] = []
    read = database.builders.ids_by_name

    async def counting(names: Any, **kwargs: Any) -> dict[str, int]:
        asked.append(sorted(names))
        return await read(names, **kwargs)

    monkeypatch.setattr(database.builders, "ids_by_name", counting)
    queries = Queries(db=database)

    assert await queries.builder_ids(["b", "a", "a"]) == sorted([ids["a"], ids["b"]])
    assert await queries.builder_ids(["a"]) == [ids["a"]]
    assert await queries.builder_ids(["b", "a"]) == sorted([ids["a"], ids["b"]])
    assert asked == [["a", "b"]]  # once for both, then from memory

    # an unknown name is left out, and asked for again: once its builder exists, it is found
    assert await queries.builder_ids(["a", "later"]) == [ids["a"]]
    later = (await database.builders.find_builder_ids(["later"]))["later"]
    del asked[2:]  # (find_builder_ids's own reads)
    assert await queries.builder_ids(["later", "a"]) == sorted([ids["a"], later])
    assert asked == [["a", "b"], ["later"], ["later"]]
    assert await queries.builder_ids(["later"]) == [later]
    assert len(asked) == 3
