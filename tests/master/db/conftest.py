"""A fresh database on each backend, its schema built by the migrations, with a FakeClock."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from buildyard.master.db import migrate
from buildyard.master.db.connector import Database
from buildyard.testing.clock import FakeClock

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def database(db_url: str, clock: FakeClock) -> AsyncIterator[Database]:
    db = Database(db_url, clock=clock)
    try:
        await migrate.upgrade(db)
        yield db
    finally:
        await db.close()
