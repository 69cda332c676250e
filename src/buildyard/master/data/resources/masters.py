"""The ``master`` resource: masterid, name, active, last_active."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from buildyard.master.data.resources.base import Collection, Endpoint, Item, ResourceType, page
from buildyard.master.data.resultspec import FieldType, ResultSpec
from buildyard.master.db.connector import Database
from buildyard.master.db.query import Filter, Op, QueryOptions
from buildyard.master.model.masters import Master

MASTER = ResourceType(
    name="master",
    plural="masters",
    fields={
        "masterid": FieldType.INTEGER,
        "name": FieldType.STRING,
        "active": FieldType.BOOLEAN,
        "last_active": FieldType.DATETIME,
    },
)
_DB_FIELDS = {
    "masterid": "masterid",
    "name": "name",
    "active": "active",
    "last_active": "last_active",
}


def to_api(m: Master) -> Item:
    return {"masterid": m.id, "name": m.name, "active": m.active, "last_active": m.last_active}


async def _masters(db: Database, kw: Mapping[str, Any], spec: ResultSpec) -> Collection:
    scope: tuple[Filter, ...] = ()
    if "builderid" in kw:  # the masters the builder is configured on
        builder = await db.builders.get_builder(kw["builderid"])
        masterids = () if builder is None else tuple(builder.masterids)
        scope = (Filter(field="masterid", op=Op.IN, values=masterids),)

    async def in_db(options: QueryOptions) -> tuple[list[Item], int]:
        options = dataclasses.replace(options, filters=scope + options.filters)
        async with db.reading() as conn:  # rows and total from one snapshot
            rows = await db.masters.get_masters(options, conn=conn)
            total = await db.masters.count_masters(options, conn=conn)
        return [to_api(m) for m in rows], total

    async def everything() -> list[Item]:
        return [to_api(m) for m in await db.masters.get_masters(QueryOptions(filters=scope))]

    return await page(spec, _DB_FIELDS, in_db, everything)


async def _master(db: Database, kw: Mapping[str, Any]) -> Item | None:
    if "builderid" in kw:  # only a master the builder is configured on
        builder = await db.builders.get_builder(kw["builderid"])
        if builder is None or kw["masterid"] not in builder.masterids:
            return None
    m = await db.masters.get_master(kw["masterid"])
    return to_api(m) if m else None


ENDPOINTS = (
    Endpoint(pattern=("masters",), rtype=MASTER, collection=_masters),
    Endpoint(pattern=("masters", "n:masterid"), rtype=MASTER, item=_master),
    Endpoint(pattern=("builders", "n:builderid", "masters"), rtype=MASTER, collection=_masters),
    Endpoint(
        pattern=("builders", "n:builderid", "masters", "n:masterid"), rtype=MASTER, item=_master
    ),
)
