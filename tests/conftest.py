"""Shared fixtures: one PostgreSQL server per test session (per xdist worker), a fresh database
per test, and the choice of backend for tests that run on both."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from buildyard.master.db import migrate
from buildyard.master.db.connector import Database
from buildyard.testing.clock import FakeClock
from buildyard.testing.mysql import MysqlServer, MysqlUnavailable
from buildyard.testing.postgres import PostgresServer


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep each ``xdist_group`` on one xdist worker under ``--dist loadgroup``.

    pytest-xdist (3.8) tells its scheduler a test's group by appending ``@group`` to the test's
    node id, which it does by setting ``item._nodeid``; pytest 9 derives ``nodeid`` from
    ``item._id`` instead, so the suffix is lost, each group is spread over every worker and
    its shared fixtures (stock Buildbot masters, the four database moves) run once per worker.
    This puts the suffix where pytest 9 reads it; where xdist's own works, it does nothing.
    """
    if not getattr(config.option, "loadgroup", False):  # set on xdist's workers only
        return
    for item in items:
        names = {
            str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
            for mark in item.iter_markers("xdist_group")
        }
        if not names:
            continue
        suffix = "@" + "_".join(sorted(names))
        if item.nodeid.endswith(suffix):
            continue
        grouped = item.nodeid + suffix
        ident: Any = getattr(item, "_id", None)
        if ident is not None and hasattr(type(ident), "parse"):
            item._id = type(ident).parse(grouped)
        else:
            item._nodeid = grouped  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mysql_server() -> Iterator[MysqlServer]:
    """A MariaDB server for the session (skipped where its binaries are missing: CI installs
    Debian's mariadb-server, so there it runs)."""
    try:
        server = MysqlServer()
    except MysqlUnavailable as exc:
        pytest.skip(str(exc))
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
