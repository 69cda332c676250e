"""The codebases connectors: a project's codebases, their branches and their commits.

As in Buildbot these are three connectors (``db.codebases``, ``db.codebase_branches``,
``db.codebase_commits``). A codebase is found or created by its name within its project; a branch
is created or moved by :meth:`CodebaseBranchesRepository.update_branch`; commits are only added.
Each commit names its first parent, and :meth:`CodebaseCommitsRepository.
get_first_common_commit_with_ranges` walks those links (a recursive query per side) to find
where two histories meet.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from buildyard.master.db import schema as t
from buildyard.master.db.arbitration import find_or_create_id, is_duplicate
from buildyard.master.db.base import Repository, inserted_id
from buildyard.master.db.errors import DbError
from buildyard.master.db.hashes import name_hash
from buildyard.master.db.projects import slug_for
from buildyard.master.db.query import QueryOptions, apply
from buildyard.master.model.codebases import (
    Codebase,
    CodebaseBranch,
    CodebaseCommit,
    CommonCommitInfo,
)

# how many parents each side of a common-ancestor search walks at most (Buildbot's depth)
COMMON_PARENT_DEPTH = 100

_cb, _br, _co = t.codebases, t.codebase_branches, t.codebase_commits

_CODEBASE_COLUMNS: dict[str, sa.ColumnElement[Any]] = {
    "codebaseid": _cb.c.id,
    "projectid": _cb.c.projectid,
    "name": _cb.c.name,
    "slug": _cb.c.slug,
}
_BRANCH_COLUMNS: dict[str, sa.ColumnElement[Any]] = {
    "branchid": _br.c.id,
    "codebaseid": _br.c.codebaseid,
    "name": _br.c.name,
    "commitid": _br.c.commitid,
    "last_timestamp": _br.c.last_timestamp,
}
_COMMIT_COLUMNS: dict[str, sa.ColumnElement[Any]] = {
    "commitid": _co.c.id,
    "codebaseid": _co.c.codebaseid,
    "author": _co.c.author,
    "committer": _co.c.committer,
    "comments": _co.c.comments,
    "when_timestamp": _co.c.when_timestamp,
    "revision": _co.c.revision,
    "parent_commitid": _co.c.parent_commitid,
}


def _check_length(column: sa.Column[str], value: str | None) -> None:
    length = getattr(column.type, "length", None)
    if value is not None and length is not None and len(value) > length:
        raise ValueError(f"{column.name} {value!r} is longer than {length} characters")


def _codebase(row: sa.Row[Any]) -> Codebase:
    return Codebase(id=row.id, projectid=row.projectid, name=row.name, slug=row.slug)


def _branch(row: sa.Row[Any]) -> CodebaseBranch:
    return CodebaseBranch(
        id=row.id,
        codebaseid=row.codebaseid,
        name=row.name,
        commitid=row.commitid,
        last_timestamp=row.last_timestamp,
    )


def _commit(row: sa.Row[Any]) -> CodebaseCommit:
    return CodebaseCommit(
        id=row.id,
        codebaseid=row.codebaseid,
        author=row.author,
        committer=row.committer,
        comments=row.comments,
        when_timestamp=row.when_timestamp,
        revision=row.revision,
        parent_commitid=row.parent_commitid,
    )


def _codebases_of(projectid: int | None) -> sa.Select[Any]:
    stmt = sa.select(_cb)
    return stmt if projectid is None else stmt.where(_cb.c.projectid == projectid)


class CodebasesRepository(Repository):
    async def find_codebase_id(
        self,
        *,
        projectid: int,
        name: str,
        auto_create: bool = True,
        conn: AsyncConnection | None = None,
    ) -> int | None:
        """The id of the project's codebase ``name``: created (slug from the name) if it is
        new and ``auto_create``, else None."""
        h = name_hash(name)
        where = sa.and_(_cb.c.projectid == projectid, _cb.c.name_hash == h)
        if not auto_create:
            async with self._read(conn) as c:
                found = (await c.execute(sa.select(_cb.c.id).where(where))).scalar()
            return None if found is None else int(found)
        async with self._write(conn) as c:
            return await find_or_create_id(
                c,
                _cb,
                where=where,
                values={
                    "projectid": projectid,
                    "name": name,
                    "name_hash": h,
                    "slug": slug_for(name),
                },
            )

    async def get_codebase(
        self, codebaseid: int, *, conn: AsyncConnection | None = None
    ) -> Codebase | None:
        async with self._read(conn) as c:
            row = (await c.execute(sa.select(_cb).where(_cb.c.id == codebaseid))).first()
        return _codebase(row) if row else None

    async def get_codebase_by_name(
        self, projectid: int, name: str, *, conn: AsyncConnection | None = None
    ) -> Codebase | None:
        """The project's codebase called exactly ``name`` (never created here)."""
        stmt = sa.select(_cb).where(
            _cb.c.projectid == projectid, _cb.c.name_hash == name_hash(name), _cb.c.name == name
        )
        async with self._read(conn) as c:
            row = (await c.execute(stmt)).first()
        return _codebase(row) if row else None

    async def get_codebases(
        self,
        projectid: int | None = None,
        *,
        options: QueryOptions | None = None,
        conn: AsyncConnection | None = None,
    ) -> list[Codebase]:
        """Codebases (of one project if given), by id unless ``options`` order them."""
        stmt = apply(_codebases_of(projectid), options, _CODEBASE_COLUMNS, default_order=[_cb.c.id])
        async with self._read(conn) as c:
            return [_codebase(r) for r in await c.execute(stmt)]

    async def count_codebases(
        self,
        projectid: int | None = None,
        *,
        options: QueryOptions | None = None,
        conn: AsyncConnection | None = None,
    ) -> int:
        return await self._count(_codebases_of(projectid), options, _CODEBASE_COLUMNS, conn)

    async def update_codebase_info(
        self, *, codebaseid: int, projectid: int, slug: str, conn: AsyncConnection | None = None
    ) -> None:
        """Move the codebase to ``projectid`` and give it ``slug``; DbError if that project
        has a codebase of the same name (or is unknown)."""
        _check_length(_cb.c.slug, slug)
        stmt = _cb.update().where(_cb.c.id == codebaseid).values(projectid=projectid, slug=slug)
        try:
            async with self._write(conn) as c, c.begin_nested():
                await c.execute(stmt)
        except sa.exc.IntegrityError as exc:
            raise DbError(f"codebases: row refused: {exc.orig}") from exc


