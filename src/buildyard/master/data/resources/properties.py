"""The ``property`` resource: the properties of a build or buildset as one map,
``{name: [value, source]}`` (Buildbot's shape); and ``_property``, the same as a list of
``{name, source, value}`` with the value as JSON text (``.../property_list``), which can be
filtered, ordered and paged like any collection."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from buildyard.master.data.resources.base import (
    PROPERTIES,
    Collection,
    Endpoint,
    Item,
    ResourceType,
)
from buildyard.master.data.resources.builds import BUILD_PREFIXES, resolve_build, select_properties
from buildyard.master.data.resultspec import FieldType, ResultSpec
from buildyard.master.db.connector import Database
from buildyard.master.model.properties import PropertyValue

PROPERTY = ResourceType(name="property", plural="properties", fields={}, entity=PROPERTIES)
PROPERTY_ENTRY = ResourceType(
    name="_property",
    plural="_properties",
    fields={"name": FieldType.STRING, "source": FieldType.STRING, "value": FieldType.STRING},
)


async def _build_properties(db: Database, kw: Mapping[str, Any]) -> Item | None:
    build = await resolve_build(db, kw)
    if build is None:
        return None
    return select_properties(await db.builds.get_build_properties(build.id), ("*",))


async def _buildset_properties(db: Database, kw: Mapping[str, Any]) -> Item | None:
    if await db.buildsets.get_buildset(kw["bsid"]) is None:
        return None
    return select_properties(await db.buildsets.get_buildset_properties(kw["bsid"]), ("*",))


async def _property_list(db: Database, kw: Mapping[str, Any], spec: ResultSpec) -> Collection:
    props: Mapping[str, PropertyValue] = {}
    if "buildid" in kw:
        props = await db.builds.get_build_properties(kw["buildid"])
    elif "bsid" in kw:
        props = await db.buildsets.get_buildset_properties(kw["bsid"])
    else:
        change = await db.changes.get_change(kw["changeid"])
        props = {} if change is None else change.properties
    entries = [
        {"name": name, "source": source, "value": json.dumps(value)}
        for name, (value, source) in props.items()
    ]
    items, total = spec.apply(entries)
    return Collection(items=items, total=total)


ENDPOINTS = (
    *(
        Endpoint(pattern=(*p, "properties"), rtype=PROPERTY, item=_build_properties)
        for p in BUILD_PREFIXES
    ),
    Endpoint(
        pattern=("buildsets", "n:bsid", "properties"), rtype=PROPERTY, item=_buildset_properties
    ),
    *(
        Endpoint(pattern=p, rtype=PROPERTY_ENTRY, collection=_property_list)
        for p in (
            ("builds", "n:buildid", "property_list"),
            ("buildsets", "n:bsid", "properties_list"),
            ("changes", "n:changeid", "properties_list"),
        )
    ),
)
