"""The ``worker`` resource, seen from everywhere or from one master and/or builder.

Under ``masters/<m>`` or ``builders/<b>`` only the workers configured there are listed, and
``configured_on`` / ``connected_to`` show only the matching links (as in Buildbot).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from buildyard.master.data.resources.base import (
    ANY,
    INT,
    STR,
    Collection,
    Endpoint,
    Item,
    ResourceType,
    list_of,
    map_of,
    nullable,
    obj,
    page,
)
from buildyard.master.data.resultspec import FieldType, ResultSpec
from buildyard.master.db.connector import Database
from buildyard.master.db.query import QueryOptions
from buildyard.master.model.workers import Worker

WORKER = ResourceType(
    name="worker",
    plural="workers",
    fields={
        "workerid": FieldType.INTEGER,
        "name": FieldType.STRING,
        "connected_to": FieldType.OTHER,
        "configured_on": FieldType.OTHER,
        "workerinfo": FieldType.OTHER,
        "paused": FieldType.BOOLEAN,
        "pause_reason": FieldType.STRING,
        "graceful": FieldType.BOOLEAN,
    },
    json={
        "connected_to": list_of(obj(masterid=INT)),
        "configured_on": list_of(obj(masterid=INT, builderid=INT)),
        "workerinfo": map_of(ANY),
        "pause_reason": nullable(STR),
    },
)
_DB_FIELDS = {f: f for f in ("workerid", "name", "paused", "pause_reason", "graceful")}
_SCOPES: tuple[tuple[str, ...], ...] = (
    (),
    ("masters", "n:masterid"),
    ("builders", "n:builderid"),
    ("masters", "n:masterid", "builders", "n:builderid"),
)


def to_api(w: Worker) -> Item:
    return {
        "workerid": w.id,
        "name": w.name,
        "connected_to": [{"masterid": m} for m in w.connected_to],
        "configured_on": [
            {"masterid": c.masterid, "builderid": c.builderid} for c in w.configured_on
        ],
        "workerinfo": dict(w.workerinfo),
        "paused": w.paused,
        "pause_reason": w.pause_reason,
        "graceful": w.graceful,
    }


async def _workers(db: Database, kw: Mapping[str, Any], spec: ResultSpec) -> Collection:
    scope = {"masterid": kw.get("masterid"), "builderid": kw.get("builderid")}

    async def in_db(options: QueryOptions) -> tuple[list[Item], int]:
        async with db.reading() as conn:  # rows and total from one snapshot
            rows = await db.workers.get_workers(**scope, options=options, conn=conn)
            total = await db.workers.count_workers(**scope, options=options, conn=conn)
        return [to_api(w) for w in rows], total

    async def everything() -> list[Item]:
        return [to_api(w) for w in await db.workers.get_workers(**scope)]

    return await page(spec, _DB_FIELDS, in_db, everything)


async def _worker(db: Database, kw: Mapping[str, Any]) -> Item | None:
    w = await db.workers.get_worker(
        kw.get("workerid"),
        name=kw.get("name"),
        masterid=kw.get("masterid"),
        builderid=kw.get("builderid"),
    )
    return None if w is None else to_api(w)


ENDPOINTS = (
    *(Endpoint(pattern=(*s, "workers"), rtype=WORKER, collection=_workers) for s in _SCOPES),
    *(
        Endpoint(pattern=(*s, "workers", last), rtype=WORKER, item=_worker)
        for s in _SCOPES
        for last in ("n:workerid", "i:name")
    ),
)
