"""The ``changesource`` resource: a name, and the master running it (embedded, or null)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from buildyard.master.data.resources import masters
from buildyard.master.data.resources.base import (
    Collection,
    Endpoint,
    Item,
    ResourceType,
    nullable,
    page,
)
from buildyard.master.data.resources.schedulers import EmbeddedMasters
from buildyard.master.data.resultspec import FieldType, ResultSpec
from buildyard.master.db.connector import Database
from buildyard.master.db.query import QueryOptions

CHANGESOURCE = ResourceType(
    name="changesource",
    plural="changesources",
    fields={
        "changesourceid": FieldType.INTEGER,
        "name": FieldType.STRING,
        "master": FieldType.OTHER,
    },
    json={"master": nullable(masters.MASTER.json_entity())},
)
_DB_FIELDS = {"changesourceid": "changesourceid", "name": "name"}


async def _changesources(db: Database, kw: Mapping[str, Any], spec: ResultSpec) -> Collection:
    scope = {"masterid": kw.get("masterid")}
    embed = EmbeddedMasters(db)

    async def in_db(options: QueryOptions) -> tuple[list[Item], int]:
        async with db.reading() as conn:  # rows and total from one snapshot
            rows = await db.changesources.get_changesources(**scope, options=options, conn=conn)
            total = await db.changesources.count_changesources(**scope, options=options, conn=conn)
        return [
            {"changesourceid": c.id, "name": c.name, "master": await embed.get(c.masterid)}
            for c in rows
        ], total

    async def everything() -> list[Item]:
        return [
            {"changesourceid": c.id, "name": c.name, "master": await embed.get(c.masterid)}
            for c in await db.changesources.get_changesources(**scope)
        ]

    return await page(spec, _DB_FIELDS, in_db, everything)


async def _changesource(db: Database, kw: Mapping[str, Any]) -> Item | None:
    c = await db.changesources.get_changesource(kw["changesourceid"])
    if c is None or ("masterid" in kw and c.masterid != kw["masterid"]):
        return None
    master = await EmbeddedMasters(db).get(c.masterid)
    return {"changesourceid": c.id, "name": c.name, "master": master}


ENDPOINTS = (
    Endpoint(pattern=("changesources",), rtype=CHANGESOURCE, collection=_changesources),
    Endpoint(
        pattern=("masters", "n:masterid", "changesources"),
        rtype=CHANGESOURCE,
        collection=_changesources,
    ),
    Endpoint(pattern=("changesources", "n:changesourceid"), rtype=CHANGESOURCE, item=_changesource),
    Endpoint(
        pattern=("masters", "n:masterid", "changesources", "n:changesourceid"),
        rtype=CHANGESOURCE,
        item=_changesource,
    ),
)
