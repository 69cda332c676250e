"""The projects connector: projects by name, their descriptive info, and which are active.

A project is created on first sight of its name (from the configuration) with a slug derived from
the name; the configuration may later set another slug and a description. A project is active
while one of its builders is configured on an active master.
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from buildyard.master.db import schema as t
from buildyard.master.db.arbitration import find_or_create_id
from buildyard.master.db.base import Repository
from buildyard.master.db.hashes import name_hash
from buildyard.master.db.query import QueryOptions, apply
from buildyard.master.model.projects import Project

SLUG_LENGTH = 50

_p = t.projects

_COLUMNS: dict[str, sa.ColumnElement[Any]] = {
    "projectid": _p.c.id,
    "name": _p.c.name,
    "slug": _p.c.slug,
    "description": _p.c.description,
    "description_format": _p.c.description_format,
    "description_html": _p.c.description_html,
}

# Buildbot's identifiers: a letter, "_", "-" or any non-ASCII character first, then also digits
_IDENTIFIER = re.compile("^[a-zA-Z\u00a0-\U0010ffff_-][a-zA-Z0-9\u00a0-\U0010ffff_-]*$")
_BAD_FIRST = re.compile("^[^a-zA-Z_-]")
_BAD_NEXT = re.compile("[^a-zA-Z0-9_-]")


def slug_for(name: str) -> str:
    """``name`` as an identifier of at most 50 characters (Buildbot's ``forceIdentifier``).

    A valid identifier is kept; otherwise it is cut to length and every character outside
    ASCII letters, digits, ``_`` and ``-`` becomes ``_`` (a leading digit too).
    """
    if name and len(name) <= SLUG_LENGTH and _IDENTIFIER.match(name):
        return name
    return _BAD_NEXT.sub("_", _BAD_FIRST.sub("_", name[:SLUG_LENGTH]))


def _active_builder(projectid: sa.ColumnElement[int]) -> sa.Exists:
    b, bm, m = t.builders, t.builder_masters, t.masters
    return sa.exists(
        sa.select(b.c.id)
        .join(bm, bm.c.builderid == b.c.id)
        .join(m, m.c.id == bm.c.masterid)
        .where(b.c.projectid == projectid, m.c.active != 0)
    )


def _filtered(active: bool | None) -> sa.Select[Any]:
    stmt = sa.select(_p)
    if active is True:
        stmt = stmt.where(_active_builder(_p.c.id))
    elif active is False:
        stmt = stmt.where(~_active_builder(_p.c.id))
    return stmt


def _project(row: sa.Row[Any]) -> Project:
    return Project(
        id=row.id,
        name=row.name,
        slug=row.slug,
        description=row.description,
        description_format=row.description_format,
        description_html=row.description_html,
    )


class ProjectsRepository(Repository):
    async def find_project_id(self, name: str, *, conn: AsyncConnection | None = None) -> int:
        """The id of the project called ``name``, created (slug from the name) if it is new."""
        h = name_hash(name)
        async with self._write(conn) as c:
            return await find_or_create_id(
                c,
                _p,
                where=_p.c.name_hash == h,
                values={"name": name, "name_hash": h, "slug": slug_for(name)},
            )

    async def get_project(
        self, projectid: int, *, conn: AsyncConnection | None = None
    ) -> Project | None:
        async with self._read(conn) as c:
            row = (await c.execute(sa.select(_p).where(_p.c.id == projectid))).first()
        return _project(row) if row else None

    async def get_project_by_name(
        self, name: str, *, conn: AsyncConnection | None = None
    ) -> Project | None:
        """The project called ``name`` (never created here)."""
        stmt = sa.select(_p).where(_p.c.name_hash == name_hash(name), _p.c.name == name)
        async with self._read(conn) as c:
            row = (await c.execute(stmt)).first()
        return _project(row) if row else None

    async def get_projects(
        self,
        *,
        active: bool | None = None,
        options: QueryOptions | None = None,
        conn: AsyncConnection | None = None,
    ) -> list[Project]:
        """Projects, only those with (``active``) or without a builder on an active master.

        Ordered by name (as Buildbot lists them) unless ``options`` say otherwise.
        """
        stmt = apply(_filtered(active), options, _COLUMNS, default_order=[_p.c.name, _p.c.id])
        async with self._read(conn) as c:
            return [_project(r) for r in await c.execute(stmt)]

    async def count_projects(
        self,
        *,
        active: bool | None = None,
        options: QueryOptions | None = None,
        conn: AsyncConnection | None = None,
    ) -> int:
        """How many projects get_projects would return without paging."""
        return await self._count(_filtered(active), options, _COLUMNS, conn)

    async def update_project_info(
        self,
        projectid: int,
        *,
        slug: str,
        description: str | None,
        description_format: str | None,
        description_html: str | None,
        conn: AsyncConnection | None = None,
    ) -> None:
        """Replace the project's slug and description."""
        async with self._write(conn) as c:
            await c.execute(
                _p.update()
                .where(_p.c.id == projectid)
                .values(
                    slug=slug,
                    description=description,
                    description_format=description_format,
                    description_html=description_html,
                )
            )
