"""What a resource module declares: field types, and endpoints by path pattern."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from buildyard.master.data.resultspec import FieldType, ResultSpec
from buildyard.master.db.connector import Database

Item = dict[str, Any]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Collection:
    items: list[Item]
    total: int | None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ResourceType:
    name: str
    plural: str
    fields: Mapping[str, FieldType]


CollectionHandler = Callable[[Database, Mapping[str, Any], ResultSpec], Awaitable[Collection]]
ItemHandler = Callable[[Database, Mapping[str, Any]], Awaitable[Item | None]]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    """``pattern`` segments are literals or ``n:name`` (integer), ``i:name`` (identifier),
    ``s:name`` (any string)."""

    pattern: tuple[str, ...]
    rtype: ResourceType
    collection: CollectionHandler | None = None
    item: ItemHandler | None = None


async def page(
    spec: ResultSpec,
    db_fields: Mapping[str, str],
    in_db: Callable[[Any], Awaitable[tuple[list[Item], int]]],
    everything: Callable[[], Awaitable[list[Item]]],
) -> Collection:
    """Run ``spec`` in SQL when it can be (``db_fields`` maps API field -> column name),
    otherwise fetch everything and apply it in Python."""
    pushed = spec.query_options(db_fields.keys())
    if pushed is not None:
        options, rest = pushed
        renamed = dataclasses.replace(
            options,
            filters=tuple(
                dataclasses.replace(f, field=db_fields[f.field]) for f in options.filters
            ),
            order=tuple(
                ("-" if o.startswith("-") else "") + db_fields[o.removeprefix("-")]
                for o in options.order
            ),
        )
        items, total = await in_db(renamed)
        return Collection(items=[rest.select(i) for i in items], total=total)
    items, total = spec.apply(await everything())
    return Collection(items=items, total=total)
