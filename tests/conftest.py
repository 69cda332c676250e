"""Shared fixtures: one PostgreSQL server per test session (per xdist worker), a fresh database
per test, and the choice of backend for tests that run on both."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from buildyard.master.db import migrate
from buildyard.master.db.connector import Database
from buildyard.testing.clock import FakeClock
from buildyard.testing.postgres import PostgresServer


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    return postgres_server.create_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database on each backend, as a Buildbot-style db_url."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.sqlite'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def database(db_url: str, clock: FakeClock) -> AsyncIterator[Database]:
    """A fresh database at the current schema, on each backend, with a FakeClock."""
    db = Database(db_url, clock=clock)
    await migrate.upgrade(db)
    try:
        yield db
    finally:
        await db.close()
