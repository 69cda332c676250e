"""The ``project`` resource: named groups of builders (``c['projects']``).

``active`` says whether one of the project's builders runs on an active master; as in Buildbot
it is only known (true or false) on a list filtered by it (``projects?active=true``, what the
web UI asks), and null otherwise.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from buildyard.master.data.resources.base import (
    BOOL,
    STR,
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
from buildyard.master.model.projects import Project

PROJECT = ResourceType(
    name="project",
    plural="projects",
    fields={
        "projectid": FieldType.INTEGER,
        "name": FieldType.STRING,
        "slug": FieldType.STRING,
        "active": FieldType.BOOLEAN,
        "description": FieldType.STRING,
        "description_format": FieldType.STRING,
        "description_html": FieldType.STRING,
    },
    json={
        "active": nullable(BOOL),
        "description": nullable(STR),
        "description_format": nullable(STR),
        "description_html": nullable(STR),
    },
)
_DB_FIELDS = {f: f for f in PROJECT.fields if f != "active"}


def _to_api(p: Project, active: bool | None = None) -> Item:
    return {
        "projectid": p.id,
        "name": p.name,
        "slug": p.slug,
        "active": active,
        "description": p.description,
        "description_format": p.description_format,
        "description_html": p.description_html,
    }


def _take_active(spec: ResultSpec) -> tuple[bool | None, ResultSpec]:
    """``active=<bool>`` is the repository's own criterion; other forms stay filters."""
    for f in spec.filters:
        if f.field == "active" and f.op == "eq" and len(f.values) == 1:
            rest = tuple(g for g in spec.filters if g is not f)
            return bool(f.values[0]), dataclasses.replace(spec, filters=rest)
    return None, spec


async def _projects(db: Database, kw: Mapping[str, Any], spec: ResultSpec) -> Collection:
    active, spec = _take_active(spec)

    async def in_db(options: QueryOptions) -> tuple[list[Item], int]:
        async with db.reading() as conn:  # rows and total from one snapshot
            rows = await db.projects.get_projects(active=active, options=options, conn=conn)
            total = await db.projects.count_projects(active=active, options=options, conn=conn)
        return [_to_api(p, active) for p in rows], total

    async def everything() -> list[Item]:
        return [_to_api(p, active) for p in await db.projects.get_projects(active=active)]

    return await page(spec, _DB_FIELDS, in_db, everything)


async def project_id(db: Database, kw: Mapping[str, Any]) -> int | None:
    """The project a path names by ``projectid`` or ``projectname`` (None: unknown name)."""
    if "projectid" in kw:
        return int(kw["projectid"])
    found = await db.projects.get_project_by_name(kw["projectname"])
    return None if found is None else found.id


async def _project(db: Database, kw: Mapping[str, Any]) -> Item | None:
    projectid = await project_id(db, kw)
    found = None if projectid is None else await db.projects.get_project(projectid)
    return None if found is None else _to_api(found)


ENDPOINTS = (
    Endpoint(pattern=("projects",), rtype=PROJECT, collection=_projects),
    Endpoint(pattern=("projects", "n:projectid"), rtype=PROJECT, item=_project),
    Endpoint(pattern=("projects", "i:projectname"), rtype=PROJECT, item=_project),
)
