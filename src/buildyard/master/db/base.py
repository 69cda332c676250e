"""What every repository shares: the engine, the clock, and optional outer transactions.

Every public method takes ``conn=None``: pass a connection to take part in the caller's
transaction (how ``data.updates`` makes one change plus its bookkeeping atomic), or leave it out
and the method runs in a transaction of its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from buildyard.common.clock import Clock
from buildyard.master.db.engine import read_transaction, write_transaction
from buildyard.master.db.query import QueryOptions, count_of


def inserted_id(result: sa.CursorResult[Any]) -> int:
    """The primary key of the row an INSERT just added."""
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


class Repository:
    def __init__(self, *, engine: AsyncEngine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock

    def _now(self) -> int:
        return int(self._clock.now())

    async def _count(
        self,
        stmt: sa.Select[Any],
        options: QueryOptions | None,
        columns: Mapping[str, sa.ColumnElement[Any]],
        conn: AsyncConnection | None,
    ) -> int:
        """How many rows ``stmt`` gives under the filters of ``options``."""
        async with self._read(conn) as c:
            return int((await c.execute(count_of(stmt, options, columns))).scalar_one())

    @contextlib.asynccontextmanager
    async def _write(self, conn: AsyncConnection | None) -> AsyncIterator[AsyncConnection]:
        if conn is not None:
            yield conn
            return
        async with write_transaction(self._engine) as own:
            yield own

    @contextlib.asynccontextmanager
    async def _read(self, conn: AsyncConnection | None) -> AsyncIterator[AsyncConnection]:
        if conn is not None:
            yield conn
            return
        async with read_transaction(self._engine) as own:
            yield own
