"""The rows a master's configuration creates by name: builders, workers, schedulers and change
sources. A reconfiguration that fails and is rolled back removes the ones it created, so the
database (and the REST API) shows what it showed before.
"""

from __future__ import annotations

import dataclasses

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from buildyard.master.db import schema as t
from buildyard.master.db.base import Repository


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ConfigRows:
    """Ids of rows, by table."""

    builders: frozenset[int] = frozenset()
    workers: frozenset[int] = frozenset()
    schedulers: frozenset[int] = frozenset()
    changesources: frozenset[int] = frozenset()

    def __sub__(self, other: ConfigRows) -> ConfigRows:
        return ConfigRows(
            builders=self.builders - other.builders,
            workers=self.workers - other.workers,
            schedulers=self.schedulers - other.schedulers,
            changesources=self.changesources - other.changesources,
        )


def _unused(table: sa.Table, ids: frozenset[int], *uses: sa.Column[int]) -> sa.Delete:
    """DELETE the rows of ``ids`` that no row refers to through one of ``uses``."""
    stmt = sa.delete(table).where(table.c.id.in_(sorted(ids)))
    for column in uses:
        stmt = stmt.where(~sa.exists().where(column == table.c.id))
    return stmt


class ConfigRowsRepository(Repository):
    async def get_config_rows(self, *, conn: AsyncConnection | None = None) -> ConfigRows:
        async with self._read(conn) as c:

            async def ids(table: sa.Table) -> frozenset[int]:
                return frozenset((await c.execute(sa.select(table.c.id))).scalars())

            return ConfigRows(
                builders=await ids(t.builders),
                workers=await ids(t.workers),
                schedulers=await ids(t.schedulers),
                changesources=await ids(t.changesources),
            )

    async def delete_unused(self, rows: ConfigRows, *, conn: AsyncConnection | None = None) -> None:
        """Delete the rows of ``rows`` that nothing uses: no master configures or runs them, no
        build request, build or connection refers to them. A row in use stays."""
        async with self._write(conn) as c:
            if rows.builders:
                await c.execute(
                    _unused(
                        t.builders,
                        rows.builders,
                        t.builder_masters.c.builderid,
                        t.buildrequests.c.builderid,
                        t.builds.c.builderid,
                    )
                )
            if rows.workers:
                await c.execute(
                    _unused(
                        t.workers,
                        rows.workers,
                        t.configured_workers.c.workerid,
                        t.connected_workers.c.workerid,
                        t.builds.c.workerid,
                    )
                )
            if rows.schedulers:
                await c.execute(
                    _unused(
                        t.schedulers,
                        rows.schedulers,
                        t.scheduler_masters.c.schedulerid,
                        t.scheduler_changes.c.schedulerid,
                    )
                )
            if rows.changesources:
                await c.execute(
                    _unused(
                        t.changesources, rows.changesources, t.changesource_masters.c.changesourceid
                    )
                )
