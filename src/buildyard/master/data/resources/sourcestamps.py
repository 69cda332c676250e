"""The ``sourcestamp`` resource: ssid, revision, branch, repository, project, codebase, patch,
created_at."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from buildyard.master.data import shapes
from buildyard.master.data.resources.base import (
    INT,
    STR,
    Collection,
    Endpoint,
    Item,
    ResourceType,
    nullable,
    obj,
    page,
)
from buildyard.master.data.resultspec import FieldType, ResultSpec
from buildyard.master.db.connector import Database
from buildyard.master.db.query import QueryOptions

# the body is bytes, which the API sends as null (as Buildbot does)
PATCH = obj(
    patchid=INT,
    body=nullable(STR),
    level=INT,
    subdir=nullable(STR),
    author=STR,
    comment=STR,
)
SOURCESTAMP = ResourceType(
    name="sourcestamp",
    plural="sourcestamps",
    fields={
        "ssid": FieldType.INTEGER,
        "revision": FieldType.STRING,
        "branch": FieldType.STRING,
        "repository": FieldType.STRING,
        "project": FieldType.STRING,
        "codebase": FieldType.STRING,
        "patch": FieldType.OTHER,
        "created_at": FieldType.DATETIME,
    },
    json={
        "branch": nullable(STR),
        "revision": nullable(STR),
        "patch": nullable(PATCH),
    },
)
_DB_FIELDS = {f: f for f in SOURCESTAMP.fields if f != "patch"}


async def _sourcestamps(db: Database, kw: Mapping[str, Any], spec: ResultSpec) -> Collection:
    bsid = kw.get("bsid")

    async def in_db(options: QueryOptions) -> tuple[list[Item], int]:
        async with db.reading() as conn:  # rows and total from one snapshot
            rows = await db.sourcestamps.get_sourcestamps(bsid, options, conn=conn)
            total = await db.sourcestamps.count_sourcestamps(bsid, options, conn=conn)
        return [shapes.sourcestamp(s) for s in rows], total

    async def everything() -> list[Item]:
        return [shapes.sourcestamp(s) for s in await db.sourcestamps.get_sourcestamps(bsid)]

    return await page(spec, _DB_FIELDS, in_db, everything)


async def _sourcestamp(db: Database, kw: Mapping[str, Any]) -> Item | None:
    ss = await db.sourcestamps.get_sourcestamp(kw["ssid"])
    return None if ss is None else shapes.sourcestamp(ss)


ENDPOINTS = (
    Endpoint(pattern=("sourcestamps",), rtype=SOURCESTAMP, collection=_sourcestamps),
    Endpoint(
        pattern=("buildsets", "n:bsid", "sourcestamps"),
        rtype=SOURCESTAMP,
        collection=_sourcestamps,
    ),
    Endpoint(pattern=("sourcestamps", "n:ssid"), rtype=SOURCESTAMP, item=_sourcestamp),
)
