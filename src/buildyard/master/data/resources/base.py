"""What a resource module declares: field types, and endpoints by path pattern.

A field's :class:`FieldType` says how a query argument on it parses; its :class:`JsonType` says
what value the API sends (nullable, a list of what, an object with which keys), which the OpenAPI
description (``www/openapi.py``) is generated from.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from buildyard.master.data.resultspec import FieldType, ResultSpec
from buildyard.master.db.connector import Database

Item = dict[str, Any]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Collection:
    items: list[Item]
    total: int | None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class JsonType:
    """The JSON value of a field as the API sends it. ``kind`` is a JSON Schema type
    (``integer``, ``string``, ``boolean``, ``array``, ``object``) or ``any``."""

    kind: str
    nullable: bool = False
    # an array's items; an array of ``length`` values (a pair, ...) takes one type per position
    items: JsonType | tuple[JsonType, ...] | None = None
    # an object's keys, every one present; ``values``: the values of a map with any keys
    properties: Mapping[str, JsonType] | None = None
    values: JsonType | None = None


INT = JsonType(kind="integer")
STR = JsonType(kind="string")
BOOL = JsonType(kind="boolean")
ANY = JsonType(kind="any")


def nullable(t: JsonType) -> JsonType:
    return dataclasses.replace(t, nullable=True)


def list_of(t: JsonType) -> JsonType:
    return JsonType(kind="array", items=t)


def obj(**properties: JsonType) -> JsonType:
    return JsonType(kind="object", properties=properties)


def map_of(t: JsonType) -> JsonType:
    return JsonType(kind="object", values=t)


# ``{name: [value, source]}``, as builds, buildsets and changes carry their properties
PROPERTIES = map_of(JsonType(kind="array", items=(ANY, STR)))
_PLAIN = {
    FieldType.INTEGER: INT,
    FieldType.DATETIME: INT,  # epoch seconds
    FieldType.STRING: STR,
    FieldType.IDENTIFIER: STR,
    FieldType.BOOLEAN: BOOL,
    FieldType.OTHER: ANY,
}

_ELEMENT_TYPES = {"integer": FieldType.INTEGER, "string": FieldType.STRING}


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ResourceType:
    name: str
    plural: str
    fields: Mapping[str, FieldType]
    # the JSON type of each field whose value is not simply its FieldType's, never null
    # (nullable fields, lists, objects); see :meth:`json_type`
    json: Mapping[str, JsonType] = dataclasses.field(default_factory=dict)
    # the whole entity's type when it is not an object of ``fields`` (a properties map)
    entity: JsonType | None = None

    def json_type(self, field: str) -> JsonType:
        return self.json.get(field) or _PLAIN[self.fields[field]]

    def value_types(self) -> dict[str, FieldType]:
        """How a filter's value on each field parses: a field's own type, or for a list of
        integers or strings the type of its elements (``tags__contains=x``, as Buildbot parses
        a list field's argument by its element type)."""
        types = dict(self.fields)
        for name, kind in self.fields.items():
            t = self.json.get(name)
            if kind is FieldType.OTHER and t is not None and t.kind == "array":
                element = t.items
                if isinstance(element, JsonType) and element.kind in _ELEMENT_TYPES:
                    types[name] = _ELEMENT_TYPES[element.kind]
        return types

    def json_entity(self) -> JsonType:
        """The type of one entity (as REST items and event bodies carry it)."""
        return self.entity or JsonType(
            kind="object", properties={f: self.json_type(f) for f in self.fields}
        )


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RawData:
    """A download (a build's data value): its bytes, sent as ``content_type``."""

    body: bytes
    content_type: str
    filename: str


CollectionHandler = Callable[[Database, Mapping[str, Any], ResultSpec], Awaitable[Collection]]
ItemHandler = Callable[[Database, Mapping[str, Any]], Awaitable[Item | None]]
RawHandler = Callable[[Database, Mapping[str, Any]], Awaitable[RawData | None]]
# fills an item's ``properties`` with the ``property=`` names asked for (builds, requests)
PropertiesHandler = Callable[[Database, Item, Sequence[str]], Awaitable[Item]]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    """``pattern`` segments are literals or ``n:name`` (integer), ``i:name`` (identifier),
    ``s:name`` (any string)."""

    pattern: tuple[str, ...]
    rtype: ResourceType
    collection: CollectionHandler | None = None
    item: ItemHandler | None = None
    # a download rather than JSON (``.../data/<name>/value``)
    raw: RawHandler | None = None
    # on an item endpoint: how ``property=`` adds the item's properties
    properties: PropertiesHandler | None = None


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
