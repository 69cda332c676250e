"""The ``build`` resource, and how the paths under a build find it.

A build is named by its id (``builds/<buildid>``) or by its builder (id or name) and number
(``builders/<b>/builds/<number>``); :data:`BUILD_PREFIXES` lists those forms, and steps, logs,
properties and changes hang below each of them.
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
from buildyard.master.data.resultspec import FieldType, ResultSpec
from buildyard.master.db.connector import Database
from buildyard.master.db.query import Filter, Op, QueryOptions
from buildyard.master.model.builds import Build
from buildyard.master.model.properties import PropertyValue

BUILD = ResourceType(
    name="build",
    plural="builds",
    fields={
        "buildid": FieldType.INTEGER,
        "number": FieldType.INTEGER,
        "builderid": FieldType.INTEGER,
        "buildrequestid": FieldType.INTEGER,
        "workerid": FieldType.INTEGER,
        "masterid": FieldType.INTEGER,
        "started_at": FieldType.DATETIME,
        "complete": FieldType.BOOLEAN,
        "complete_at": FieldType.DATETIME,
        "locks_duration_s": FieldType.INTEGER,
        "results": FieldType.INTEGER,
        "state_string": FieldType.STRING,
        "properties": FieldType.OTHER,
    },
    json={
        "workerid": nullable(INT),
        "complete_at": nullable(INT),
        "results": nullable(INT),
        "properties": PROPERTIES,
    },
)
_DB_FIELDS = {f: f for f in BUILD.fields if f != "properties"}

# the ways to name one build; kw: buildid, or builderid/buildername with build_number
BUILD_PREFIXES: tuple[tuple[str, ...], ...] = (
    ("builds", "n:buildid"),
    ("builders", "n:builderid", "builds", "n:build_number"),
    ("builders", "i:buildername", "builds", "n:build_number"),
)


async def builder_id(db: Database, kw: Mapping[str, Any]) -> int | None:
    """The builder a path names by ``builderid`` or ``buildername`` (None: unknown name)."""
    if "builderid" in kw:
        return int(kw["builderid"])
    by_name = QueryOptions(filters=(Filter(field="name", op=Op.EQ, values=(kw["buildername"],)),))
    found = await db.builders.get_builders(options=by_name)
    return found[0].id if found else None


async def resolve_build(db: Database, kw: Mapping[str, Any]) -> Build | None:
    """The build a path names (see :data:`BUILD_PREFIXES`), or None."""
    if "buildid" in kw:
        return await db.builds.get_build(kw["buildid"])
    builderid = await builder_id(db, kw)
    if builderid is None:
        return None
    return await db.builds.get_build_by_number(builderid, kw["build_number"])


def select_properties(props: Mapping[str, PropertyValue], names: Sequence[str]) -> dict[str, Any]:
    """The ``property=`` selection of a properties map, in the API's ``[value, source]`` form."""
    wanted = None if "*" in names else set(names)
    return {
        name: [value, source]
        for name, (value, source) in props.items()
        if wanted is None or name in wanted
    }


async def _with_properties(db: Database, items: list[Item], spec: ResultSpec) -> list[Item]:
    if not spec.properties:
        return items
    for item in items:
        props = await db.builds.get_build_properties(item["buildid"])
        item["properties"] = select_properties(props, spec.properties)
    return items


def _take_complete(spec: ResultSpec) -> tuple[bool | None, ResultSpec]:
    """``complete=<bool>`` goes to the repository as its own criterion (an indexed
    ``complete_at IS [NOT] NULL``); other forms stay filters."""
    for f in spec.filters:
        if f.field == "complete" and f.op == "eq" and len(f.values) == 1:
            rest = tuple(g for g in spec.filters if g is not f)
            return bool(f.values[0]), dataclasses.replace(spec, filters=rest)
    return None, spec


async def _builds(db: Database, kw: Mapping[str, Any], spec: ResultSpec) -> Collection:
    scope: dict[str, Any] = {
        "buildrequestid": kw.get("buildrequestid"),
        "workerid": kw.get("workerid"),
        "changeid": kw.get("changeid"),
        # builds/<id>/triggered_builds: those of the buildsets the build started
        "parent_buildid": kw.get("parent_buildid"),
    }
    if "builderid" in kw or "buildername" in kw:
        scope["builderid"] = await builder_id(db, kw)
        if scope["builderid"] is None:
            return Collection(items=[], total=0)
    complete, spec = _take_complete(spec)
    scope["complete"] = complete

    async def in_db(options: QueryOptions) -> tuple[list[Item], int]:
        async with db.reading() as conn:  # rows and total from one snapshot
            rows = await db.builds.get_builds(**scope, options=options, conn=conn)
            total = await db.builds.count_builds(**scope, options=options, conn=conn)
        return await _with_properties(db, [shapes.build(b) for b in rows], spec), total

    async def everything() -> list[Item]:
        rows = await db.builds.get_builds(**scope)
        return await _with_properties(db, [shapes.build(b) for b in rows], spec)

    # every build field but ``properties`` is a column, so this runs in SQL
    return await page(spec, _DB_FIELDS, in_db, everything)


async def _triggered_builds(db: Database, kw: Mapping[str, Any], spec: ResultSpec) -> Collection:
    return await _builds(db, {"parent_buildid": kw["buildid"]}, spec)


async def _build(db: Database, kw: Mapping[str, Any]) -> Item | None:
    b = await resolve_build(db, kw)
    return None if b is None else shapes.build(b)


async def _build_properties(db: Database, item: Item, names: Sequence[str]) -> Item:
    # ``property=`` on one build, as on a list of them
    props = await db.builds.get_build_properties(item["buildid"])
    return {**item, "properties": select_properties(props, names)}


ENDPOINTS = (
    Endpoint(pattern=("builds",), rtype=BUILD, collection=_builds),
    Endpoint(pattern=("builders", "n:builderid", "builds"), rtype=BUILD, collection=_builds),
    Endpoint(pattern=("builders", "i:buildername", "builds"), rtype=BUILD, collection=_builds),
    Endpoint(
        pattern=("buildrequests", "n:buildrequestid", "builds"), rtype=BUILD, collection=_builds
    ),
    Endpoint(pattern=("workers", "n:workerid", "builds"), rtype=BUILD, collection=_builds),
    Endpoint(pattern=("changes", "n:changeid", "builds"), rtype=BUILD, collection=_builds),
    Endpoint(
        pattern=("builds", "n:buildid", "triggered_builds"),
        rtype=BUILD,
        collection=_triggered_builds,
    ),
    *(
        Endpoint(pattern=p, rtype=BUILD, item=_build, properties=_build_properties)
        for p in BUILD_PREFIXES
    ),
)
