"""The ``builder`` resource: builderid, name, masterids, description..., projectid, tags."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
from buildyard.master.model.builders import Builder

BUILDER = ResourceType(
    name="builder",
    plural="builders",
    fields={
        "builderid": FieldType.INTEGER,
        "name": FieldType.STRING,
        "masterids": FieldType.OTHER,
        "description": FieldType.STRING,
        "description_format": FieldType.STRING,
        "description_html": FieldType.STRING,
        "projectid": FieldType.INTEGER,
        "tags": FieldType.OTHER,
    },
    json={
        "masterids": list_of(INT),
        "description": nullable(STR),
        "description_format": nullable(STR),
        "description_html": nullable(STR),
        "projectid": nullable(INT),
        "tags": list_of(STR),
    },
)
_DB_FIELDS = {
    f: f
    for f in (
        "builderid",
        "name",
        "description",
        "description_format",
        "description_html",
        "projectid",
    )
}


def to_api(b: Builder) -> Item:
    return {
        "builderid": b.id,
        "name": b.name,
        "masterids": list(b.masterids),
        "description": b.description,
        "description_format": b.description_format,
        "description_html": b.description_html,
        "projectid": b.projectid,
        "tags": list(b.tags),
    }


async def _builders(db: Database, kw: Mapping[str, Any], spec: ResultSpec) -> Collection:
    scope = {
        "masterid": kw.get("masterid"),
        "projectid": kw.get("projectid"),
        "workerid": kw.get("workerid"),
    }

    async def in_db(options: QueryOptions) -> tuple[list[Item], int]:
        async with db.reading() as conn:  # rows and total from one snapshot
            rows = await db.builders.get_builders(**scope, options=options, conn=conn)
            total = await db.builders.count_builders(**scope, options=options, conn=conn)
        return [to_api(b) for b in rows], total

    async def everything() -> list[Item]:
        return [to_api(b) for b in await db.builders.get_builders(**scope)]

    return await page(spec, _DB_FIELDS, in_db, everything)


async def _builder(db: Database, kw: Mapping[str, Any]) -> Item | None:
    b = await db.builders.get_builder(kw["builderid"])
    if b is None or ("masterid" in kw and kw["masterid"] not in b.masterids):
        return None
    return to_api(b)


async def _builder_by_name(db: Database, kw: Mapping[str, Any]) -> Item | None:
    for b in await db.builders.get_builders():
        if b.name == kw["name"]:
            return to_api(b)
    return None


ENDPOINTS = (
    Endpoint(pattern=("builders",), rtype=BUILDER, collection=_builders),
    Endpoint(pattern=("builders", "n:builderid"), rtype=BUILDER, item=_builder),
    Endpoint(pattern=("builders", "s:name"), rtype=BUILDER, item=_builder_by_name),
    Endpoint(pattern=("masters", "n:masterid", "builders"), rtype=BUILDER, collection=_builders),
    Endpoint(pattern=("projects", "n:projectid", "builders"), rtype=BUILDER, collection=_builders),
    Endpoint(pattern=("workers", "n:workerid", "builders"), rtype=BUILDER, collection=_builders),
    Endpoint(
        pattern=("masters", "n:masterid", "builders", "n:builderid"), rtype=BUILDER, item=_builder
    ),
)
