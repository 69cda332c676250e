"""The workers connector: workers by name, where they are configured, where they are connected.

A worker exists once for the whole cluster. Two kinds of link are per master:

* ``configured_workers`` — the worker may run builds of a builder on a master (a row per
  ``builder_masters`` link); each master replaces its own rows on reconfig.
* ``connected_workers`` — the worker is attached to a master right now; the same worker may be
  connected to several masters at once.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from buildyard.master.db import schema as t
from buildyard.master.db.arbitration import find_or_create_id, insert_ignoring_duplicates
from buildyard.master.db.base import Repository
from buildyard.master.db.errors import DbError
from buildyard.master.db.prepared import Prepared
from buildyard.master.db.query import QueryOptions, apply
from buildyard.master.model.workers import ConfiguredOn, Worker

# workers.name is VARCHAR(50); PostgreSQL would refuse longer names, SQLite keep them
MAX_NAME_LENGTH = 50

# values per IN (...) list: well under SQLite's and asyncpg's bound-parameter limits
_BATCH = 500

_COLUMNS: dict[str, sa.ColumnElement[Any]] = {
    "workerid": t.workers.c.id,
    "name": t.workers.c.name,
    "paused": t.workers.c.paused,
    "pause_reason": t.workers.c.pause_reason,
    "graceful": t.workers.c.graceful,
}

_w = t.workers
_bm = t.builder_masters
_cw = t.configured_workers
_conn = t.connected_workers


def _link_conditions(masterid: int | None, builderid: int | None) -> list[sa.ColumnElement[bool]]:
    conds: list[sa.ColumnElement[bool]] = []
    if masterid is not None:
        conds.append(_bm.c.masterid == masterid)
    if builderid is not None:
        conds.append(_bm.c.builderid == builderid)
    return conds


def _filtered(
    masterid: int | None, builderid: int | None, paused: bool | None, graceful: bool | None
) -> sa.Select[Any]:
    stmt = sa.select(_w)
    if links := _link_conditions(masterid, builderid):
        configured = (
            sa.select(_cw.c.workerid).join(_bm, _bm.c.id == _cw.c.buildermasterid).where(*links)
        )
        stmt = stmt.where(_w.c.id.in_(configured))
    if paused is not None:
        stmt = stmt.where(_w.c.paused == int(paused))
    if graceful is not None:
        stmt = stmt.where(_w.c.graceful == int(graceful))
    return stmt


def _info(row: sa.Row[Any]) -> dict[str, Any]:
    try:
        info = json.loads(row.info)
    except ValueError as exc:
        raise DbError(f"worker {row.id} has an info column that is not JSON") from exc
    if not isinstance(info, dict):
        raise DbError(f"worker {row.id} has an info column that is not a JSON object")
    return info


def _assemble(
    rows: Sequence[Any], configured: Sequence[Any], connected: Sequence[Any]
) -> list[Worker]:
    """Workers from their rows, their (workerid, masterid, builderid) configuration links and
    their (workerid, masterid) connections."""
    on: defaultdict[int, list[ConfiguredOn]] = defaultdict(list)
    for cfg in configured:
        on[cfg.workerid].append(ConfiguredOn(masterid=cfg.masterid, builderid=cfg.builderid))
    to: defaultdict[int, list[int]] = defaultdict(list)
    for link in connected:
        to[link.workerid].append(link.masterid)
    return [
        Worker(
            id=r.id,
            name=r.name,
            workerinfo=_info(r),
            paused=bool(r.paused),
            pause_reason=r.pause_reason,
            graceful=bool(r.graceful),
            connected_to=tuple(to[r.id]),
            configured_on=tuple(on[r.id]),
        )
        for r in rows
    ]


# get_workers(masterid=...): the workers configured on a master, their links there, and their
# connection to it (the links' workers are all among those workers)
_ON_MASTER = (
    sa.select(_cw.c.workerid)
    .join(_bm, _bm.c.id == _cw.c.buildermasterid)
    .where(_bm.c.masterid == sa.bindparam("masterid"))
)
_OF_MASTER = Prepared(sa.select(_w).where(_w.c.id.in_(_ON_MASTER)).order_by(_w.c.id))
_CONFIGURED_OF_MASTER = Prepared(
    sa.select(_cw.c.workerid, _bm.c.masterid, _bm.c.builderid)
    .join(_bm, _bm.c.id == _cw.c.buildermasterid)
    .where(_bm.c.masterid == sa.bindparam("masterid"))
    .order_by(_cw.c.workerid, _bm.c.masterid, _bm.c.builderid)
)
_CONNECTED_OF_MASTER = Prepared(
    sa.select(_conn.c.workerid, _conn.c.masterid)
    .where(_conn.c.masterid == sa.bindparam("masterid"), _conn.c.workerid.in_(_ON_MASTER))
    .order_by(_conn.c.workerid, _conn.c.masterid)
)
# held_workers(masterid): the distributor's, each pass: only what a pass needs
_HELD_OF_MASTER = Prepared(
    sa.select(_w.c.name, _w.c.paused, _w.c.graceful)
    .where(
        sa.or_(_w.c.paused != 0, _w.c.graceful != 0),
        _w.c.id.in_(_ON_MASTER),
    )
    .order_by(_w.c.id)
)


class WorkersRepository(Repository):
    async def find_worker_id(self, name: str, *, conn: AsyncConnection | None = None) -> int:
        """The id of the worker called ``name``, created (unpaused, no info) if it is new."""
        if len(name) > MAX_NAME_LENGTH:
            raise ValueError(f"worker name {name!r} is longer than {MAX_NAME_LENGTH} characters")
        async with self._write(conn) as c:
            return await find_or_create_id(
                c,
                _w,
                where=_w.c.name == name,
                values={"name": name, "info": "{}", "paused": 0, "graceful": 0},
            )

    async def get_worker(
        self,
        workerid: int | None = None,
        *,
        name: str | None = None,
        masterid: int | None = None,
        builderid: int | None = None,
        conn: AsyncConnection | None = None,
    ) -> Worker | None:
        """The worker with this id or name, seen as :meth:`get_workers` would with the filters."""
        if workerid is None and name is None:
            raise ValueError("get_worker needs a workerid or a name")
        stmt = _filtered(masterid, builderid, None, None)
        if workerid is not None:
            stmt = stmt.where(_w.c.id == workerid)
        if name is not None:
            stmt = stmt.where(_w.c.name == name)
        async with self._read(conn) as c:
            found = await self._workers(c, stmt, masterid, builderid)
        return found[0] if found else None

    async def get_workers(
        self,
        *,
        masterid: int | None = None,
        builderid: int | None = None,
        paused: bool | None = None,
        graceful: bool | None = None,
        options: QueryOptions | None = None,
        conn: AsyncConnection | None = None,
    ) -> list[Worker]:
        """Workers, ordered by id unless ``options`` say otherwise.

        As in Buildbot, ``masterid`` and ``builderid`` give the view from that master or
        builder: only workers configured there are returned, ``configured_on`` lists only the
        matching links, and with ``masterid`` ``connected_to`` lists at most that master.
        """
        if masterid is not None and all(x is None for x in (builderid, paused, graceful, options)):
            # the distributor's, each pass: prepared
            async with self._read(conn) as c:
                given = {"masterid": masterid}
                rows = (await _OF_MASTER.execute(c, given)).all()
                configured = (await _CONFIGURED_OF_MASTER.execute(c, given)).all()
                connected = (await _CONNECTED_OF_MASTER.execute(c, given)).all()
            return _assemble(rows, configured, connected)
        stmt = apply(
            _filtered(masterid, builderid, paused, graceful),
            options,
            _COLUMNS,
            default_order=[_w.c.id],
        )
        async with self._read(conn) as c:
            return await self._workers(c, stmt, masterid, builderid)

    async def held_workers(
        self, *, masterid: int, conn: AsyncConnection | None = None
    ) -> list[tuple[str, bool, bool]]:
        """The workers configured on master ``masterid`` that are paused or shutting down
        gracefully, as ``(name, paused, graceful)``, by id: what a distribution pass reads
        (one statement, and rows only for the workers it must leave alone)."""
        async with self._read(conn) as c:
            rows = (await _HELD_OF_MASTER.execute(c, {"masterid": masterid})).all()
        return [(r.name, bool(r.paused), bool(r.graceful)) for r in rows]

    async def count_workers(
        self,
        *,
        masterid: int | None = None,
        builderid: int | None = None,
        paused: bool | None = None,
        graceful: bool | None = None,
        options: QueryOptions | None = None,
        conn: AsyncConnection | None = None,
    ) -> int:
        """How many workers get_workers would return without paging."""
        return await self._count(
            _filtered(masterid, builderid, paused, graceful), options, _COLUMNS, conn
        )

    async def _workers(
        self,
        c: AsyncConnection,
        stmt: sa.Select[Any],
        masterid: int | None,
        builderid: int | None,
    ) -> list[Worker]:
        rows = (await c.execute(stmt)).all()
        ids = [r.id for r in rows]
        if not ids:
            return []
        configured = (
            await c.execute(
                sa.select(_cw.c.workerid, _bm.c.masterid, _bm.c.builderid)
                .join(_bm, _bm.c.id == _cw.c.buildermasterid)
                .where(_cw.c.workerid.in_(ids), *_link_conditions(masterid, builderid))
                .order_by(_cw.c.workerid, _bm.c.masterid, _bm.c.builderid)
            )
        ).all()
        connected_stmt = sa.select(_conn.c.workerid, _conn.c.masterid).where(
            _conn.c.workerid.in_(ids)
        )
        if masterid is not None:
            connected_stmt = connected_stmt.where(_conn.c.masterid == masterid)
        connected = (
            await c.execute(connected_stmt.order_by(_conn.c.workerid, _conn.c.masterid))
        ).all()
        return _assemble(rows, configured, connected)

    async def worker_connected(
        self,
        workerid: int,
        masterid: int,
        workerinfo: Mapping[str, Any],
        *,
        conn: AsyncConnection | None = None,
    ) -> None:
        """Record that the worker is attached to the master, and what it said about itself.

        Connecting again to the same master is not an error (the row exists once); the info is
        replaced either way.
        """
        async with self._write(conn) as c:
            await insert_ignoring_duplicates(
                c, _conn, [{"workerid": workerid, "masterid": masterid}]
            )
            await c.execute(
                _w.update().where(_w.c.id == workerid).values(info=json.dumps(dict(workerinfo)))
            )

    async def worker_disconnected(
        self, workerid: int, masterid: int, *, conn: AsyncConnection | None = None
    ) -> None:
        async with self._write(conn) as c:
            await c.execute(
                _conn.delete().where(_conn.c.workerid == workerid, _conn.c.masterid == masterid)
            )

    async def worker_configured(
        self,
        workerid: int,
        masterid: int,
        builderids: Sequence[int],
        *,
        conn: AsyncConnection | None = None,
    ) -> None:
        """Make ``builderids`` exactly the builders of ``masterid`` that the worker serves.

        Builders not linked to the master (no ``builder_masters`` row) are ignored; links to
        other masters are left alone.
        """
        master_links = sa.select(_bm.c.id).where(_bm.c.masterid == masterid)
        async with self._write(conn) as c:
            wanted: list[int] = []
            if builderids:
                wanted = sorted(
                    (
                        await c.execute(master_links.where(_bm.c.builderid.in_(set(builderids))))
                    ).scalars()
                )
            await c.execute(
                _cw.delete().where(
                    _cw.c.workerid == workerid,
                    _cw.c.buildermasterid.in_(master_links),
                    _cw.c.buildermasterid.not_in(wanted),
                )
            )
            have = set(
                (
                    await c.execute(
                        sa.select(_cw.c.buildermasterid).where(
                            _cw.c.workerid == workerid, _cw.c.buildermasterid.in_(wanted)
                        )
                    )
                ).scalars()
            )
            await insert_ignoring_duplicates(
                c,
                _cw,
                [{"workerid": workerid, "buildermasterid": b} for b in wanted if b not in have],
            )

    async def find_worker_ids(
        self, names: Sequence[str], *, conn: AsyncConnection | None = None
    ) -> dict[str, int]:
        """The id of each worker in ``names``, creating the new ones (unpaused, no info): read
        in a few batched SELECTs and created in one INSERT, so a start with many workers does
        not pay a query each."""
        for name in names:
            if len(name) > MAX_NAME_LENGTH:
                raise ValueError(
                    f"worker name {name!r} is longer than {MAX_NAME_LENGTH} characters"
                )
        ids: dict[str, int] = {}
        unique = list(dict.fromkeys(names))
        async with self._write(conn) as c:
            for start in range(0, len(unique), _BATCH):
                rows = await c.execute(
                    sa.select(_w.c.id, _w.c.name).where(
                        _w.c.name.in_(unique[start : start + _BATCH])
                    )
                )
                ids.update({r.name: int(r.id) for r in rows})
            new = [name for name in unique if name not in ids]
            # the new ones together (a first start); one another master made meanwhile is
            # skipped by the unique index and read back with the others
            await insert_ignoring_duplicates(
                c, _w, [{"name": n, "info": "{}", "paused": 0, "graceful": 0} for n in new]
            )
            for start in range(0, len(new), _BATCH):
                rows = await c.execute(
                    sa.select(_w.c.id, _w.c.name).where(_w.c.name.in_(new[start : start + _BATCH]))
                )
                ids.update({r.name: int(r.id) for r in rows})
        return ids

    async def configure_workers_for_master(
        self,
        masterid: int,
        builders_of: Mapping[int, Sequence[int]],
        *,
        conn: AsyncConnection | None = None,
    ) -> tuple[int, int]:
        """Make ``builders_of`` (worker id -> builder ids) exactly the workers configured on
        ``masterid``'s builders: workers left out lose their links to this master's builders.

        Builders not linked to the master are ignored; links to other masters are left alone.
        Only the difference from what is stored is written (one read of the master's rows,
        batched deletes and one insert), so an unchanged start or reconfig writes nothing,
        however many builders there are. Returns ``(added, removed)`` row counts.
        """
        async with self._write(conn) as c:
            link_of = {
                int(r.builderid): int(r.id)
                for r in await c.execute(
                    sa.select(_bm.c.id, _bm.c.builderid).where(_bm.c.masterid == masterid)
                )
            }
            wanted = {
                (workerid, link_of[b])
                for workerid, builderids in builders_of.items()
                for b in builderids
                if b in link_of
            }
            have = {
                (int(r.workerid), int(r.buildermasterid)): int(r.id)
                for r in await c.execute(
                    sa.select(_cw.c.id, _cw.c.workerid, _cw.c.buildermasterid)
                    .join(_bm, _bm.c.id == _cw.c.buildermasterid)
                    .where(_bm.c.masterid == masterid)
                )
            }
            stale = sorted(rowid for pair, rowid in have.items() if pair not in wanted)
            for start in range(0, len(stale), _BATCH):
                await c.execute(_cw.delete().where(_cw.c.id.in_(stale[start : start + _BATCH])))
            new = sorted(pair for pair in wanted if pair not in have)
            await insert_ignoring_duplicates(
                c, _cw, [{"workerid": w, "buildermasterid": bm} for w, bm in new]
            )
        return len(new), len(stale)

    async def deconfigure_all_workers_for_master(
        self, masterid: int, *, conn: AsyncConnection | None = None
    ) -> None:
        """Forget which workers serve the master's builders (its builder links stay)."""
        master_links = sa.select(_bm.c.id).where(_bm.c.masterid == masterid)
        async with self._write(conn) as c:
            await c.execute(_cw.delete().where(_cw.c.buildermasterid.in_(master_links)))

    async def set_worker_state(
        self,
        workerid: int,
        *,
        paused: bool,
        graceful: bool,
        pause_reason: str | None = None,
        conn: AsyncConnection | None = None,
    ) -> None:
        """Set the pause and graceful-shutdown flags; a reason is kept only while paused."""
        async with self._write(conn) as c:
            await c.execute(
                _w.update()
                .where(_w.c.id == workerid)
                .values(
                    paused=int(paused),
                    graceful=int(graceful),
                    pause_reason=pause_reason if paused else None,
                )
            )
