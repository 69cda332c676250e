"""The changes connector: what change sources report, with files, properties and lineage.

Each change gets a source stamp (found or created from its branch/revision/repository/
project/codebase) and, as its parent, the latest change already recorded for the same branch,
repository, codebase and project (as Buildbot does; one parent at most).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from buildyard.common.clock import Clock
from buildyard.master.db import schema as t
from buildyard.master.db.base import Repository, inserted_id
from buildyard.master.db.builds import BuildsRepository
from buildyard.master.db.query import QueryOptions, apply
from buildyard.master.db.sourcestamps import SourcestampsRepository
from buildyard.master.model.changes import Change
from buildyard.master.model.properties import JsonValue, PropertyValue

_ch = t.changes
_COLUMNS: dict[str, sa.ColumnElement[Any]] = {
    "changeid": _ch.c.changeid,
    "author": _ch.c.author,
    "committer": _ch.c.committer,
    "comments": _ch.c.comments,
    "branch": _ch.c.branch,
    "revision": _ch.c.revision,
    "revlink": _ch.c.revlink,
    "when_timestamp": _ch.c.when_timestamp,
    "category": _ch.c.category,
    "repository": _ch.c.repository,
    "codebase": _ch.c.codebase,
    "project": _ch.c.project,
    "sourcestampid": _ch.c.sourcestampid,
}
# bound on IN (...) lists
_BATCH = 100


def _batches(ids: Sequence[int]) -> Iterable[tuple[int, ...]]:
    it = iter(ids)
    while batch := tuple(itertools.islice(it, _BATCH)):
        yield batch


def _property(stored: str) -> PropertyValue:
    """Stored ``[value, source]``; tolerate the bare values some old databases hold."""
    value: JsonValue = json.loads(stored)
    if isinstance(value, list) and len(value) == 2 and isinstance(value[1], str):
        return value[0], value[1]
    return value, "Change"


class ChangesRepository(Repository):
    def __init__(self, *, engine: AsyncEngine, clock: Clock) -> None:
        super().__init__(engine=engine, clock=clock)
        self._sourcestamps = SourcestampsRepository(engine=engine, clock=clock)
        self._builds = BuildsRepository(engine=engine, clock=clock)

    async def add_change(
        self,
        *,
        author: str,
        committer: str | None = None,
        files: Sequence[str] = (),
        comments: str = "",
        revision: str | None = None,
        when_timestamp: int | None = None,
        branch: str | None = None,
        category: str | None = None,
        revlink: str | None = "",
        properties: Mapping[str, PropertyValue] | None = None,
        repository: str = "",
        codebase: str = "",
        project: str = "",
        uid: int | None = None,
        conn: AsyncConnection | None = None,
    ) -> int:
        """Record a change with its stamp, parent, files, properties and user; its id.

        ``when_timestamp`` defaults to now. All rows go in one transaction.
        """
        async with self._write(conn) as c:
            ssid = await self._sourcestamps.find_sourcestamp_id(
                branch=branch,
                revision=revision,
                repository=repository,
                project=project,
                codebase=codebase,
                conn=c,
            )
            parent = (
                await c.execute(
                    sa.select(sa.func.max(_ch.c.changeid)).where(
                        _ch.c.branch.is_(None) if branch is None else _ch.c.branch == branch,
                        _ch.c.repository == repository,
                        _ch.c.codebase == codebase,
                        _ch.c.project == project,
                    )
                )
            ).scalar()
            result = await c.execute(
                _ch.insert().values(
                    author=author,
                    committer=committer,
                    comments=comments,
                    branch=branch,
                    revision=revision,
                    revlink=revlink,
                    when_timestamp=self._now() if when_timestamp is None else when_timestamp,
                    category=category,
                    repository=repository,
                    codebase=codebase,
                    project=project,
                    sourcestampid=ssid,
                    parent_changeids=parent,
                )
            )
            changeid = inserted_id(result)
            if files:
                await c.execute(
                    t.change_files.insert(),
                    [{"changeid": changeid, "filename": f} for f in files],
                )
            if properties:
                await c.execute(
                    t.change_properties.insert(),
                    [
                        {
                            "changeid": changeid,
                            "property_name": name,
                            "property_value": json.dumps([value, source]),
                        }
                        for name, (value, source) in properties.items()
                    ],
                )
            if uid is not None:
                await c.execute(t.change_users.insert().values(changeid=changeid, uid=uid))
            return changeid

    async def get_change(
        self, changeid: int, *, conn: AsyncConnection | None = None
    ) -> Change | None:
        async with self._read(conn) as c:
            found = await self._load(c, sa.select(_ch).where(_ch.c.changeid == changeid))
        return found[0] if found else None

    async def get_changes(
        self, options: QueryOptions | None = None, *, conn: AsyncConnection | None = None
    ) -> list[Change]:
        """Every change, filtered, sorted and paged by ``options`` (by id when unordered)."""
        stmt = apply(sa.select(_ch), options, _COLUMNS, default_order=[_ch.c.changeid])
        async with self._read(conn) as c:
            return await self._load(c, stmt)

    async def get_changes_count(
        self, options: QueryOptions | None = None, *, conn: AsyncConnection | None = None
    ) -> int:
        """How many changes match the filters of ``options`` (order and paging are ignored)."""
        return await self._count(sa.select(_ch.c.changeid), options, _COLUMNS, conn)

    async def get_latest_changeid(self, *, conn: AsyncConnection | None = None) -> int | None:
        async with self._read(conn) as c:
            latest = (await c.execute(sa.select(sa.func.max(_ch.c.changeid)))).scalar()
        return None if latest is None else int(latest)

    async def get_change_from_ssid(
        self, sourcestampid: int, *, conn: AsyncConnection | None = None
    ) -> Change | None:
        """The latest change that produced this source stamp."""
        stmt = (
            sa.select(_ch)
            .where(_ch.c.sourcestampid == sourcestampid)
            .order_by(_ch.c.changeid.desc())
            .limit(1)
        )
        async with self._read(conn) as c:
            found = await self._load(c, stmt)
        return found[0] if found else None

    async def get_changes_for_buildset(
        self, bsid: int, *, conn: AsyncConnection | None = None
    ) -> list[Change]:
        """For each stamp of the buildset, the latest change that produced it (by stamp id)."""
        bss = t.buildset_sourcestamps
        latest = (
            sa.select(sa.func.max(_ch.c.changeid))
            .join(bss, bss.c.sourcestampid == _ch.c.sourcestampid)
            .where(bss.c.buildsetid == bsid)
            .group_by(_ch.c.sourcestampid)
        )
        stmt = sa.select(_ch).where(_ch.c.changeid.in_(latest)).order_by(_ch.c.sourcestampid)
        async with self._read(conn) as c:
            return await self._load(c, stmt)

    async def get_changes_for_build(
        self, buildid: int, *, conn: AsyncConnection | None = None
    ) -> list[Change]:
        """The changes a build brings since the previous successful build (Buildbot's rule).

        Per codebase: the build's change, then its ancestors, back to (not including) the change
        of the previous successful build on the same builder with the same repositories,
        branches and codebases. Without such a build the whole ancestry is returned.
        """
        async with self._read(conn) as c:
            build = await self._builds.get_build(buildid, conn=c)
            if build is None:
                return []
            stamps = await self._sourcestamps.get_sourcestamps_for_build(buildid, conn=c)
            previous = await self._builds.get_prev_successful_build(
                build.builderid, build.number, stamps, conn=c
            )
            stop: dict[str, int] = {}
            if previous is not None:
                for ss in await self._sourcestamps.get_sourcestamps_for_build(previous.id, conn=c):
                    change = await self._latest_for_ssid(c, ss.id)
                    if change is not None:
                        stop[ss.codebase] = change
            wanted: list[int] = []
            for ss in stamps:
                changeid = await self._latest_for_ssid(c, ss.id)
                if changeid is None or stop.get(ss.codebase) == changeid:
                    continue
                wanted.append(changeid)
                seen = {changeid}
                while True:
                    parent = (
                        await c.execute(
                            sa.select(_ch.c.parent_changeids).where(_ch.c.changeid == changeid)
                        )
                    ).scalar()
                    # a corrupt chain could loop; stop at anything already seen
                    if parent is None or parent == stop.get(ss.codebase) or parent in seen:
                        break
                    changeid = int(parent)
                    seen.add(changeid)
                    wanted.append(changeid)
            by_id = {ch.id: ch for ch in await self._by_ids(c, wanted)}
        return [by_id[i] for i in wanted if i in by_id]

    async def prune_changes(
        self, horizon: int, *, batch: int = 1000, conn: AsyncConnection | None = None
    ) -> int:
        """Delete all but the newest ``horizon`` changes (0 keeps all); how many went.

        At most ``batch`` changes go per transaction (unless ``conn`` is given), so a long
        backlog never holds the database for long; each batch is the newest of those to go
        (the ones just past the kept ``horizon``), so the deleting works back from there to
        the oldest. Several masters pruning at once
        agree: a change one of them deleted is simply not found by the other."""
        if not horizon:
            return 0
        total = 0
        while True:
            async with self._write(conn) as c:
                doomed = list(
                    (
                        await c.execute(
                            sa.select(_ch.c.changeid)
                            .order_by(_ch.c.changeid.desc())
                            .offset(horizon)
                            .limit(batch)
                        )
                    ).scalars()
                )
                # dependent rows first, and links from kept changes to doomed parents cleared,
                # so the result does not depend on ON DELETE actions being enforced
                for ids in _batches(doomed):
                    for table in (
                        t.scheduler_changes,
                        t.change_files,
                        t.change_properties,
                        t.change_users,
                    ):
                        await c.execute(table.delete().where(table.c.changeid.in_(ids)))
                    await c.execute(
                        _ch.update()
                        .where(_ch.c.parent_changeids.in_(ids))
                        .values(parent_changeids=None)
                    )
                for ids in _batches(doomed):
                    await c.execute(_ch.delete().where(_ch.c.changeid.in_(ids)))
            total += len(doomed)
            if len(doomed) < batch:
                return total

    async def _latest_for_ssid(self, c: AsyncConnection, ssid: int) -> int | None:
        latest = await c.execute(
            sa.select(sa.func.max(_ch.c.changeid)).where(_ch.c.sourcestampid == ssid)
        )
        found = latest.scalar()
        return None if found is None else int(found)

    async def _by_ids(self, c: AsyncConnection, ids: Sequence[int]) -> list[Change]:
        found: list[Change] = []
        for batch in _batches(ids):
            found += await self._load(c, sa.select(_ch).where(_ch.c.changeid.in_(batch)))
        return found

    async def _load(self, c: AsyncConnection, stmt: sa.Select[Any]) -> list[Change]:
        """Run ``stmt`` (rows of ``changes``) and attach files and properties, in row order."""
        rows = list(await c.execute(stmt))
        ids = [r.changeid for r in rows]
        files: dict[int, list[str]] = {}
        props: dict[int, dict[str, PropertyValue]] = {}
        for batch in _batches(ids):
            cf, cp = t.change_files, t.change_properties
            for f in await c.execute(
                sa.select(cf.c.changeid, cf.c.filename).where(cf.c.changeid.in_(batch))
            ):
                files.setdefault(f.changeid, []).append(f.filename)
            for p in await c.execute(
                sa.select(cp.c.changeid, cp.c.property_name, cp.c.property_value).where(
                    cp.c.changeid.in_(batch)
                )
            ):
                try:
                    props.setdefault(p.changeid, {})[p.property_name] = _property(p.property_value)
                except ValueError:
                    continue  # unreadable JSON: skip the property, as Buildbot does
        return [
            Change(
                id=r.changeid,
                author=r.author,
                committer=r.committer,
                comments=r.comments,
                branch=r.branch,
                revision=r.revision,
                revlink=r.revlink,
                when_timestamp=r.when_timestamp,
                category=r.category,
                repository=r.repository,
                codebase=r.codebase,
                project=r.project,
                sourcestampid=r.sourcestampid,
                parent_changeids=(r.parent_changeids,) if r.parent_changeids else (),
                files=tuple(files.get(r.changeid, ())),
                properties=props.get(r.changeid, {}),
            )
            for r in rows
        ]
