"""The ``property`` resource: the properties of a build or buildset as one map,
``{name: [value, source]}`` (Buildbot's shape)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from buildyard.master.data.resources.base import PROPERTIES, Endpoint, Item, ResourceType
from buildyard.master.data.resources.builds import BUILD_PREFIXES, resolve_build, select_properties
from buildyard.master.db.connector import Database

PROPERTY = ResourceType(name="property", plural="properties", fields={}, entity=PROPERTIES)


async def _build_properties(db: Database, kw: Mapping[str, Any]) -> Item | None:
    build = await resolve_build(db, kw)
    if build is None:
        return None
    return select_properties(await db.builds.get_build_properties(build.id), ("*",))


async def _buildset_properties(db: Database, kw: Mapping[str, Any]) -> Item | None:
    if await db.buildsets.get_buildset(kw["bsid"]) is None:
        return None
    return select_properties(await db.buildsets.get_buildset_properties(kw["bsid"]), ("*",))


ENDPOINTS = (
    *(
        Endpoint(pattern=(*p, "properties"), rtype=PROPERTY, item=_build_properties)
        for p in BUILD_PREFIXES
    ),
    Endpoint(
        pattern=("buildsets", "n:bsid", "properties"), rtype=PROPERTY, item=_buildset_properties
    ),
)
