"""The masters connector: which master processes exist, and which are alive.

Masters check in periodically; other masters watch ``last_active`` and mark those that stop
checking in as inactive. Deactivating a master removes its links (scheduler, change source and
builder ownership) so live masters can take over.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from buildyard.master.db import schema as t
from buildyard.master.db.arbitration import find_or_create_id
from buildyard.master.db.base import Repository
from buildyard.master.db.hashes import name_hash
from buildyard.master.db.query import QueryOptions, apply
from buildyard.master.model.masters import DeactivationCleanup, Master
from buildyard.master.model.results import Results

# the state string of a build ended RETRY because its master was found gone (it died, or went
# silent for longer than the housekeeping's expireAfter): a build's final string for RETRY, as
# Buildbot writes it ("retry"), with the reason in parentheses
LOST_BUILD_STATE = "retry (master lost)"

_COLUMNS: dict[str, sa.ColumnElement[Any]] = {
    "masterid": t.masters.c.id,
    "name": t.masters.c.name,
    "active": t.masters.c.active,
    "last_active": t.masters.c.last_active,
}


def _claimed_by(masterid: int) -> sa.ColumnElement[bool]:
    """The claims of ``masterid``, in a form no index of ``masterid`` serves.

    A master's claims stay after their requests complete, so ``ix_buildrequest_claims_masterid``
    leads to every request it ever built. The cleanup wants those still open: it reads the
    incomplete requests (or buildsets) first and each one's claim by ``brid``, and filters on
    the master there. ``masterid + 0`` is an expression rather than the column, so neither
    SQLite's planner (which has no statistics unless ANALYZE ran, and otherwise prefers the
    claims) nor PostgreSQL's takes the claims' index instead."""
    return t.buildrequest_claims.c.masterid + 0 == masterid


def _master(row: sa.Row[Any]) -> Master:
    return Master(id=row.id, name=row.name, active=bool(row.active), last_active=row.last_active)


class MastersRepository(Repository):
    async def find_master_id(self, name: str, *, conn: AsyncConnection | None = None) -> int:
        """The id of the master called ``name``, added as inactive if it is new."""
        h = name_hash(name)
        async with self._write(conn) as c:
            return await find_or_create_id(
                c,
                t.masters,
                where=t.masters.c.name_hash == h,
                values={"name": name, "name_hash": h, "active": 0, "last_active": self._now()},
            )

    async def set_master_state(
        self, masterid: int, *, active: bool, conn: AsyncConnection | None = None
    ) -> bool:
        """Mark a master active (refreshing last_active) or inactive (deleting its links).

        Returns whether the state changed.
        """
        m = t.masters
        async with self._write(conn) as c:
            if active:
                # One conditional UPDATE decides "was it inactive?" atomically: under PostgreSQL's
                # READ COMMITTED a concurrent expiry is re-checked against the committed row.
                flipped = await c.execute(
                    m.update()
                    .where(m.c.id == masterid, m.c.active == 0)
                    .values(active=1, last_active=self._now())
                )
                if flipped.rowcount:
                    return True
                await c.execute(
                    m.update().where(m.c.id == masterid).values(last_active=self._now())
                )
                return False
            await self._unlink(c, masterid)
            flipped = await c.execute(
                m.update().where(m.c.id == masterid, m.c.active != 0).values(active=0)
            )
            return bool(flipped.rowcount)

    async def mark_inactive_if_stale(
        self, masterid: int, *, older_than: int, conn: AsyncConnection | None = None
    ) -> bool:
        """Mark the master inactive only if it is active and its last check-in is before
        ``older_than``; whether it did. A check-in that lands first wins."""
        m = t.masters
        async with self._write(conn) as c:
            result = await c.execute(
                m.update()
                .where(m.c.id == masterid, m.c.active != 0, m.c.last_active < older_than)
                .values(active=0)
            )
            return bool(result.rowcount)

    async def _unlink(self, c: AsyncConnection, masterid: int) -> tuple[list[int], ...]:
        """Delete the master's ownership links; return the builder, scheduler, change source ids."""
        owned: list[list[int]] = []
        for table, key in (
            (t.builder_masters, t.builder_masters.c.builderid),
            (t.scheduler_masters, t.scheduler_masters.c.schedulerid),
            (t.changesource_masters, t.changesource_masters.c.changesourceid),
        ):
            ids = (await c.execute(sa.select(key).where(table.c.masterid == masterid))).scalars()
            owned.append(sorted(ids))
            # configured_workers rows go with their builder_masters row (ON DELETE CASCADE),
            # but SQLite only cascades with foreign keys on, so delete them explicitly too.
            if table is t.builder_masters:
                bm_ids = sa.select(t.builder_masters.c.id).where(
                    t.builder_masters.c.masterid == masterid
                )
                await c.execute(
                    t.configured_workers.delete().where(
                        t.configured_workers.c.buildermasterid.in_(bm_ids)
                    )
                )
            await c.execute(table.delete().where(table.c.masterid == masterid))
        return tuple(owned)

    async def get_master(
        self, masterid: int, *, conn: AsyncConnection | None = None
    ) -> Master | None:
        async with self._read(conn) as c:
            row = (await c.execute(sa.select(t.masters).where(t.masters.c.id == masterid))).first()
        return _master(row) if row else None

    async def get_masters(
        self, options: QueryOptions | None = None, *, conn: AsyncConnection | None = None
    ) -> list[Master]:
        """Every master, filtered, sorted and paged by ``options`` (by id when unordered)."""
        stmt = apply(sa.select(t.masters), options, _COLUMNS, default_order=[t.masters.c.id])
        async with self._read(conn) as c:
            return [_master(r) for r in await c.execute(stmt)]

    async def count_masters(
        self, options: QueryOptions | None = None, *, conn: AsyncConnection | None = None
    ) -> int:
        return await self._count(sa.select(t.masters.c.id), options, _COLUMNS, conn)

    async def set_all_masters_active_long_ago(self, *, conn: AsyncConnection | None = None) -> None:
        """Force housekeeping of every master at the next start (for upgrade-master)."""
        async with self._write(conn) as c:
            await c.execute(t.masters.update().values(active=1, last_active=0))

    async def find_expired(
        self, *, older_than: int, conn: AsyncConnection | None = None
    ) -> list[Master]:
        """Masters whose last check-in is before ``older_than`` (active or not)."""
        stmt = (
            sa.select(t.masters)
            .where(t.masters.c.last_active < older_than)
            .order_by(t.masters.c.id)
        )
        async with self._read(conn) as c:
            return [_master(r) for r in await c.execute(stmt)]

    async def deactivation_cleanup(
        self, masterid: int, *, conn: AsyncConnection | None = None
    ) -> DeactivationCleanup:
        """Undo what a gone master left behind (docs/database.md, "Masters", the cleanup).

        Its links go, and so do the connections of workers to it; its unfinished builds, steps
        and logs are finished with RETRY (the builds' state string says why: see
        :data:`LOST_BUILD_STATE`); the claims it held on incomplete requests are released so
        that live masters take them, except where the request's last build had finished (it
        died before completing the request): that request is completed with the build's
        result. The incomplete buildsets with a request it claimed are returned, for the
        caller to complete those whose requests all are.
        """
        now = self._now()
        async with self._write(conn) as c:
            builderids, schedulerids, changesourceids = await self._unlink(c, masterid)
            workerids = sorted(
                (
                    await c.execute(
                        sa.select(t.connected_workers.c.workerid).where(
                            t.connected_workers.c.masterid == masterid
                        )
                    )
                ).scalars()
            )
            if workerids:
                await c.execute(
                    t.connected_workers.delete().where(t.connected_workers.c.masterid == masterid)
                )
            builds = [
                (r.id, r.builderid, r.number)
                for r in await c.execute(
                    sa.select(t.builds.c.id, t.builds.c.builderid, t.builds.c.number)
                    .where(t.builds.c.masterid == masterid, t.builds.c.complete_at.is_(None))
                    .order_by(t.builds.c.id)
                )
            ]
            buildids = [b[0] for b in builds]
            steps: list[tuple[int, int]] = []
            logs: list[tuple[int, int]] = []
            if buildids:
                steps = [
                    (r.id, r.buildid)
                    for r in await c.execute(
                        sa.select(t.steps.c.id, t.steps.c.buildid)
                        .where(t.steps.c.buildid.in_(buildids), t.steps.c.results.is_(None))
                        .order_by(t.steps.c.id)
                    )
                ]
                stepids = [s[0] for s in steps]
                if stepids:
                    logs = [
                        (r.id, r.stepid)
                        for r in await c.execute(
                            sa.select(t.logs.c.id, t.logs.c.stepid)
                            .where(t.logs.c.stepid.in_(stepids), t.logs.c.complete == 0)
                            .order_by(t.logs.c.id)
                        )
                    ]
                    await c.execute(
                        t.logs.update()
                        .where(t.logs.c.id.in_([lg[0] for lg in logs]))
                        .values(complete=1)
                    )
                    await c.execute(
                        t.steps.update()
                        .where(t.steps.c.id.in_(stepids))
                        .values(results=int(Results.RETRY), complete_at=now, hidden=0)
                    )
                await c.execute(
                    t.builds.update()
                    .where(t.builds.c.id.in_(buildids))
                    .values(
                        results=int(Results.RETRY), complete_at=now, state_string=LOST_BUILD_STATE
                    )
                )
            held = [
                (r.id, r.builderid, r.buildsetid)
                for r in await c.execute(
                    sa.select(
                        t.buildrequests.c.id,
                        t.buildrequests.c.builderid,
                        t.buildrequests.c.buildsetid,
                    )
                    .join(
                        t.buildrequest_claims, t.buildrequest_claims.c.brid == t.buildrequests.c.id
                    )
                    # led by the incomplete requests (buildrequests_complete), not by the
                    # master's claims: those are kept after completion, so they are its whole
                    # history (see _claimed_by). complete is 0 when written (as Buildbot writes
                    # it), but the column allows NULL, which means incomplete here as elsewhere
                    .where(
                        _claimed_by(masterid),
                        sa.or_(
                            t.buildrequests.c.complete == 0, t.buildrequests.c.complete.is_(None)
                        ),
                    )
                    .order_by(t.buildrequests.c.id)
                )
            ]
            # a request whose last build finished with a final result was built: the master
            # died before completing it. Completed now with that result, not built again.
            unclaimed: list[tuple[int, int, int]] = []
            completed: list[tuple[int, int, int]] = []
            for request in held:
                last = (
                    await c.execute(
                        sa.select(t.builds.c.results, t.builds.c.complete_at)
                        .where(t.builds.c.buildrequestid == request[0])
                        .order_by(t.builds.c.id.desc())
                        .limit(1)
                    )
                ).first()
                final = (
                    last is not None
                    and last.complete_at is not None
                    and last.results is not None
                    and last.results != int(Results.RETRY)
                )
                if not final:
                    unclaimed.append(request)
                    continue
                assert last is not None
                await c.execute(
                    t.buildrequests.update()
                    .where(t.buildrequests.c.id == request[0])
                    .values(complete=1, results=int(last.results), complete_at=now)
                )
                completed.append(request)
            # read from the incomplete buildsets (buildsets_complete) to their requests and
            # those requests' claims, not from the master's claims (its whole history)
            incomplete_buildsets = sa.select(t.buildsets.c.id).where(t.buildsets.c.complete == 0)
            buildsets = sorted(
                (
                    await c.execute(
                        sa.select(t.buildrequests.c.buildsetid)
                        .distinct()
                        .join(
                            t.buildrequest_claims,
                            t.buildrequest_claims.c.brid == t.buildrequests.c.id,
                        )
                        .where(
                            _claimed_by(masterid),
                            t.buildrequests.c.buildsetid.in_(incomplete_buildsets),
                        )
                    )
                ).scalars()
            )
            if unclaimed:
                await c.execute(
                    t.buildrequest_claims.delete().where(
                        t.buildrequest_claims.c.masterid == masterid,
                        t.buildrequest_claims.c.brid.in_([u[0] for u in unclaimed]),
                    )
                )
        return DeactivationCleanup(
            masterid=masterid,
            builderids=tuple(builderids),
            schedulerids=tuple(schedulerids),
            changesourceids=tuple(changesourceids),
            builds=tuple(builds),
            steps=tuple(steps),
            logs=tuple(logs),
            workerids=tuple(workerids),
            unclaimed=tuple(unclaimed),
            completed=tuple(completed),
            buildsets=tuple(buildsets),
        )