class CodebaseBranchesRepository(Repository):
    async def get_branch(
        self, branchid: int, *, conn: AsyncConnection | None = None
    ) -> CodebaseBranch | None:
        async with self._read(conn) as c:
            row = (await c.execute(sa.select(_br).where(_br.c.id == branchid))).first()
        return _branch(row) if row else None

    async def get_branch_by_name(
        self, *, codebaseid: int, name: str, conn: AsyncConnection | None = None
    ) -> CodebaseBranch | None:
        stmt = sa.select(_br).where(
            _br.c.codebaseid == codebaseid, _br.c.name_hash == name_hash(name), _br.c.name == name
        )
        async with self._read(conn) as c:
            row = (await c.execute(stmt)).first()
        return _branch(row) if row else None

    async def get_branches(
        self,
        codebaseid: int,
        *,
        options: QueryOptions | None = None,
        conn: AsyncConnection | None = None,
    ) -> list[CodebaseBranch]:
        """The codebase's branches, by id unless ``options`` order them."""
        stmt = sa.select(_br).where(_br.c.codebaseid == codebaseid)
        stmt = apply(stmt, options, _BRANCH_COLUMNS, default_order=[_br.c.id])
        async with self._read(conn) as c:
            return [_branch(r) for r in await c.execute(stmt)]

    async def count_branches(
        self,
        codebaseid: int,
        *,
        options: QueryOptions | None = None,
        conn: AsyncConnection | None = None,
    ) -> int:
        stmt = sa.select(_br).where(_br.c.codebaseid == codebaseid)
        return await self._count(stmt, options, _BRANCH_COLUMNS, conn)

    async def update_branch(
        self,
        *,
        codebaseid: int,
        name: str,
        commitid: int | None = None,
        last_timestamp: int,
        conn: AsyncConnection | None = None,
    ) -> int:
        """Create the codebase's branch ``name`` or move it to ``commitid``; its id.

        Concurrent writers of the same branch: the unique index arbitrates, the later write wins.
        """
        _check_length(_br.c.name, name)
        h = name_hash(name)
        values = {"commitid": commitid, "name": name, "last_timestamp": last_timestamp}
        where = sa.and_(_br.c.codebaseid == codebaseid, _br.c.name_hash == h)
        async with self._write(conn) as c:
            found = (await c.execute(sa.select(_br.c.id).where(where))).scalar()
            if found is None:
                try:
                    async with c.begin_nested():
                        result = await c.execute(
                            _br.insert().values(codebaseid=codebaseid, name_hash=h, **values)
                        )
                        return inserted_id(result)
                except sa.exc.IntegrityError as exc:
                    if not is_duplicate(exc):
                        raise DbError(f"codebase_branches: row refused: {exc.orig}") from exc
                found = (await c.execute(sa.select(_br.c.id).where(where))).scalar_one()
            try:
                async with c.begin_nested():
                    await c.execute(_br.update().where(_br.c.id == found).values(**values))
            except sa.exc.IntegrityError as exc:  # an unknown commit
                raise DbError(f"codebase_branches: row refused: {exc.orig}") from exc
            return int(found)


