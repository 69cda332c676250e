"""The buildsets connector: a buildset, its stamps and properties, and its build requests.

``add_buildset`` writes everything in one transaction, so no master can see (and claim) the
requests of a half-written buildset. Incomplete buildsets and requests hold ``results = -1``,
as in Buildbot's database; the models show that as ``None``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from buildyard.common.clock import Clock
from buildyard.master.db import schema as t
from buildyard.master.db.base import Repository
from buildyard.master.db.errors import BuildsetAlreadyComplete
from buildyard.master.db.prepared import Prepared
from buildyard.master.db.query import QueryOptions, apply
from buildyard.master.db.sourcestamps import SourcestampsRepository
from buildyard.master.model.buildsets import Buildset, BuildsetIds
from buildyard.master.model.properties import PropertyValue
from buildyard.master.model.results import Results
from buildyard.master.model.sourcestamps import SourceStampSpec

# what "no results yet" looks like in buildsets.results and buildrequests.results
INCOMPLETE_RESULTS = -1
# bound on IN (...) lists
_BATCH = 500

_bs = t.buildsets
_COLUMNS: dict[str, sa.ColumnElement[Any]] = {
    "bsid": _bs.c.id,
    "external_idstring": _bs.c.external_idstring,
    "reason": _bs.c.reason,
    "submitted_at": _bs.c.submitted_at,
    "complete": _bs.c.complete,
    "complete_at": _bs.c.complete_at,
    "results": _bs.c.results,
    "parent_buildid": _bs.c.parent_buildid,
    "parent_relationship": _bs.c.parent_relationship,
    "rebuilt_buildid": _bs.c.rebuilt_buildid,
}


def results_or_none(value: int | None) -> Results | None:
    """A stored results column as a model value: NULL and -1 both mean "not yet"."""
    return None if value is None or value == INCOMPLETE_RESULTS else Results(value)


def _filtered(complete: bool | None) -> sa.Select[Any]:
    stmt = sa.select(_bs)
    if complete is not None:
        done = sa.func.coalesce(_bs.c.complete, 0)
        stmt = stmt.where(done != 0 if complete else done == 0)
    return stmt


_BUILDSET = Prepared(sa.select(_bs).where(_bs.c.id == sa.bindparam("bsid")))
_ADD = Prepared(
    _bs.insert().values(
        external_idstring=sa.bindparam("external_idstring"),
        reason=sa.bindparam("reason"),
        submitted_at=sa.bindparam("submitted_at"),
        complete=0,
        complete_at=None,
        results=INCOMPLETE_RESULTS,
        parent_buildid=sa.bindparam("parent_buildid"),
        parent_relationship=sa.bindparam("parent_relationship"),
        rebuilt_buildid=sa.bindparam("rebuilt_buildid"),
    )
)
_COMPLETE = Prepared(
    _bs.update()
    .where(_bs.c.id == sa.bindparam("bsid"), sa.func.coalesce(_bs.c.complete, 0) != 1)
    .values(complete=1, results=sa.bindparam("results"), complete_at=sa.bindparam("complete_at"))
)
_bsp = t.buildset_properties
_PROPERTIES = Prepared(
    sa.select(_bsp.c.property_name, _bsp.c.property_value).where(
        _bsp.c.buildsetid == sa.bindparam("bsid")
    )
)
_ADD_PROPERTY = Prepared(
    t.buildset_properties.insert().values(
        buildsetid=sa.bindparam("buildsetid"),
        property_name=sa.bindparam("property_name"),
        property_value=sa.bindparam("property_value"),
    )
)
_ADD_STAMP = Prepared(
    t.buildset_sourcestamps.insert().values(
        buildsetid=sa.bindparam("buildsetid"), sourcestampid=sa.bindparam("sourcestampid")
    )
)
_ADD_REQUEST = Prepared(
    t.buildrequests.insert().values(
        buildsetid=sa.bindparam("buildsetid"),
        builderid=sa.bindparam("builderid"),
        priority=sa.bindparam("priority"),
        complete=0,
        results=INCOMPLETE_RESULTS,
        submitted_at=sa.bindparam("submitted_at"),
        complete_at=None,
        waited_for=sa.bindparam("waited_for"),
    )
)
_STAMPS_OF = Prepared(
    sa.select(t.buildset_sourcestamps.c.sourcestampid)
    .where(t.buildset_sourcestamps.c.buildsetid == sa.bindparam("bsid"))
    .order_by(t.buildset_sourcestamps.c.id)
)


def _buildset(r: Any, sourcestamps: tuple[int, ...]) -> Buildset:
    return Buildset(
        id=r.id,
        external_idstring=r.external_idstring,
        reason=r.reason,
        submitted_at=r.submitted_at,
        complete=bool(r.complete),
        complete_at=r.complete_at,
        results=results_or_none(r.results),
        parent_buildid=r.parent_buildid,
        parent_relationship=r.parent_relationship,
        rebuilt_buildid=r.rebuilt_buildid,
        sourcestamps=sourcestamps,
    )


class BuildsetsRepository(Repository):
    def __init__(self, *, engine: AsyncEngine, clock: Clock) -> None:
        super().__init__(engine=engine, clock=clock)
        self._sourcestamps = SourcestampsRepository(engine=engine, clock=clock)

    async def add_buildset(
        self,
        *,
        sourcestamps: Sequence[int | SourceStampSpec],
        reason: str | None,
        properties: Mapping[str, PropertyValue],
        builderids: Sequence[int],
        waited_for: bool,
        external_idstring: str | None = None,
        submitted_at: int | None = None,
        parent_buildid: int | None = None,
        parent_relationship: str | None = None,
        rebuilt_buildid: int | None = None,
        priority: int = 0,
        conn: AsyncConnection | None = None,
    ) -> BuildsetIds:
        """Add a buildset and one request per builder, in one transaction.

        ``sourcestamps`` are stamp ids or stamp values (found or created). Returns the buildset
        id and ``{builderid: buildrequestid}``.
        """
        async with self._write(conn) as c:
            ssids: list[int] = []
            for ss in sourcestamps:
                ssid = (
                    ss
                    if isinstance(ss, int)
                    else await self._sourcestamps.find_sourcestamp_id(**ss, conn=c)
                )
                if ssid not in ssids:
                    ssids.append(ssid)
            when = self._now() if submitted_at is None else submitted_at
            added = await _ADD.execute(
                c,
                {
                    "external_idstring": external_idstring,
                    "reason": reason,
                    "submitted_at": when,
                    "parent_buildid": parent_buildid,
                    "parent_relationship": parent_relationship,
                    "rebuilt_buildid": rebuilt_buildid,
                },
            )
            bsid = added.inserted_id()
            await _ADD_PROPERTY.execute_many(
                c,
                [
                    {
                        "buildsetid": bsid,
                        "property_name": name,
                        "property_value": json.dumps([value, source]),
                    }
                    for name, (value, source) in properties.items()
                ],
            )
            await _ADD_STAMP.execute_many(
                c, [{"buildsetid": bsid, "sourcestampid": ssid} for ssid in ssids]
            )
            brids: dict[int, int] = {}
            for builderid in builderids:
                request = await _ADD_REQUEST.execute(
                    c,
                    {
                        "buildsetid": bsid,
                        "builderid": builderid,
                        "priority": priority,
                        "submitted_at": when,
                        "waited_for": 1 if waited_for else 0,
                    },
                )
                brids[builderid] = request.inserted_id()
        return BuildsetIds(bsid=bsid, brids=brids)

    async def complete_buildset(
        self,
        bsid: int,
        results: Results,
        *,
        complete_at: int | None = None,
        conn: AsyncConnection | None = None,
    ) -> None:
        """Mark the buildset complete; :class:`BuildsetAlreadyComplete` if it already was.

        Two requests finishing at once may both try: exactly one succeeds.
        """
        async with self._write(conn) as c:
            done = await _COMPLETE.execute(
                c,
                {
                    "bsid": bsid,
                    "results": int(results),
                    "complete_at": self._now() if complete_at is None else complete_at,
                },
            )
            if done.rowcount != 1:
                raise BuildsetAlreadyComplete(f"buildset {bsid} is already complete or unknown")

    async def get_buildset(
        self, bsid: int, *, conn: AsyncConnection | None = None
    ) -> Buildset | None:
        async with self._read(conn) as c:
            row = (await _BUILDSET.execute(c, {"bsid": bsid})).first()
            if row is None:
                return None
            links = await _STAMPS_OF.execute(c, {"bsid": bsid})
        return _buildset(row, tuple(links.scalars()))

    async def get_buildsets(
        self,
        complete: bool | None = None,
        options: QueryOptions | None = None,
        *,
        conn: AsyncConnection | None = None,
    ) -> list[Buildset]:
        """Buildsets (all, complete or incomplete), then ``options`` (by id when unordered)."""
        stmt = apply(_filtered(complete), options, _COLUMNS, default_order=[_bs.c.id])
        async with self._read(conn) as c:
            return await self._load(c, stmt)

    async def count_buildsets(
        self,
        complete: bool | None = None,
        options: QueryOptions | None = None,
        *,
        conn: AsyncConnection | None = None,
    ) -> int:
        """How many buildsets get_buildsets would return without paging."""
        return await self._count(_filtered(complete), options, _COLUMNS, conn)

    async def get_buildset_properties(
        self, bsid: int, *, conn: AsyncConnection | None = None
    ) -> dict[str, PropertyValue]:
        """name -> (value, source); unreadable rows are skipped, as in Buildbot."""
        props: dict[str, PropertyValue] = {}
        async with self._read(conn) as c:
            for row in (await _PROPERTIES.execute(c, {"bsid": bsid})).all():
                try:
                    value, source = json.loads(row.property_value)
                except (ValueError, TypeError):
                    continue
                props[row.property_name] = (value, str(source))
        return props

    async def _load(self, c: AsyncConnection, stmt: sa.Select[Any]) -> list[Buildset]:
        rows = list(await c.execute(stmt))
        stamps: dict[int, list[int]] = {}
        bss = t.buildset_sourcestamps
        for start in range(0, len(rows), _BATCH):
            links = await c.execute(
                sa.select(bss.c.buildsetid, bss.c.sourcestampid)
                .where(bss.c.buildsetid.in_([r.id for r in rows[start : start + _BATCH]]))
                .order_by(bss.c.id)
            )
            for link in links:
                stamps.setdefault(link.buildsetid, []).append(link.sourcestampid)
        return [_buildset(r, tuple(stamps.get(r.id, ()))) for r in rows]
