"""The ``build_data`` resource: named blobs a build's steps store (``setBuildData``).

Lists and items carry a blob's name, length and source, never its value (``value`` is null, as
in Buildbot); ``.../data/<name>/value`` downloads the bytes themselves. A build has few blobs, so
its list is filtered, ordered and paged in Python.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from buildyard.master.data.resources.base import (
    ANY,
    Collection,
    Endpoint,
    Item,
    RawData,
    ResourceType,
    nullable,
)
from buildyard.master.data.resources.builds import BUILD_PREFIXES, resolve_build
from buildyard.master.data.resultspec import FieldType, ResultSpec
from buildyard.master.db.connector import Database
from buildyard.master.model.builds import BuildData

BUILD_DATA = ResourceType(
    name="build_data",
    plural="build_data",
    fields={
        "buildid": FieldType.INTEGER,
        "name": FieldType.STRING,
        "length": FieldType.INTEGER,
        "value": FieldType.OTHER,
        "source": FieldType.STRING,
    },
    json={"value": nullable(ANY)},
)


def _to_api(bd: BuildData) -> Item:
    return {
        "buildid": bd.buildid,
        "name": bd.name,
        "value": None,
        "length": bd.length,
        "source": bd.source,
    }


async def _all(db: Database, kw: Mapping[str, Any], spec: ResultSpec) -> Collection:
    build = await resolve_build(db, kw)
    if build is None:
        return Collection(items=[], total=0)
    items, total = spec.apply([_to_api(bd) for bd in await db.builds.get_all_build_data(build.id)])
    return Collection(items=items, total=total)


async def _one(db: Database, kw: Mapping[str, Any]) -> Item | None:
    build = await resolve_build(db, kw)
    if build is None:
        return None
    bd = await db.builds.get_build_data(build.id, kw["name"], with_value=False)
    return None if bd is None else _to_api(bd)


async def _value(db: Database, kw: Mapping[str, Any]) -> RawData | None:
    build = await resolve_build(db, kw)
    if build is None:
        return None
    bd = await db.builds.get_build_data(build.id, kw["name"])
    if bd is None or bd.value is None:
        return None
    return RawData(body=bd.value, content_type="application/octet-stream", filename=bd.name)


ENDPOINTS = tuple(
    ep
    for p in BUILD_PREFIXES
    for ep in (
        Endpoint(pattern=(*p, "data"), rtype=BUILD_DATA, collection=_all),
        Endpoint(pattern=(*p, "data", "i:name"), rtype=BUILD_DATA, item=_one),
        Endpoint(pattern=(*p, "data", "i:name", "value"), rtype=BUILD_DATA, raw=_value),
    )
)
