"""A fresh database with the full schema, on each backend, with a FakeClock."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from buildyard.master.db.connector import Database
from buildyard.master.db.schema import metadata
from buildyard.testing.clock import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def database(db_url: str, clock: FakeClock) -> AsyncIterator[Database]:
    db = Database(db_url, clock=clock)
    async with db.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    try:
        yield db
    finally:
        await db.close()
