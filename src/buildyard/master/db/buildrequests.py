"""The build requests connector: reading requests, and claiming them across masters.

Claims are rows of ``buildrequest_claims``, unique on ``brid``: whichever master inserts first
owns the request (docs/database.md, "Build request claims"). A claim of several requests is
one transaction, so it takes all of them or none. Completing a request does not complete its
buildset; the data layer does that when
:meth:`BuildRequestsRepository.incomplete_requests_of_buildset` comes back empty.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from buildyard.master.db import schema as t
from buildyard.master.db.base import Repository
from buildyard.master.db.buildsets import results_or_none
from buildyard.master.db.errors import AlreadyClaimed, NotClaimed
from buildyard.master.db.prepared import Prepared
from buildyard.master.db.query import QueryOptions, apply
from buildyard.master.model.buildrequests import BuildRequest
from buildyard.master.model.results import Results

_br, _cl = t.buildrequests, t.buildrequest_claims
_COLUMNS: dict[str, sa.ColumnElement[Any]] = {
    "buildrequestid": _br.c.id,
    "buildsetid": _br.c.buildsetid,
    "builderid": _br.c.builderid,
    "buildername": t.builders.c.name,
    "priority": _br.c.priority,
    "complete": _br.c.complete,
    "results": _br.c.results,
    "submitted_at": _br.c.submitted_at,
    "complete_at": _br.c.complete_at,
    "waited_for": _br.c.waited_for,
    "claimed": sa.case((_cl.c.brid.is_not(None), 1), else_=0),
    "claimed_at": _cl.c.claimed_at,
    "claimed_by_masterid": _cl.c.masterid,
}
# the fields that are columns of the requests themselves (no claim, no builder name)
_PLAIN_FIELDS = frozenset(
    {
        "buildrequestid",
        "buildsetid",
        "builderid",
        "priority",
        "complete",
        "results",
        "submitted_at",
        "complete_at",
        "waited_for",
    }
)
# bound on IN (...) lists and on the rows of one statement
_BATCH = 100


def _batches(ids: Sequence[int]) -> Iterable[tuple[int, ...]]:
    it = iter(ids)
    while batch := tuple(itertools.islice(it, _BATCH)):
        yield batch


def _select() -> sa.Select[Any]:
    return sa.select(
        _br, _cl.c.masterid, _cl.c.claimed_at, t.builders.c.name.label("buildername")
    ).select_from(
        _br.outerjoin(_cl, _cl.c.brid == _br.c.id).join(
            t.builders, t.builders.c.id == _br.c.builderid
        )
    )


_REQUEST = Prepared(_select().where(_br.c.id == sa.bindparam("brid")))


def _request(row: sa.Row[Any]) -> BuildRequest:
    return BuildRequest(
        id=row.id,
        buildsetid=row.buildsetid,
        builderid=row.builderid,
        buildername=row.buildername,
        priority=row.priority,
        submitted_at=row.submitted_at,
        complete=bool(row.complete),
        complete_at=row.complete_at,
        results=results_or_none(row.results),
        waited_for=bool(row.waited_for),
        claimed=row.claimed_at is not None,
        claimed_at=row.claimed_at,
        claimed_by_masterid=row.masterid,
    )


def _filtered(
    *,
    builderid: int | None,
    complete: bool | None,
    claimed: bool | int | None,
    bsid: int | None,
    branch: str | None,
    repository: str | None,
) -> sa.Select[Any]:
    stmt = _select()
    done = sa.func.coalesce(_br.c.complete, 0)
    if claimed is True:
        stmt = stmt.where(_cl.c.brid.is_not(None))
    elif claimed is False:
        stmt = stmt.where(_cl.c.brid.is_(None), done == 0)
    elif claimed is not None:
        stmt = stmt.where(_cl.c.masterid == claimed)
    if builderid is not None:
        stmt = stmt.where(_br.c.builderid == builderid)
    if complete is not None:
        stmt = stmt.where(done != 0 if complete else done == 0)
    if bsid is not None:
        stmt = stmt.where(_br.c.buildsetid == bsid)
    if branch is not None or repository is not None:
        ss, bss = t.sourcestamps, t.buildset_sourcestamps
        stamps = (
            sa.select(bss.c.buildsetid)
            .join(ss, ss.c.id == bss.c.sourcestampid)
            .where(bss.c.buildsetid == _br.c.buildsetid)
        )
        if branch is not None:
            stamps = stamps.where(ss.c.branch == branch)
        if repository is not None:
            stamps = stamps.where(ss.c.repository == repository)
        stmt = stmt.where(stamps.exists())
    return stmt


_CLAIMABLE = Prepared(
    _filtered(
        builderid=None, complete=None, claimed=False, bsid=None, branch=None, repository=None
    ).order_by(_br.c.id)
)
_OF_BUILDSET = Prepared(
    _filtered(builderid=None, complete=None, claimed=None, bsid=None, branch=None, repository=None)
    .where(_br.c.buildsetid == sa.bindparam("bsid"))
    .order_by(_br.c.id)
)


_CLAIM = Prepared(
    _cl.insert().values(
        brid=sa.bindparam("brid"),
        masterid=sa.bindparam("masterid"),
        claimed_at=sa.bindparam("claimed_at"),
    )
)
_INCOMPLETE = sa.func.coalesce(_br.c.complete, 0) != 1
_COMPLETE_ONE = Prepared(
    _br.update()
    .where(_br.c.id == sa.bindparam("brid"), _INCOMPLETE)
    .values(complete=1, results=sa.bindparam("results"), complete_at=sa.bindparam("complete_at"))
)
_INCOMPLETE_OF_BUILDSET = Prepared(
    sa.select(_br.c.id)
    .where(_br.c.buildsetid == sa.bindparam("bsid"), sa.func.coalesce(_br.c.complete, 0) == 0)
    .order_by(_br.c.id)
)


class BuildRequestsRepository(Repository):
    async def get_buildrequest(
        self, brid: int, *, conn: AsyncConnection | None = None
    ) -> BuildRequest | None:
        async with self._read(conn) as c:
            row = (await _REQUEST.execute(c, {"brid": brid})).first()
        return _request(row) if row else None

    async def get_buildrequests(
        self,
        *,
        builderid: int | None = None,
        complete: bool | None = None,
        claimed: bool | int | None = None,
        bsid: int | None = None,
        branch: str | None = None,
        repository: str | None = None,
        options: QueryOptions | None = None,
        conn: AsyncConnection | None = None,
    ) -> list[BuildRequest]:
        """Requests matching every given criterion, then ``options`` (by id when unordered).

        ``claimed``: True = claimed by anyone; False = unclaimed *and* incomplete (what a
        master may still claim); an int = claimed by that master id. ``branch`` and
        ``repository`` match any stamp of the request's buildset.
        """
        if all(x is None for x in (builderid, complete, branch, repository, options)):
            # the distributor's (claimable requests, each pass) and the pipeline's (a
            # buildset's requests, as it completes): prepared
            prepared, given = None, {}
            if claimed is False and bsid is None:
                prepared = _CLAIMABLE
            elif claimed is None and bsid is not None:
                prepared, given = _OF_BUILDSET, {"bsid": bsid}
            if prepared is not None:
                async with self._read(conn) as c:
                    return [_request(r) for r in (await prepared.execute(c, given)).all()]
        stmt = apply(
            _filtered(
                builderid=builderid,
                complete=complete,
                claimed=claimed,
                bsid=bsid,
                branch=branch,
                repository=repository,
            ),
            options,
            _COLUMNS,
            default_order=[_br.c.id],
        )
        async with self._read(conn) as c:
            return [_request(r) for r in await c.execute(stmt)]

    async def count_buildrequests(
        self,
        *,
        builderid: int | None = None,
        complete: bool | None = None,
        claimed: bool | int | None = None,
        bsid: int | None = None,
        options: QueryOptions | None = None,
        conn: AsyncConnection | None = None,
    ) -> int:
        """How many requests get_buildrequests would return without paging.

        Counted on the requests alone when neither ``claimed`` nor a filter of ``options``
        needs the claims: each request has its one builder and at most one claim, so the joins
        of :func:`_select` neither add nor drop a row, and the count (a REST collection's
        ``meta.total``, asked at every page) does not walk them for 100,000 requests."""
        filters = options.filters if options else ()
        if claimed is None and all(f.field in _PLAIN_FIELDS for f in filters):
            plain = sa.select(_br.c.id)
            if builderid is not None:
                plain = plain.where(_br.c.builderid == builderid)
            if complete is not None:
                done = sa.func.coalesce(_br.c.complete, 0)
                plain = plain.where(done != 0 if complete else done == 0)
            if bsid is not None:
                plain = plain.where(_br.c.buildsetid == bsid)
            return await self._count(plain, options, _COLUMNS, conn)
        stmt = _filtered(
            builderid=builderid,
            complete=complete,
            claimed=claimed,
            bsid=bsid,
            branch=None,
            repository=None,
        )
        return await self._count(stmt, options, _COLUMNS, conn)

    async def claim_buildrequests(
        self,
        brids: Iterable[int],
        masterid: int,
        *,
        claimed_at: int | None = None,
        conn: AsyncConnection | None = None,
    ) -> None:
        """Claim every request for ``masterid``, or none: :class:`AlreadyClaimed` if any is
        claimed already (or does not exist), and then nothing was claimed."""
        ids = list(dict.fromkeys(brids))
        if not ids:
            return
        when = self._now() if claimed_at is None else claimed_at
        try:
            # the savepoint undoes a partial claim even inside a caller's transaction
            async with self._write(conn) as c, c.begin_nested():
                await _CLAIM.execute_many(
                    c, [{"brid": brid, "masterid": masterid, "claimed_at": when} for brid in ids]
                )
        except sa.exc.IntegrityError as exc:
            raise AlreadyClaimed(
                f"master {masterid} could not claim build requests {ids}: some are already "
                "claimed or do not exist"
            ) from exc

    async def unclaim_buildrequests(
        self, brids: Iterable[int], masterid: int, *, conn: AsyncConnection | None = None
    ) -> list[int]:
        """Release the claims ``masterid`` holds on these requests (others' are left alone);
        returns the ids actually released."""
        ids = list(dict.fromkeys(brids))
        released: list[int] = []
        async with self._write(conn) as c:
            for batch in _batches(ids):
                mine = sa.and_(_cl.c.brid.in_(batch), _cl.c.masterid == masterid)
                released += (await c.execute(sa.select(_cl.c.brid).where(mine))).scalars()
                await c.execute(_cl.delete().where(mine))
        return sorted(released)

    async def complete_buildrequests(
        self,
        brids: Iterable[int],
        results: Results,
        *,
        complete_at: int | None = None,
        conn: AsyncConnection | None = None,
    ) -> None:
        """Complete every request or none: :class:`NotClaimed` if one is already complete or
        unknown. RETRY is not a final result (unclaim the request instead): ValueError."""
        if results == Results.RETRY:
            raise ValueError("a build request cannot be completed with RETRY")
        ids = list(dict.fromkeys(brids))
        if not ids:
            return
        when = self._now() if complete_at is None else complete_at
        values = {"results": int(results), "complete_at": when}
        # one request (a build's own, the common case) needs no savepoint to be all or nothing
        atomic = contextlib.nullcontext() if len(ids) == 1 else None
        async with self._write(conn) as c, atomic or c.begin_nested():
            for brid in ids:
                done = await _COMPLETE_ONE.execute(c, {"brid": brid, **values})
                if done.rowcount != 1:
                    # leaving the savepoint with this error undoes the ones before it
                    raise NotClaimed(
                        f"tried to complete build requests {ids}, but {brid} was not incomplete"
                    )

    async def set_buildrequests_priority(
        self, brids: Iterable[int], priority: int, *, conn: AsyncConnection | None = None
    ) -> None:
        """Change the priority of incomplete requests; :class:`NotClaimed` if one is complete
        or unknown (and then none changed)."""
        ids = list(dict.fromkeys(brids))
        async with self._write(conn) as c, c.begin_nested():
            for batch in _batches(ids):
                done = await c.execute(
                    _br.update()
                    .where(_br.c.id.in_(batch), sa.func.coalesce(_br.c.complete, 0) != 1)
                    .values(priority=priority)
                )
                if done.rowcount != len(batch):
                    raise NotClaimed(f"build requests {list(batch)} are not all incomplete")

    async def incomplete_requests_of_buildset(
        self, bsid: int, *, conn: AsyncConnection | None = None
    ) -> list[int]:
        """Ids of the buildset's requests not complete yet (empty: the buildset is done)."""
        async with self._read(conn) as c:
            return (await _INCOMPLETE_OF_BUILDSET.execute(c, {"bsid": bsid})).scalars()
