"""SQLAlchemy's aiosqlite adapter, with one thread hop per statement instead of four.

SQLAlchemy's adapter drives an aiosqlite cursor: opening it, ``execute``, ``fetchall`` and
closing it are each a trip to aiosqlite's thread and back (a future, a wake-up of the event
loop). Here a statement is one function run in that thread (cursor, execute, fetch, close), and
the cursor SQLAlchemy sees holds its outcome. On a one-step build's ~110 statements that is
about a quarter of the master's CPU.

It uses two attributes aiosqlite does not document, ``Connection._execute`` (run a function in
the connection's thread) and ``Connection._conn`` (the sqlite3 connection); pyproject pins the
aiosqlite versions it was checked with, and the whole test suite runs through it.
"""

from __future__ import annotations

import collections
import sqlite3
import time
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT
from sqlalchemy.util.concurrency import await_

# what a statement left: description, rowcount, lastrowid, rows
_Outcome = tuple[Any, int, int | None, list[Any]]


class _Done:
    """The finished statement, where SQLAlchemy looks for a DBAPI cursor's attributes."""

    __slots__ = ("arraysize", "description", "lastrowid", "rowcount")

    def __init__(self) -> None:
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self.arraysize = 1

    async def close(self) -> None:
        return None


def _run(raw: sqlite3.Connection, operation: str, parameters: Any, many: bool) -> _Outcome:
    cursor = raw.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        rows = cursor.fetchall() if cursor.description else []
        return cursor.description, cursor.rowcount, cursor.lastrowid, rows
    finally:
        cursor.close()


class OneHopCursor(AsyncAdapt_aiosqlite_cursor):
    __slots__ = ()

    def __init__(self, adapt_connection: Any) -> None:
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = _Done()  # type: ignore[assignment]
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()

    def _hop(self, operation: str, parameters: Any, many: bool) -> None:
        conn: aiosqlite.Connection = self._connection  # type: ignore[assignment]
        try:
            outcome: _Outcome = await_(
                conn._execute(_run, conn._conn, operation, parameters, many)  # type: ignore[no-untyped-call]
            )
        except Exception as error:
            self._adapt_connection._handle_exception(error)
        done: _Done = self._cursor  # type: ignore[assignment]
        done.description, done.rowcount, done.lastrowid, rows = outcome
        self._rows = collections.deque(rows)

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        self._hop(operation, parameters, many=False)

    def executemany(self, operation: Any, seq_of_parameters: Any) -> Any:
        self._hop(operation, seq_of_parameters, many=True)

    async def _async_soft_close(self) -> None:
        return None

    def close(self) -> None:
        self._rows.clear()


class _Connection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = OneHopCursor


def _use_wal(raw: sqlite3.Connection, timeout: float) -> None:
    """Put the database in WAL mode. SQLite may answer "database is locked" at once, without
    waiting out the busy timeout, while another connection is switching the same new file to
    WAL (several masters starting together on a fresh database): retry until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            raw.execute("PRAGMA journal_mode=WAL").fetchall()
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() >= deadline:
                raise
        time.sleep(0.01)  # in the connection's own thread, not the event loop's


class OneHopDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """Pass as ``module=`` to ``create_async_engine("sqlite+aiosqlite://...")``; every
    connection it opens is in WAL mode."""

    def connect(self, *arg: Any, **kw: Any) -> _Connection:
        adapted = super().connect(*arg, **kw)
        conn: aiosqlite.Connection = adapted._connection  # type: ignore[assignment]
        try:
            await_(conn._execute(_use_wal, conn._conn, float(kw.get("timeout", 5.0))))  # type: ignore[no-untyped-call]
        except Exception:
            adapted.close()
            raise
        return _Connection(self, adapted._connection)


def dbapi() -> OneHopDBAPI:
    return OneHopDBAPI(aiosqlite, sqlite3)
