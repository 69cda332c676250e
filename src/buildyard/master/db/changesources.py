"""The change sources connector: change sources by name, and which master runs each.

Like schedulers, every master configures the same change sources but each runs on one master
only: the owner row in ``changesource_masters`` (keyed by change source id) is claimed by INSERT,
and the key decides between masters claiming at once (docs/database.md, "Owners").
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from buildyard.master.db import schema as t
from buildyard.master.db.arbitration import claim_ownership, find_or_create_id, release_ownership
from buildyard.master.db.base import Repository
from buildyard.master.db.hashes import name_hash
from buildyard.master.db.query import QueryOptions, apply
from buildyard.master.model.changesources import ChangeSource

_cs = t.changesources
_csm = t.changesource_masters

_COLUMNS: dict[str, sa.ColumnElement[Any]] = {
    "changesourceid": _cs.c.id,
    "name": _cs.c.name,
    "masterid": _csm.c.masterid,
}


def _filtered(active: bool | None, masterid: int | None) -> sa.Select[Any]:
    stmt = sa.select(_cs.c.id, _cs.c.name, _csm.c.masterid).select_from(
        _cs.outerjoin(_csm, _csm.c.changesourceid == _cs.c.id)
    )
    if masterid is not None:
        # owned by that master is active by definition
        if active is False:
            return stmt.where(sa.false())
        return stmt.where(_csm.c.masterid == masterid)
    if active is True:
        return stmt.where(_csm.c.masterid.is_not(None))
    if active is False:
        return stmt.where(_csm.c.masterid.is_(None))
    return stmt


def _changesource(row: sa.Row[Any]) -> ChangeSource:
    return ChangeSource(id=row.id, name=row.name, masterid=row.masterid)


class ChangeSourcesRepository(Repository):
    async def find_changesource_id(self, name: str, *, conn: AsyncConnection | None = None) -> int:
        """The id of the change source called ``name``, created (unowned) if it is new."""
        h = name_hash(name)
        async with self._write(conn) as c:
            return await find_or_create_id(
                c, _cs, where=_cs.c.name_hash == h, values={"name": name, "name_hash": h}
            )

    async def get_changesource(
        self, changesourceid: int, *, conn: AsyncConnection | None = None
    ) -> ChangeSource | None:
        stmt = _filtered(None, None).where(_cs.c.id == changesourceid)
        async with self._read(conn) as c:
            row = (await c.execute(stmt)).first()
        return _changesource(row) if row else None

    async def get_changesources(
        self,
        *,
        active: bool | None = None,
        masterid: int | None = None,
        options: QueryOptions | None = None,
        conn: AsyncConnection | None = None,
    ) -> list[ChangeSource]:
        """Change sources owned by ``masterid``, or owned by some master (``active``) or none.

        Ordered by id unless ``options`` say otherwise.
        """
        stmt = apply(_filtered(active, masterid), options, _COLUMNS, default_order=[_cs.c.id])
        async with self._read(conn) as c:
            return [_changesource(r) for r in await c.execute(stmt)]

    async def count_changesources(
        self,
        *,
        active: bool | None = None,
        masterid: int | None = None,
        options: QueryOptions | None = None,
        conn: AsyncConnection | None = None,
    ) -> int:
        """How many change sources get_changesources would return without paging."""
        return await self._count(_filtered(active, masterid), options, _COLUMNS, conn)

    async def set_changesource_master(
        self, changesourceid: int, masterid: int | None, *, conn: AsyncConnection | None = None
    ) -> None:
        """Claim the change source for ``masterid``, or release it (whoever owns it) with None.

        Raises :class:`~buildyard.master.db.errors.AlreadyClaimed` if another master owns it;
        claiming it again for its owner is fine.
        """
        async with self._write(conn) as c:
            if masterid is None:
                await release_ownership(c, _csm, key=_csm.c.changesourceid, objectid=changesourceid)
            else:
                await claim_ownership(
                    c,
                    _csm,
                    key=_csm.c.changesourceid,
                    objectid=changesourceid,
                    masterid=masterid,
                    what="change source",
                )
