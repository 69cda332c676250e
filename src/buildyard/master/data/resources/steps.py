"""The ``step`` resource: a build's steps, by id, or by build with their number or name.

A build has few steps, so a build's step list is filtered, ordered and paged in Python.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from buildyard.master.data import shapes
from buildyard.master.data.resources.base import (
    INT,
    STR,
    Collection,
    Endpoint,
    Item,
    ResourceType,
    list_of,
    nullable,
    obj,
)
from buildyard.master.data.resources.builds import BUILD_PREFIXES, resolve_build
from buildyard.master.data.resultspec import FieldType, ResultSpec
from buildyard.master.db.connector import Database
from buildyard.master.model.steps import Step

STEP = ResourceType(
    name="step",
    plural="steps",
    fields={
        "stepid": FieldType.INTEGER,
        "number": FieldType.INTEGER,
        "name": FieldType.IDENTIFIER,
        "buildid": FieldType.INTEGER,
        "started_at": FieldType.DATETIME,
        "locks_acquired_at": FieldType.DATETIME,
        "complete": FieldType.BOOLEAN,
        "complete_at": FieldType.DATETIME,
        "results": FieldType.INTEGER,
        "state_string": FieldType.STRING,
        "urls": FieldType.OTHER,
        "hidden": FieldType.BOOLEAN,
    },
    json={
        "started_at": nullable(INT),
        "locks_acquired_at": nullable(INT),
        "complete_at": nullable(INT),
        "results": nullable(INT),
        "urls": list_of(obj(name=STR, url=STR)),
    },
)

# the ways to name one step; kw: stepid, or a build's with step_number or step_name
STEP_PREFIXES: tuple[tuple[str, ...], ...] = (
    ("steps", "n:stepid"),
    *((*p, "steps", s) for p in BUILD_PREFIXES for s in ("n:step_number", "i:step_name")),
)


async def resolve_step(db: Database, kw: Mapping[str, Any]) -> Step | None:
    """The step a path names (see :data:`STEP_PREFIXES`), or None."""
    if "stepid" in kw:
        return await db.steps.get_step(kw["stepid"])
    build = await resolve_build(db, kw)
    if build is None:
        return None
    if "step_number" in kw:
        return await db.steps.get_step(buildid=build.id, number=kw["step_number"])
    return await db.steps.get_step(buildid=build.id, name=kw["step_name"])


async def _steps(db: Database, kw: Mapping[str, Any], spec: ResultSpec) -> Collection:
    build = await resolve_build(db, kw)
    if build is None:
        return Collection(items=[], total=0)
    items, total = spec.apply([shapes.step(s) for s in await db.steps.get_steps(build.id)])
    return Collection(items=items, total=total)


async def _step(db: Database, kw: Mapping[str, Any]) -> Item | None:
    s = await resolve_step(db, kw)
    return None if s is None else shapes.step(s)


ENDPOINTS = (
    *(Endpoint(pattern=(*p, "steps"), rtype=STEP, collection=_steps) for p in BUILD_PREFIXES),
    *(Endpoint(pattern=p, rtype=STEP, item=_step) for p in STEP_PREFIXES),
)
