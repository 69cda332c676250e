"""The ``scheduler`` resource: a name, whether it is enabled, and the master running it
(embedded as a master object, or null)."""

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
from buildyard.master.data.resultspec import FieldType, ResultSpec
from buildyard.master.db.connector import Database
from buildyard.master.db.query import QueryOptions
from buildyard.master.model.schedulers import Scheduler

SCHEDULER = ResourceType(
    name="scheduler",
    plural="schedulers",
    fields={
        "schedulerid": FieldType.INTEGER,
        "name": FieldType.STRING,
        "enabled": FieldType.BOOLEAN,
        "master": FieldType.OTHER,
    },
    json={"master": nullable(masters.MASTER.json_entity())},
)
_SCHEDULER_DB_FIELDS = {"schedulerid": "schedulerid", "name": "name", "enabled": "enabled"}


class EmbeddedMasters:
    """Master objects to embed, each read once per request."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._seen: dict[int, Item | None] = {}

    async def get(self, masterid: int | None) -> Item | None:
        if masterid is None:
            return None
        if masterid not in self._seen:
            m = await self._db.masters.get_master(masterid)
            self._seen[masterid] = None if m is None else masters.to_api(m)
        return self._seen[masterid]


async def _to_api(s: Scheduler, embed: EmbeddedMasters) -> Item:
    master = await embed.get(s.masterid)
    return {"schedulerid": s.id, "name": s.name, "enabled": s.enabled, "master": master}


async def _schedulers(db: Database, kw: Mapping[str, Any], spec: ResultSpec) -> Collection:
    scope = {"masterid": kw.get("masterid")}
    embed = EmbeddedMasters(db)

    async def in_db(options: QueryOptions) -> tuple[list[Item], int]:
        async with db.reading() as conn:  # rows and total from one snapshot
            rows = await db.schedulers.get_schedulers(**scope, options=options, conn=conn)
            total = await db.schedulers.count_schedulers(**scope, options=options, conn=conn)
        return [await _to_api(s, embed) for s in rows], total

    async def everything() -> list[Item]:
        return [await _to_api(s, embed) for s in await db.schedulers.get_schedulers(**scope)]

    return await page(spec, _SCHEDULER_DB_FIELDS, in_db, everything)


async def _scheduler(db: Database, kw: Mapping[str, Any]) -> Item | None:
    s = await db.schedulers.get_scheduler(kw["schedulerid"])
    if s is None or ("masterid" in kw and s.masterid != kw["masterid"]):
        return None
    return await _to_api(s, EmbeddedMasters(db))


ENDPOINTS = (
    Endpoint(pattern=("schedulers",), rtype=SCHEDULER, collection=_schedulers),
    Endpoint(
        pattern=("masters", "n:masterid", "schedulers"), rtype=SCHEDULER, collection=_schedulers
    ),
    Endpoint(pattern=("schedulers", "n:schedulerid"), rtype=SCHEDULER, item=_scheduler),
    Endpoint(
        pattern=("masters", "n:masterid", "schedulers", "n:schedulerid"),
        rtype=SCHEDULER,
        item=_scheduler,
    ),
)
