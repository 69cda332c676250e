"""The ``buildrequest`` resource.

``claimed=<bool>`` and ``complete=<bool>`` are Buildbot's special filters: ``claimed=false``
means "unclaimed and incomplete" (what a master could still claim). Other forms of them, and
every other field, are plain column filters.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from buildyard.master.data import shapes
from buildyard.master.data.resources.base import (
    INT,
    PROPERTIES,
    Collection,
    Endpoint,
    Item,
    ResourceType,
    nullable,
    page,
)
from buildyard.master.data.resources.builds import select_properties
from buildyard.master.data.resultspec import FieldType, ResultSpec
from buildyard.master.db.connector import Database
from buildyard.master.db.query import QueryOptions

BUILDREQUEST = ResourceType(
    name="buildrequest",
    plural="buildrequests",
    fields={
        "buildrequestid": FieldType.INTEGER,
        "buildsetid": FieldType.INTEGER,
        "builderid": FieldType.INTEGER,
        "priority": FieldType.INTEGER,
        "claimed": FieldType.BOOLEAN,
        "claimed_at": FieldType.DATETIME,
        "claimed_by_masterid": FieldType.INTEGER,
        "complete": FieldType.BOOLEAN,
        "results": FieldType.INTEGER,
        "submitted_at": FieldType.DATETIME,
        "complete_at": FieldType.DATETIME,
        "waited_for": FieldType.BOOLEAN,
        "properties": FieldType.OTHER,
    },
    json={
        "claimed_at": nullable(INT),
        "claimed_by_masterid": nullable(INT),
        "results": nullable(INT),
        "complete_at": nullable(INT),
        # null unless asked for with ``property=``
        "properties": nullable(PROPERTIES),
    },
)
_DB_FIELDS = {f: f for f in BUILDREQUEST.fields if f != "properties"}
_SPECIAL = ("claimed", "complete")


def _take_special(spec: ResultSpec) -> tuple[dict[str, bool], ResultSpec]:
    taken: dict[str, bool] = {}
    rest = []
    for f in spec.filters:
        if f.field in _SPECIAL and f.op == "eq" and len(f.values) == 1 and f.field not in taken:
            taken[f.field] = bool(f.values[0])
        else:
            rest.append(f)
    return taken, dataclasses.replace(spec, filters=tuple(rest))


async def _with_properties(db: Database, items: list[Item], spec: ResultSpec) -> list[Item]:
    if not spec.properties:
        return items
    for item in items:
        props = await db.buildsets.get_buildset_properties(item["buildsetid"])
        item["properties"] = select_properties(props, spec.properties)
    return items


async def _buildrequests(db: Database, kw: Mapping[str, Any], spec: ResultSpec) -> Collection:
    special, spec = _take_special(spec)
    scope: dict[str, Any] = {"builderid": kw.get("builderid"), **special}

    async def in_db(options: QueryOptions) -> tuple[list[Item], int]:
        async with db.reading() as conn:  # rows and total from one snapshot
            rows = await db.buildrequests.get_buildrequests(**scope, options=options, conn=conn)
            total = await db.buildrequests.count_buildrequests(**scope, options=options, conn=conn)
        return await _with_properties(db, [shapes.buildrequest(r) for r in rows], spec), total

    async def everything() -> list[Item]:
        rows = await db.buildrequests.get_buildrequests(**scope)
        return await _with_properties(db, [shapes.buildrequest(r) for r in rows], spec)

    return await page(spec, _DB_FIELDS, in_db, everything)


async def _buildrequest(db: Database, kw: Mapping[str, Any]) -> Item | None:
    br = await db.buildrequests.get_buildrequest(kw["buildrequestid"])
    return None if br is None else shapes.buildrequest(br)


async def _buildrequest_properties(db: Database, item: Item, names: Sequence[str]) -> Item:
    # ``property=`` on one request: its buildset's, as on a list of them
    props = await db.buildsets.get_buildset_properties(item["buildsetid"])
    return {**item, "properties": select_properties(props, names)}


ENDPOINTS = (
    Endpoint(pattern=("buildrequests",), rtype=BUILDREQUEST, collection=_buildrequests),
    Endpoint(
        pattern=("builders", "n:builderid", "buildrequests"),
        rtype=BUILDREQUEST,
        collection=_buildrequests,
    ),
    Endpoint(
        pattern=("buildrequests", "n:buildrequestid"),
        rtype=BUILDREQUEST,
        item=_buildrequest,
        properties=_buildrequest_properties,
    ),
)
