"""The schedulers connector: schedulers by name, which master runs each, and their change queue.

Every master configures the same schedulers, but each runs on one master only: the owner row in
``scheduler_masters`` (keyed by scheduler id) is claimed by INSERT, and the unique key decides
between masters claiming at once (docs/database.md, "Owners"). ``scheduler_changes`` holds the
changes a scheduler has classified (important or not) and not yet acted upon.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from buildyard.master.db import schema as t
from buildyard.master.db.arbitration import (
    claim_ownership,
    find_or_create_id,
    insert_ignoring_duplicates,
    release_ownership,
)
from buildyard.master.db.base import Repository
from buildyard.master.db.hashes import name_hash
from buildyard.master.db.query import QueryOptions, apply
from buildyard.master.model.schedulers import Scheduler

_s = t.schedulers
_sm = t.scheduler_masters
_sc = t.scheduler_changes


_COLUMNS: dict[str, sa.ColumnElement[Any]] = {
    "schedulerid": _s.c.id,
    "name": _s.c.name,
    "enabled": _s.c.enabled,
    "masterid": _sm.c.masterid,
}


class Unfiltered(enum.Enum):
    """Type of :data:`ANY`, the "do not filter on this" default (None filters on NULL)."""

    ANY = "any"


ANY = Unfiltered.ANY


def _filtered(active: bool | None, masterid: int | None) -> sa.Select[Any]:
    stmt = sa.select(_s.c.id, _s.c.name, _s.c.enabled, _sm.c.masterid).select_from(
        _s.outerjoin(_sm, _sm.c.schedulerid == _s.c.id)
    )
    if masterid is not None:
        # owned by that master is active by definition
        if active is False:
            return stmt.where(sa.false())
        return stmt.where(_sm.c.masterid == masterid)
    if active is True:
        return stmt.where(_sm.c.masterid.is_not(None))
    if active is False:
        return stmt.where(_sm.c.masterid.is_(None))
    return stmt


def _scheduler(row: sa.Row[Any]) -> Scheduler:
    # enabled is nullable with a server default of 1; NULL counts as enabled
    return Scheduler(
        id=row.id,
        name=row.name,
        enabled=row.enabled is None or bool(row.enabled),
        masterid=row.masterid,
    )


class SchedulersRepository(Repository):
    async def find_scheduler_id(self, name: str, *, conn: AsyncConnection | None = None) -> int:
        """The id of the scheduler called ``name``, created (enabled, unowned) if it is new."""
        h = name_hash(name)
        async with self._write(conn) as c:
            return await find_or_create_id(
                c,
                _s,
                where=_s.c.name_hash == h,
                values={"name": name, "name_hash": h, "enabled": 1},
            )

    async def get_scheduler(
        self, schedulerid: int, *, conn: AsyncConnection | None = None
    ) -> Scheduler | None:
        async with self._read(conn) as c:
            row = (await c.execute(_filtered(None, None).where(_s.c.id == schedulerid))).first()
        return _scheduler(row) if row else None

    async def get_schedulers(
        self,
        *,
        active: bool | None = None,
        masterid: int | None = None,
        options: QueryOptions | None = None,
        conn: AsyncConnection | None = None,
    ) -> list[Scheduler]:
        """Schedulers owned by ``masterid``, or owned by some master (``active``) or by none.

        Ordered by id unless ``options`` say otherwise.
        """
        stmt = apply(_filtered(active, masterid), options, _COLUMNS, default_order=[_s.c.id])
        async with self._read(conn) as c:
            return [_scheduler(r) for r in await c.execute(stmt)]

    async def count_schedulers(
        self,
        *,
        active: bool | None = None,
        masterid: int | None = None,
        options: QueryOptions | None = None,
        conn: AsyncConnection | None = None,
    ) -> int:
        """How many schedulers get_schedulers would return without paging."""
        return await self._count(_filtered(active, masterid), options, _COLUMNS, conn)

    async def set_scheduler_master(
        self, schedulerid: int, masterid: int | None, *, conn: AsyncConnection | None = None
    ) -> None:
        """Claim the scheduler for ``masterid``, or release it (whoever owns it) with None.

        Raises :class:`~buildyard.master.db.errors.AlreadyClaimed` if another master owns it;
        claiming it again for its owner is fine.
        """
        async with self._write(conn) as c:
            if masterid is None:
                await release_ownership(c, _sm, key=_sm.c.schedulerid, objectid=schedulerid)
            else:
                await claim_ownership(
                    c,
                    _sm,
                    key=_sm.c.schedulerid,
                    objectid=schedulerid,
                    masterid=masterid,
                    what="scheduler",
                )

    async def set_scheduler_enabled(
        self, schedulerid: int, enabled: bool, *, conn: AsyncConnection | None = None
    ) -> None:
        async with self._write(conn) as c:
            await c.execute(_s.update().where(_s.c.id == schedulerid).values(enabled=int(enabled)))

    async def classify_changes(
        self,
        schedulerid: int,
        classifications: Mapping[int, bool],
        *,
        conn: AsyncConnection | None = None,
    ) -> None:
        """Record, per change id, whether the change is important to the scheduler.

        A change classified again takes the new value.
        """
        if not classifications:
            return
        async with self._write(conn) as c:
            have = set(
                (
                    await c.execute(
                        sa.select(_sc.c.changeid).where(
                            _sc.c.schedulerid == schedulerid,
                            _sc.c.changeid.in_(list(classifications)),
                        )
                    )
                ).scalars()
            )
            await insert_ignoring_duplicates(
                c,
                _sc,
                [
                    {"schedulerid": schedulerid, "changeid": changeid, "important": int(imp)}
                    for changeid, imp in classifications.items()
                    if changeid not in have
                ],
            )
            # rows that existed (or that a concurrent writer just inserted) take our value
            for important in (True, False):
                changeids = [ch for ch, imp in classifications.items() if bool(imp) is important]
                if changeids:
                    await c.execute(
                        _sc.update()
                        .where(_sc.c.schedulerid == schedulerid, _sc.c.changeid.in_(changeids))
                        .values(important=int(important))
                    )

    async def flush_change_classifications(
        self,
        schedulerid: int,
        *,
        less_than: int | None = None,
        conn: AsyncConnection | None = None,
    ) -> None:
        """Forget the scheduler's classified changes (only those with changeid < ``less_than``)."""
        stmt = _sc.delete().where(_sc.c.schedulerid == schedulerid)
        if less_than is not None:
            stmt = stmt.where(_sc.c.changeid < less_than)
        async with self._write(conn) as c:
            await c.execute(stmt)

    async def get_change_classifications(
        self,
        schedulerid: int,
        *,
        branch: str | Unfiltered | None = ANY,
        repository: str | Unfiltered | None = ANY,
        project: str | Unfiltered | None = ANY,
        codebase: str | Unfiltered | None = ANY,
        conn: AsyncConnection | None = None,
    ) -> dict[int, bool]:
        """The scheduler's classified changes, ``{changeid: important}`` by ascending changeid.

        Each of branch, repository, project and codebase limits the result to changes with that
        value; as in Buildbot, ``branch=None`` means the default branch (NULL), and leaving an
        argument out does not filter on it.
        """
        ch = t.changes
        stmt = (
            sa.select(_sc.c.changeid, _sc.c.important)
            .join(ch, ch.c.changeid == _sc.c.changeid)
            .where(_sc.c.schedulerid == schedulerid)
            .order_by(_sc.c.changeid)
        )
        for column, value in (
            (ch.c.branch, branch),
            (ch.c.repository, repository),
            (ch.c.project, project),
            (ch.c.codebase, codebase),
        ):
            if value is None:
                stmt = stmt.where(column.is_(None))
            elif not isinstance(value, Unfiltered):
                stmt = stmt.where(column == value)
        async with self._read(conn) as c:
            return {r.changeid: bool(r.important) for r in await c.execute(stmt)}
