"""Every SQL statement a master sends to SQLite, for tests that count them (tests only)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import sqlalchemy as sa

from buildyard.master.db import sqlite_driver
from buildyard.master.master import BuildMaster


@contextlib.contextmanager
def sqlite_statements(master: BuildMaster, on_statement: Callable[[str], None]) -> Iterator[None]:
    """Call ``on_statement`` with each statement that reaches sqlite3 on ``master``'s database
    while the block runs, prepared ones included (they bypass SQLAlchemy's events): a trace
    callback is set on each connection as a transaction begins on it (the SQLite fast path
    keeps its connections out of the pool) or as one is opened."""
    active = [True]

    def trace(sql: str) -> None:
        if active[0]:
            on_statement(sql)

    begin = sqlite_driver.begin

    async def traced_begin(raw: Any, *, write: bool) -> None:
        sqlite_driver.sqlite_of(raw).set_trace_callback(trace)
        await begin(raw, write=write)

    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        sqlite_driver.sqlite_of(dbapi_conn.driver_connection).set_trace_callback(trace)

    engine = master.db.engine.sync_engine
    sa.event.listen(engine.pool, "connect", on_connect)
    sqlite_driver.begin = traced_begin
    try:
        yield
    finally:
        active[0] = False
        sqlite_driver.begin = begin
        sa.event.remove(engine.pool, "connect", on_connect)
