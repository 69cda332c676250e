"""Updates over a real database (both backends) and the in-process MQ."""

from __future__ import annotations

import pytest

from buildyard.master.data.updates import Updates
from buildyard.master.db.connector import Database
from buildyard.master.mq.local import LocalMQ
from buildyard.testing.clock import FakeClock
from tests.master.db.conftest import clock, database  # noqa: F401  (fixtures)


@pytest.fixture
def mq() -> LocalMQ:
    return LocalMQ()


@pytest.fixture
def updates(database: Database, mq: LocalMQ, clock: FakeClock) -> Updates:  # noqa: F811
    return Updates(db=database, mq=mq, clock=clock)