class CodebaseCommitsRepository(Repository):
    async def get_commit(
        self, commitid: int, *, conn: AsyncConnection | None = None
    ) -> CodebaseCommit | None:
        async with self._read(conn) as c:
            row = (await c.execute(sa.select(_co).where(_co.c.id == commitid))).first()
        return _commit(row) if row else None

    async def get_commit_by_revision(
        self, *, codebaseid: int, revision: str, conn: AsyncConnection | None = None
    ) -> CodebaseCommit | None:
        stmt = sa.select(_co).where(_co.c.codebaseid == codebaseid, _co.c.revision == revision)
        async with self._read(conn) as c:
            row = (await c.execute(stmt)).first()
        return _commit(row) if row else None

    async def get_commits_by_id(
        self, commitids: Sequence[int], *, conn: AsyncConnection | None = None
    ) -> list[CodebaseCommit | None]:
        """The commits of ``commitids`` in that order, None for an unknown id."""
        async with self._read(conn) as c:
            rows = await c.execute(sa.select(_co).where(_co.c.id.in_(list(commitids))))
            found = {r.id: _commit(r) for r in rows}
        return [found.get(i) for i in commitids]

    async def get_commits(
        self,
        *,
        codebaseid: int,
        options: QueryOptions | None = None,
        conn: AsyncConnection | None = None,
    ) -> list[CodebaseCommit]:
        """The codebase's commits, by id unless ``options`` order them."""
        stmt = sa.select(_co).where(_co.c.codebaseid == codebaseid)
        stmt = apply(stmt, options, _COMMIT_COLUMNS, default_order=[_co.c.id])
        async with self._read(conn) as c:
            return [_commit(r) for r in await c.execute(stmt)]

    async def count_commits(
        self,
        *,
        codebaseid: int,
        options: QueryOptions | None = None,
        conn: AsyncConnection | None = None,
    ) -> int:
        stmt = sa.select(_co).where(_co.c.codebaseid == codebaseid)
        return await self._count(stmt, options, _COMMIT_COLUMNS, conn)

    async def add_commit(
        self,
        *,
        codebaseid: int,
        author: str,
        committer: str | None = None,
        comments: str,
        when_timestamp: int,
        revision: str,
        parent_commitid: int | None = None,
        conn: AsyncConnection | None = None,
    ) -> int:
        """A new commit; its id. ValueError if a value is too long for its column; DbError if
        the codebase has that revision already or the parent (or codebase) is unknown."""
        _check_length(_co.c.author, author)
        _check_length(_co.c.committer, committer)
        _check_length(_co.c.revision, revision)
        stmt = _co.insert().values(
            codebaseid=codebaseid,
            author=author,
            committer=committer,
            comments=comments,
            when_timestamp=when_timestamp,
            revision=revision,
            parent_commitid=parent_commitid,
        )
        try:
            async with self._write(conn) as c, c.begin_nested():
                return inserted_id(await c.execute(stmt))
        except sa.exc.IntegrityError as exc:
            raise DbError(f"codebase_commits: row refused: {exc.orig}") from exc

    async def _ancestry(self, c: AsyncConnection, commitid: int, depth: int) -> list[int]:
        """``commitid`` then up to ``depth`` of its parents, nearest first; empty if unknown."""
        start = (
            sa.select(_co.c.id, _co.c.parent_commitid, sa.literal(0).label("depth"))
            .where(_co.c.id == commitid)
            .cte("ancestry", recursive=True)
        )
        parent = sa.select(_co.c.id, _co.c.parent_commitid, (start.c.depth + 1).label("depth"))
        parent = parent.join_from(start, _co, _co.c.id == start.c.parent_commitid).where(
            start.c.depth < depth
        )
        ancestry = start.union_all(parent)
        rows = await c.execute(sa.select(ancestry.c.id).order_by(ancestry.c.depth))
        return [int(r.id) for r in rows]

    async def get_first_common_commit_with_ranges(
        self,
        first_commitid: int,
        last_commitid: int,
        depth: int = COMMON_PARENT_DEPTH,
        *,
        conn: AsyncConnection | None = None,
    ) -> CommonCommitInfo | None:
        """The nearest commit both commits descend from (a commit descends from itself),
        walking at most ``depth`` parents from each; None if there is none within that (or a
        commit is unknown).

        ``to1`` and ``to2`` run from the common commit to each of the two, both ends included.
        (Buildbot 4.3.0 means the same; when the second commit is an ancestor of the first, its
        ``to1`` also starts with the common commit's own parent, which is left out here.)
        """
        async with self._read(conn) as c:
            known1 = await self._ancestry(c, first_commitid, depth)
            if first_commitid == last_commitid:
                ids = (first_commitid,)
                return CommonCommitInfo(common=first_commitid, to1=ids, to2=ids) if known1 else None
            known2 = await self._ancestry(c, last_commitid, depth)
        position1 = {commitid: i for i, commitid in enumerate(known1)}
        for i, commitid in enumerate(known2):
            if commitid in position1:
                return CommonCommitInfo(
                    common=commitid,
                    to1=tuple(reversed(known1[: position1[commitid] + 1])),
                    to2=tuple(reversed(known2[: i + 1])),
                )
        return None
