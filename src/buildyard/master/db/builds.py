"""The builds connector: builds with their numbers, properties and named data.

Build numbers are ``max + 1`` per builder, starting at 1. Several masters may run the same
builder, so two of them can pick the same number: the unique index on (builderid, number)
decides, and the loser takes the next number.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from buildyard.common.clock import Clock
from buildyard.master.db import schema as t
from buildyard.master.db.base import Repository
from buildyard.master.db.errors import DbError
from buildyard.master.db.prepared import Prepared
from buildyard.master.db.query import Op, QueryOptions, apply
from buildyard.master.db.sourcestamps import SourcestampsRepository
from buildyard.master.model.builds import Build, BuildData
from buildyard.master.model.properties import JsonValue, PropertyValue
from buildyard.master.model.results import Results
from buildyard.master.model.sourcestamps import SourceStamp

_b = t.builds
_COLUMNS: dict[str, sa.ColumnElement[Any]] = {
    "buildid": _b.c.id,
    "number": _b.c.number,
    "builderid": _b.c.builderid,
    "buildrequestid": _b.c.buildrequestid,
    "workerid": _b.c.workerid,
    "masterid": _b.c.masterid,
    "started_at": _b.c.started_at,
    "complete_at": _b.c.complete_at,
    "locks_duration_s": _b.c.locks_duration_s,
    "state_string": _b.c.state_string,
    "results": _b.c.results,
    # derived: a build is complete once it has a complete_at
    "complete": sa.case((_b.c.complete_at.is_not(None), 1), else_=0),
}
# The same, but with ``workerid`` unusable as an index key (``workerid + 0``): for SQLite's
# planner, which has no statistics and so looks the running builds (``complete_at IS NULL``,
# not indexed) of many workers up through ``builds_workerid``, one table lookup per build of
# theirs, several times slower than reading the whole table once when those are most builds.
_SCAN_COLUMNS = {**_COLUMNS, "workerid": _b.c.workerid + 0}
# a reading of the table costs about this many lookups through an index, per row
_SCAN_COST = 8
# attempts at a free build number before giving up (each loss means another master won one)
_NUMBER_ATTEMPTS = 50
# candidate builds examined per query when looking for the previous successful build
_PREV_BATCH = 100


def _build(row: sa.Row[Any]) -> Build:
    return Build(
        id=row.id,
        number=row.number,
        builderid=row.builderid,
        buildrequestid=row.buildrequestid,
        workerid=row.workerid,
        masterid=row.masterid,
        started_at=row.started_at,
        complete_at=row.complete_at,
        locks_duration_s=row.locks_duration_s,
        state_string=row.state_string,
        results=None if row.results is None else Results(row.results),
    )


_BUILD = Prepared(sa.select(_b).where(_b.c.id == sa.bindparam("buildid")))
_TOP_NUMBER = Prepared(
    sa.select(sa.func.max(_b.c.number)).where(_b.c.builderid == sa.bindparam("builderid"))
)
_ADD = Prepared(
    _b.insert().values(
        number=sa.bindparam("number"),
        builderid=sa.bindparam("builderid"),
        buildrequestid=sa.bindparam("buildrequestid"),
        workerid=sa.bindparam("workerid"),
        masterid=sa.bindparam("masterid"),
        started_at=sa.bindparam("started_at"),
        complete_at=None,
        locks_duration_s=0,
        state_string=sa.bindparam("state_string"),
    )
)
_bp = t.build_properties
_DELETE_PROPERTY = Prepared(
    _bp.delete().where(_bp.c.buildid == sa.bindparam("buildid"), _bp.c.name == sa.bindparam("name"))
)
_ADD_PROPERTY = Prepared(
    _bp.insert().values(
        buildid=sa.bindparam("buildid"),
        name=sa.bindparam("name"),
        value=sa.bindparam("value"),
        source=sa.bindparam("source"),
    )
)
_FINISH = Prepared(
    _b.update()
    .where(_b.c.id == sa.bindparam("buildid"))
    .values(complete_at=sa.bindparam("complete_at"), results=sa.bindparam("results"))
)
_SET_STATE = Prepared(
    _b.update()
    .where(_b.c.id == sa.bindparam("buildid"))
    .values(state_string=sa.bindparam("state_string"))
)
# the build's end with its final state string: one statement, not two
_FINISH_WITH_STATE = Prepared(
    _b.update()
    .where(_b.c.id == sa.bindparam("buildid"))
    .values(
        complete_at=sa.bindparam("complete_at"),
        results=sa.bindparam("results"),
        state_string=sa.bindparam("state_string"),
    )
)


def _filtered(
    builderid: int | None,
    buildrequestid: int | None,
    workerid: int | None,
    complete: bool | None,
    *,
    changeid: int | None = None,
    parent_buildid: int | None = None,
) -> sa.Select[Any]:
    stmt = sa.select(_b)
    br, bs, bss = t.buildrequests, t.buildsets, t.buildset_sourcestamps
    if changeid is not None:
        # the builds of the buildsets that include the change's source stamp
        of_change = (
            sa.select(br.c.id)
            .join(bss, bss.c.buildsetid == br.c.buildsetid)
            .join(t.changes, t.changes.c.sourcestampid == bss.c.sourcestampid)
            .where(t.changes.c.changeid == changeid)
        )
        stmt = stmt.where(_b.c.buildrequestid.in_(of_change))
    if parent_buildid is not None:
        # the builds of the buildsets the build triggered
        triggered = (
            sa.select(br.c.id)
            .join(bs, bs.c.id == br.c.buildsetid)
            .where(bs.c.parent_buildid == parent_buildid)
        )
        stmt = stmt.where(_b.c.buildrequestid.in_(triggered))
    if builderid is not None:
        stmt = stmt.where(_b.c.builderid == builderid)
    if buildrequestid is not None:
        stmt = stmt.where(_b.c.buildrequestid == buildrequestid)
    if workerid is not None:
        stmt = stmt.where(_b.c.workerid == workerid)
    if complete is not None:
        stmt = stmt.where(_b.c.complete_at.is_not(None) if complete else _b.c.complete_at.is_(None))
    return stmt


def _stamp_key(stamps: Sequence[SourceStamp]) -> set[tuple[str, str | None, str]]:
    return {(ss.repository, ss.branch, ss.codebase) for ss in stamps}


class BuildsRepository(Repository):
    def __init__(self, *, engine: AsyncEngine, clock: Clock) -> None:
        super().__init__(engine=engine, clock=clock)
        self._sourcestamps = SourcestampsRepository(engine=engine, clock=clock)

    async def add_build(
        self,
        *,
        builderid: int,
        buildrequestid: int,
        workerid: int | None,
        masterid: int,
        state_string: str,
        conn: AsyncConnection | None = None,
    ) -> tuple[int, int]:
        """Start a build now; returns (buildid, number)."""
        async with self._write(conn) as c:
            number = await self._next_number(c, builderid)
            for _ in range(_NUMBER_ATTEMPTS):
                try:
                    async with c.begin_nested():
                        added = await _ADD.execute(
                            c,
                            {
                                "number": number,
                                "builderid": builderid,
                                "buildrequestid": buildrequestid,
                                "workerid": workerid,
                                "masterid": masterid,
                                "started_at": self._now(),
                                "state_string": state_string,
                            },
                        )
                        return added.inserted_id(), number
                except sa.exc.IntegrityError as exc:
                    following = await self._next_number(c, builderid)
                    if following <= number:
                        # the number was free, so something else is wrong (a missing builder...)
                        raise DbError(f"cannot add a build to builder {builderid}: {exc}") from exc
                    number = following
            raise DbError(f"no free build number for builder {builderid} after many attempts")

    async def _next_number(self, c: AsyncConnection, builderid: int) -> int:
        found = (await _TOP_NUMBER.execute(c, {"builderid": builderid})).scalar()
        return 1 if found is None else int(found) + 1

    async def get_build(self, buildid: int, *, conn: AsyncConnection | None = None) -> Build | None:
        async with self._read(conn) as c:
            row = (await _BUILD.execute(c, {"buildid": buildid})).first()
        return _build(row) if row else None

    async def get_build_by_number(
        self, builderid: int, number: int, *, conn: AsyncConnection | None = None
    ) -> Build | None:
        stmt = sa.select(_b).where(_b.c.builderid == builderid, _b.c.number == number)
        async with self._read(conn) as c:
            row = (await c.execute(stmt)).first()
        return _build(row) if row else None

    async def _columns(
        self, c: AsyncConnection, complete: bool | None, options: QueryOptions | None
    ) -> Mapping[str, sa.ColumnElement[Any]]:
        """The columns to filter running builds of several workers by on SQLite: through
        ``builds_workerid`` unless those workers' builds (counted in the index alone) are more
        than one in :data:`_SCAN_COST` of all builds, when reading the table is quicker."""
        if complete is not False or options is None or c.dialect.name != "sqlite":
            return _COLUMNS
        workers = [
            f
            for f in options.filters
            if f.field == "workerid" and f.op in (Op.EQ, Op.IN) and len(f.values) > 1
        ]
        if not workers:
            return _COLUMNS
        ids = [v for v in workers[0].values if v is not None]
        theirs = sa.select(sa.func.count()).where(_b.c.workerid.in_(ids))
        every = sa.select(sa.func.max(_b.c.id))
        n_theirs = (await c.execute(theirs)).scalar_one()
        n_every = (await c.execute(every)).scalar() or 0
        return _SCAN_COLUMNS if n_theirs * _SCAN_COST > n_every else _COLUMNS

    async def get_builds(
        self,
        *,
        builderid: int | None = None,
        buildrequestid: int | None = None,
        workerid: int | None = None,
        complete: bool | None = None,
        changeid: int | None = None,
        parent_buildid: int | None = None,
        options: QueryOptions | None = None,
        conn: AsyncConnection | None = None,
    ) -> list[Build]:
        """Builds matching every given criterion, then ``options`` (by id when unordered).

        ``changeid``: the builds of buildsets that include the change's source stamp;
        ``parent_buildid``: the builds of buildsets that build triggered.
        """
        filtered = _filtered(
            builderid,
            buildrequestid,
            workerid,
            complete,
            changeid=changeid,
            parent_buildid=parent_buildid,
        )
        async with self._read(conn) as c:
            columns = await self._columns(c, complete, options)
            stmt = apply(filtered, options, columns, default_order=[_b.c.id])
            return [_build(r) for r in await c.execute(stmt)]

    async def count_builds(
        self,
        *,
        builderid: int | None = None,
        buildrequestid: int | None = None,
        workerid: int | None = None,
        complete: bool | None = None,
        changeid: int | None = None,
        parent_buildid: int | None = None,
        options: QueryOptions | None = None,
        conn: AsyncConnection | None = None,
    ) -> int:
        """How many builds get_builds would return without paging."""
        stmt = _filtered(
            builderid,
            buildrequestid,
            workerid,
            complete,
            changeid=changeid,
            parent_buildid=parent_buildid,
        )
        async with self._read(conn) as c:
            return await self._count(stmt, options, await self._columns(c, complete, options), c)

    async def get_prev_successful_build(
        self,
        builderid: int,
        number: int,
        sourcestamps: Sequence[SourceStamp],
        *,
        conn: AsyncConnection | None = None,
    ) -> Build | None:
        """The latest-completed SUCCESS build before ``number`` on this builder whose stamps
        cover the same (repository, branch, codebase) set as ``sourcestamps``."""
        wanted = _stamp_key(sourcestamps)
        stmt = (
            sa.select(_b)
            .where(
                _b.c.builderid == builderid,
                _b.c.number < number,
                _b.c.results == int(Results.SUCCESS),
            )
            .order_by(_b.c.complete_at.desc(), _b.c.id.desc())
            .limit(_PREV_BATCH)
        )
        async with self._read(conn) as c:
            offset = 0
            while candidates := [_build(r) for r in await c.execute(stmt.offset(offset))]:
                stamps = await self._sourcestamps.get_sourcestamps_for_builds(
                    [b.id for b in candidates], conn=c
                )
                for build in candidates:
                    if _stamp_key(stamps.get(build.id, [])) == wanted:
                        return build
                offset += _PREV_BATCH
        return None

    async def set_build_state_string(
        self, buildid: int, state_string: str, *, conn: AsyncConnection | None = None
    ) -> None:
        async with self._write(conn) as c:
            await _SET_STATE.execute(c, {"buildid": buildid, "state_string": state_string})

    async def add_build_locks_duration(
        self, buildid: int, duration_s: int, *, conn: AsyncConnection | None = None
    ) -> None:
        """Add to the time the build spent waiting for locks."""
        async with self._write(conn) as c:
            await c.execute(
                _b.update()
                .where(_b.c.id == buildid)
                .values(locks_duration_s=_b.c.locks_duration_s + duration_s)
            )

    async def finish_build(
        self,
        buildid: int,
        results: Results,
        *,
        state_string: str | None = None,
        conn: AsyncConnection | None = None,
    ) -> int:
        """Record the build's end (now) and result; with ``state_string``, its final state
        string in the same statement. Returns the time recorded."""
        params: dict[str, Any] = {
            "buildid": buildid,
            "complete_at": self._now(),
            "results": int(results),
        }
        async with self._write(conn) as c:
            if state_string is None:
                await _FINISH.execute(c, params)
            else:
                params["state_string"] = state_string
                await _FINISH_WITH_STATE.execute(c, params)
        return int(params["complete_at"])

    async def set_build_property(
        self,
        buildid: int,
        name: str,
        value: JsonValue,
        source: str,
        *,
        conn: AsyncConnection | None = None,
    ) -> None:
        """Create or replace one property (there is no unique index: update, else insert).

        Only the master running the build sets its properties, so writers do not race.
        """
        bp = t.build_properties
        where = sa.and_(bp.c.buildid == buildid, bp.c.name == name)
        stored = json.dumps(value)
        async with self._write(conn) as c:
            updated = await c.execute(bp.update().where(where).values(value=stored, source=source))
            if updated.rowcount == 0:
                await c.execute(
                    bp.insert().values(buildid=buildid, name=name, value=stored, source=source)
                )

    async def set_build_properties(
        self,
        buildid: int,
        properties: Mapping[str, tuple[JsonValue, str]],
        *,
        new: Collection[str] = (),
        conn: AsyncConnection | None = None,
    ) -> None:
        """Create or replace several properties at once: one delete and one insert.

        ``new``: names the caller knows the build has no row for (the build's runner, which
        stores every property of its build, knows which it stored): those are only inserted,
        the others replaced."""
        if not properties:
            return
        rows = [
            {"buildid": buildid, "name": name, "value": json.dumps(value), "source": source}
            for name, (value, source) in properties.items()
        ]
        async with self._write(conn) as c:
            await _DELETE_PROPERTY.execute_many(
                c, [{"buildid": buildid, "name": name} for name in properties if name not in new]
            )
            await _ADD_PROPERTY.execute_many(c, rows)

    async def get_build_properties(
        self, buildid: int, *, conn: AsyncConnection | None = None
    ) -> dict[str, PropertyValue]:
        """name -> (value, source)."""
        bp = t.build_properties
        stmt = sa.select(bp.c.name, bp.c.value, bp.c.source).where(bp.c.buildid == buildid)
        async with self._read(conn) as c:
            return {r.name: (json.loads(r.value), r.source) for r in await c.execute(stmt)}

    async def add_build_data(
        self,
        buildid: int,
        name: str,
        value: bytes,
        source: str,
        *,
        conn: AsyncConnection | None = None,
    ) -> None:
        """Create or replace the named blob of a build."""
        bd = t.build_data
        where = sa.and_(bd.c.buildid == buildid, bd.c.name == name)
        values = {"value": value, "length": len(value), "source": source}
        async with self._write(conn) as c:
            updated = await c.execute(bd.update().where(where).values(**values))
            if updated.rowcount:
                return
            try:
                async with c.begin_nested():
                    await c.execute(bd.insert().values(buildid=buildid, name=name, **values))
            except sa.exc.IntegrityError as exc:
                # a concurrent writer inserted it first (the unique index decided): overwrite
                again = await c.execute(bd.update().where(where).values(**values))
                if not again.rowcount:
                    raise DbError(f"cannot add data {name!r} to build {buildid}: {exc}") from exc

    async def delete_old_build_data(
        self, older_than: int, *, batch: int = 1000, conn: AsyncConnection | None = None
    ) -> int:
        """Delete the data of builds that completed before ``older_than``; how many rows
        went. ``batch`` rows per transaction (unless ``conn`` is given)."""
        bd = t.build_data
        # the data kept, in id order, each with its build by primary key (builds have no
        # index on complete_at: choosing the old builds first read every build ever run, for
        # each batch); each batch goes on after the last row of the one before
        pick = (
            sa.select(bd.c.id)
            .join(_b, _b.c.id == bd.c.buildid)
            .where(_b.c.complete_at < older_than)
            .order_by(bd.c.id)
            .limit(batch)
        )
        total = 0
        after = 0
        while True:
            async with self._write(conn) as c:
                ids = list((await c.execute(pick.where(bd.c.id > after))).scalars())
                if ids:
                    after = ids[-1]
                    await c.execute(bd.delete().where(bd.c.id.in_(ids)))
            total += len(ids)
            if len(ids) < batch:
                return total

    async def get_build_data(
        self,
        buildid: int,
        name: str,
        *,
        with_value: bool = True,
        conn: AsyncConnection | None = None,
    ) -> BuildData | None:
        """The named blob of a build; without ``with_value`` its value is not read (None)."""
        bd = t.build_data
        columns = [bd.c.buildid, bd.c.name, bd.c.length, bd.c.source]
        stmt = sa.select(*columns, *([bd.c.value] if with_value else [])).where(
            bd.c.buildid == buildid, bd.c.name == name
        )
        async with self._read(conn) as c:
            row = (await c.execute(stmt)).first()
        if row is None:
            return None
        return BuildData(
            buildid=row.buildid,
            name=row.name,
            length=row.length,
            source=row.source,
            value=bytes(row.value) if with_value else None,
        )

    async def get_all_build_data(
        self, buildid: int, *, conn: AsyncConnection | None = None
    ) -> list[BuildData]:
        """Every blob of the build by name, without the values (``value`` is None)."""
        bd = t.build_data
        stmt = (
            sa.select(bd.c.buildid, bd.c.name, bd.c.length, bd.c.source)
            .where(bd.c.buildid == buildid)
            .order_by(bd.c.name)
        )
        async with self._read(conn) as c:
            return [
                BuildData(
                    buildid=r.buildid, name=r.name, length=r.length, source=r.source, value=None
                )
                for r in await c.execute(stmt)
            ]
