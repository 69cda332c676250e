"""The source stamps connector: find-or-create stamps by value, read them with their patch.

A stamp is identified by ``ss_hash`` (docs/database.md, "Conventions"): the sha1 of branch,
revision, repository, project, codebase and patch id. Equal values share one row; a patch is
never shared, so a stamp with a patch is always new.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from buildyard.master.db import schema as t
from buildyard.master.db.arbitration import find_or_create_id
from buildyard.master.db.base import Repository, inserted_id
from buildyard.master.db.hashes import multi_hash
from buildyard.master.db.prepared import Prepared
from buildyard.master.db.query import QueryOptions, apply
from buildyard.master.model.sourcestamps import Patch, SourceStamp

_ss = t.sourcestamps
_ID_BY_HASH = Prepared(sa.select(_ss.c.id).where(_ss.c.ss_hash == sa.bindparam("ss_hash")))
_COLUMNS: dict[str, sa.ColumnElement[Any]] = {
    "ssid": _ss.c.id,
    "branch": _ss.c.branch,
    "revision": _ss.c.revision,
    "repository": _ss.c.repository,
    "codebase": _ss.c.codebase,
    "project": _ss.c.project,
    "created_at": _ss.c.created_at,
}


def select_sourcestamps() -> sa.Select[Any]:
    """Stamps joined with their (optional) patch, for :func:`sourcestamp_from_row`."""
    p = t.patches
    return sa.select(
        _ss,
        p.c.patchlevel,
        p.c.patch_base64,
        p.c.patch_author,
        p.c.patch_comment,
        p.c.subdir,
    ).select_from(_ss.outerjoin(p, _ss.c.patchid == p.c.id))


def sourcestamp_from_row(row: sa.Row[Any]) -> SourceStamp:
    patch = None
    if row.patchid is not None and row.patch_base64 is not None:
        patch = Patch(
            id=row.patchid,
            body=base64.b64decode(row.patch_base64),
            level=row.patchlevel,
            author=row.patch_author,
            comment=row.patch_comment,
            subdir=row.subdir,
        )
    return SourceStamp(
        id=row.id,
        branch=row.branch,
        revision=row.revision,
        repository=row.repository,
        codebase=row.codebase,
        project=row.project,
        created_at=row.created_at,
        patch=patch,
    )


def _of_buildset(stmt: sa.Select[Any], buildsetid: int | None) -> sa.Select[Any]:
    if buildsetid is None:
        return stmt
    bss = t.buildset_sourcestamps
    return stmt.where(
        _ss.c.id.in_(sa.select(bss.c.sourcestampid).where(bss.c.buildsetid == buildsetid))
    )


_OF_BUILDSET = Prepared(
    select_sourcestamps()
    .where(
        _ss.c.id.in_(
            sa.select(t.buildset_sourcestamps.c.sourcestampid).where(
                t.buildset_sourcestamps.c.buildsetid == sa.bindparam("buildsetid")
            )
        )
    )
    .order_by(_ss.c.id)
)
# get_sourcestamps_of_buildsets for one buildset (the distributor's usual case, once per
# request): the same rows, prepared
_OF_ONE_BUILDSET_JOINED = Prepared(
    select_sourcestamps()
    .add_columns(t.buildset_sourcestamps.c.buildsetid.label("for_buildsetid"))
    .join(t.buildset_sourcestamps, t.buildset_sourcestamps.c.sourcestampid == _ss.c.id)
    .where(t.buildset_sourcestamps.c.buildsetid == sa.bindparam("buildsetid"))
    .order_by(_ss.c.id)
)


class SourcestampsRepository(Repository):
    async def find_sourcestamp_id(
        self,
        *,
        branch: str | None,
        revision: str | None,
        repository: str,
        project: str,
        codebase: str,
        patch_body: bytes | str | None = None,
        patch_level: int | None = None,
        patch_author: str | None = None,
        patch_comment: str | None = None,
        patch_subdir: str | None = None,
        conn: AsyncConnection | None = None,
    ) -> int:
        """The id of the stamp with these values, added if new (an empty patch is no patch)."""
        if patch_body and patch_level is None:
            raise ValueError("a patch needs its patch_level")
        async with self._write(conn) as c:
            patchid = None
            if patch_body and patch_level is not None:
                body = patch_body.encode("utf-8") if isinstance(patch_body, str) else patch_body
                result = await c.execute(
                    t.patches.insert().values(
                        patchlevel=patch_level,
                        patch_base64=base64.b64encode(body).decode("ascii"),
                        patch_author=patch_author or "",
                        patch_comment=patch_comment or "",
                        subdir=patch_subdir,
                    )
                )
                patchid = inserted_id(result)
            ss_hash = multi_hash(branch, revision, repository, project, codebase, patchid)
            # the common case, a stamp seen before (every force of the same branch): prepared
            found = (await _ID_BY_HASH.execute(c, {"ss_hash": ss_hash})).scalar()
            if found is not None:
                return int(found)
            # a concurrent writer may add the same stamp: the unique index on ss_hash decides
            return await find_or_create_id(
                c,
                _ss,
                where=_ss.c.ss_hash == ss_hash,
                values={
                    "ss_hash": ss_hash,
                    "branch": branch,
                    "revision": revision,
                    "repository": repository,
                    "codebase": codebase,
                    "project": project,
                    "patchid": patchid,
                    "created_at": self._now(),
                },
            )

    async def get_sourcestamp(
        self, ssid: int, *, conn: AsyncConnection | None = None
    ) -> SourceStamp | None:
        async with self._read(conn) as c:
            row = (await c.execute(select_sourcestamps().where(_ss.c.id == ssid))).first()
        return sourcestamp_from_row(row) if row else None

    async def get_sourcestamps(
        self,
        buildsetid: int | None = None,
        options: QueryOptions | None = None,
        *,
        conn: AsyncConnection | None = None,
    ) -> list[SourceStamp]:
        """Every stamp, or those of one buildset; filtered, sorted and paged by ``options``."""
        if buildsetid is not None and options is None:  # the pipeline's: prepared
            async with self._read(conn) as c:
                found = await _OF_BUILDSET.execute(c, {"buildsetid": buildsetid})
            return [sourcestamp_from_row(r) for r in found.all()]
        stmt = apply(
            _of_buildset(select_sourcestamps(), buildsetid),
            options,
            _COLUMNS,
            default_order=[_ss.c.id],
        )
        async with self._read(conn) as c:
            return [sourcestamp_from_row(r) for r in await c.execute(stmt)]

    async def count_sourcestamps(
        self,
        buildsetid: int | None = None,
        options: QueryOptions | None = None,
        *,
        conn: AsyncConnection | None = None,
    ) -> int:
        """How many stamps get_sourcestamps would return without paging."""
        stmt = _of_buildset(sa.select(_ss.c.id), buildsetid)
        return await self._count(stmt, options, _COLUMNS, conn)

    async def get_sourcestamps_of_buildsets(
        self, buildsetids: Iterable[int], *, conn: AsyncConnection | None = None
    ) -> dict[int, list[SourceStamp]]:
        """buildsetid -> its stamps (by stamp id), for many buildsets, a few hundred per
        query (the distributor's collapsing reads a deep queue's stamps this way)."""
        ids = sorted(set(buildsetids))
        out: dict[int, list[SourceStamp]] = {}
        bss = t.buildset_sourcestamps
        if len(ids) == 1:
            async with self._read(conn) as c:
                found = await _OF_ONE_BUILDSET_JOINED.execute(c, {"buildsetid": ids[0]})
                for row in found.all():
                    out.setdefault(row.for_buildsetid, []).append(sourcestamp_from_row(row))
            return out
        async with self._read(conn) as c:
            for start in range(0, len(ids), 500):
                batch = ids[start : start + 500]
                stmt = (
                    select_sourcestamps()
                    .add_columns(bss.c.buildsetid.label("for_buildsetid"))
                    .join(bss, bss.c.sourcestampid == _ss.c.id)
                    .where(bss.c.buildsetid.in_(batch))
                    .order_by(bss.c.buildsetid, _ss.c.id)
                )
                for row in await c.execute(stmt):
                    out.setdefault(row.for_buildsetid, []).append(sourcestamp_from_row(row))
        return out

    async def get_sourcestamps_for_build(
        self, buildid: int, *, conn: AsyncConnection | None = None
    ) -> list[SourceStamp]:
        """The stamps of the buildset the build's request belongs to."""
        by_build = await self.get_sourcestamps_for_builds([buildid], conn=conn)
        return by_build.get(buildid, [])

    async def get_sourcestamps_for_builds(
        self, buildids: Iterable[int], *, conn: AsyncConnection | None = None
    ) -> dict[int, list[SourceStamp]]:
        """buildid -> its stamps (by stamp id), for many builds in one query."""
        ids = list(buildids)
        if not ids:
            return {}
        b, br, bss = t.builds, t.buildrequests, t.buildset_sourcestamps
        stmt = (
            select_sourcestamps()
            .add_columns(b.c.id.label("for_buildid"))
            .join(bss, bss.c.sourcestampid == _ss.c.id)
            .join(br, br.c.buildsetid == bss.c.buildsetid)
            .join(b, b.c.buildrequestid == br.c.id)
            .where(b.c.id.in_(ids))
            .order_by(b.c.id, _ss.c.id)
        )
        out: dict[int, list[SourceStamp]] = {}
        async with self._read(conn) as c:
            for row in await c.execute(stmt):
                out.setdefault(row.for_buildid, []).append(sourcestamp_from_row(row))
        return out
