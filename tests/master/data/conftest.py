"""Updates over a real database (both backends) and the in-process MQ."""

from __future__ import annotations

import pytest

from buildyard.master.data.updates import Updates
from buildyard.master.db.connector import Database
from buildyard.master.mq.local import LocalMQ
from buildyard.testing.clock import FakeClock


@pytest.fixture
def mq() -> LocalMQ:
    return LocalMQ()


@pytest.fixture
def updates(database: Database, mq: LocalMQ, clock: FakeClock) -> Updates:
    return Updates(db=database, mq=mq, clock=clock)
