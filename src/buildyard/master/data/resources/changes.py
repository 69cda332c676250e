"""The ``change`` resource, with its source stamp embedded."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from buildyard.master.data import shapes
from buildyard.master.data.resources import sourcestamps
from buildyard.master.data.resources.base import (
    INT,
    PROPERTIES,
    STR,
    Collection,
    Endpoint,
    Item,
    ResourceType,
    list_of,
    nullable,
    page,
)
from buildyard.master.data.resources.builds import BUILD_PREFIXES, resolve_build
from buildyard.master.data.resultspec import FieldType, ResultSpec
from buildyard.master.db.connector import Database
from buildyard.master.db.query import Filter, Op, QueryOptions
from buildyard.master.model.changes import Change

CHANGE = ResourceType(
    name="change",
    plural="changes",
    fields={
        "changeid": FieldType.INTEGER,
        "parent_changeids": FieldType.OTHER,
        "author": FieldType.STRING,
        "committer": FieldType.STRING,
        "files": FieldType.OTHER,
        "comments": FieldType.STRING,
        "revision": FieldType.STRING,
        "when_timestamp": FieldType.DATETIME,
        "branch": FieldType.STRING,
        "category": FieldType.STRING,
        "revlink": FieldType.STRING,
        "properties": FieldType.OTHER,
        "repository": FieldType.STRING,
        "project": FieldType.STRING,
        "codebase": FieldType.STRING,
        "sourcestamp": FieldType.OTHER,
    },
    json={
        "parent_changeids": list_of(INT),
        "committer": nullable(STR),
        "files": list_of(STR),
        "revision": nullable(STR),
        "branch": nullable(STR),
        "category": nullable(STR),
        "revlink": nullable(STR),
        "properties": PROPERTIES,
        "sourcestamp": nullable(sourcestamps.SOURCESTAMP.json_entity()),
    },
)
_DB_FIELDS = {
    f: f
    for f in (
        "changeid",
        "author",
        "committer",
        "comments",
        "revision",
        "when_timestamp",
        "branch",
        "category",
        "revlink",
        "repository",
        "project",
        "codebase",
    )
}


async def _to_api(db: Database, changes: Sequence[Change]) -> list[Item]:
    stamps: dict[int, Any] = {}
    out = []
    for ch in changes:
        if ch.sourcestampid not in stamps:
            stamps[ch.sourcestampid] = await db.sourcestamps.get_sourcestamp(ch.sourcestampid)
        out.append(shapes.change(ch, stamps[ch.sourcestampid]))
    return out


async def _changes(db: Database, kw: Mapping[str, Any], spec: ResultSpec) -> Collection:
    scope: tuple[Filter, ...] = ()
    if "ssid" in kw:
        scope = (Filter(field="sourcestampid", op=Op.EQ, values=(kw["ssid"],)),)

    async def in_db(options: QueryOptions) -> tuple[list[Item], int]:
        options = dataclasses.replace(options, filters=scope + options.filters)
        async with db.reading() as conn:  # rows and total from one snapshot
            rows = await db.changes.get_changes(options, conn=conn)
            total = await db.changes.get_changes_count(options, conn=conn)
        return await _to_api(db, rows), total

    async def everything() -> list[Item]:
        return await _to_api(db, await db.changes.get_changes(QueryOptions(filters=scope)))

    return await page(spec, _DB_FIELDS, in_db, everything)


async def _build_changes(db: Database, kw: Mapping[str, Any], spec: ResultSpec) -> Collection:
    # what a build brings is worked out by walking the change chain: few rows, paged in Python
    build = await resolve_build(db, kw)
    if build is None:
        return Collection(items=[], total=0)
    items, total = spec.apply(await _to_api(db, await db.changes.get_changes_for_build(build.id)))
    return Collection(items=items, total=total)


async def _change(db: Database, kw: Mapping[str, Any]) -> Item | None:
    ch = await db.changes.get_change(kw["changeid"])
    return None if ch is None else (await _to_api(db, [ch]))[0]


ENDPOINTS = (
    Endpoint(pattern=("changes",), rtype=CHANGE, collection=_changes),
    Endpoint(pattern=("sourcestamps", "n:ssid", "changes"), rtype=CHANGE, collection=_changes),
    *(
        Endpoint(pattern=(*p, "changes"), rtype=CHANGE, collection=_build_changes)
        for p in BUILD_PREFIXES
    ),
    Endpoint(pattern=("changes", "n:changeid"), rtype=CHANGE, item=_change),
)
