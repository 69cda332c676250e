"""The ``buildset`` resource, with its source stamps embedded."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from buildyard.master.data import shapes
from buildyard.master.data.resources import sourcestamps
from buildyard.master.data.resources.base import (
    INT,
    STR,
    Collection,
    Endpoint,
    Item,
    ResourceType,
    list_of,
    nullable,
    page,
)
from buildyard.master.data.resultspec import FieldType, ResultSpec
from buildyard.master.db.connector import Database
from buildyard.master.db.query import QueryOptions
from buildyard.master.model.buildsets import Buildset
from buildyard.master.model.sourcestamps import SourceStamp

BUILDSET = ResourceType(
    name="buildset",
    plural="buildsets",
    fields={
        "bsid": FieldType.INTEGER,
        "external_idstring": FieldType.STRING,
        "reason": FieldType.STRING,
        "rebuilt_buildid": FieldType.INTEGER,
        "submitted_at": FieldType.INTEGER,
        "complete": FieldType.BOOLEAN,
        "complete_at": FieldType.INTEGER,
        "results": FieldType.INTEGER,
        "sourcestamps": FieldType.OTHER,
        "parent_buildid": FieldType.INTEGER,
        "parent_relationship": FieldType.STRING,
    },
    json={
        "external_idstring": nullable(STR),
        "reason": nullable(STR),
        "rebuilt_buildid": nullable(INT),
        "complete_at": nullable(INT),
        "results": nullable(INT),
        "sourcestamps": list_of(sourcestamps.SOURCESTAMP.json_entity()),
        "parent_buildid": nullable(INT),
        "parent_relationship": nullable(STR),
    },
)
_DB_FIELDS = {f: f for f in BUILDSET.fields if f != "sourcestamps"}


async def _to_api(db: Database, buildsets: Sequence[Buildset]) -> list[Item]:
    out = []
    for bs in buildsets:
        stamps: list[SourceStamp] = []
        for ssid in bs.sourcestamps:
            ss = await db.sourcestamps.get_sourcestamp(ssid)
            if ss is not None:
                stamps.append(ss)
        out.append(shapes.buildset(bs, stamps))
    return out


async def _buildsets(db: Database, kw: Mapping[str, Any], spec: ResultSpec) -> Collection:
    async def in_db(options: QueryOptions) -> tuple[list[Item], int]:
        async with db.reading() as conn:  # rows and total from one snapshot
            rows = await db.buildsets.get_buildsets(options=options, conn=conn)
            total = await db.buildsets.count_buildsets(options=options, conn=conn)
        return await _to_api(db, rows), total

    async def everything() -> list[Item]:
        return await _to_api(db, await db.buildsets.get_buildsets())

    return await page(spec, _DB_FIELDS, in_db, everything)


async def _buildset(db: Database, kw: Mapping[str, Any]) -> Item | None:
    bs = await db.buildsets.get_buildset(kw["bsid"])
    return None if bs is None else (await _to_api(db, [bs]))[0]


ENDPOINTS = (
    Endpoint(pattern=("buildsets",), rtype=BUILDSET, collection=_buildsets),
    Endpoint(pattern=("buildsets", "n:bsid"), rtype=BUILDSET, item=_buildset),
)
