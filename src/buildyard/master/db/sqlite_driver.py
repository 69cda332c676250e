"""SQLite under SQLAlchemy's asyncio engine, run on the event loop's own thread.

Why not a thread per connection (aiosqlite, which SQLAlchemy's ``sqlite+aiosqlite`` dialect
drives): a trip to that thread and back (a queue, a future, a wake-up of the event loop through
its self-pipe) costs about 100 us of CPU, while the point queries and small writes a build makes
take a few us inside SQLite. A one-step build makes ~110 statements and ~30 transactions, each
transaction three more trips (BEGIN, COMMIT, the pool's reset), so the trips were most of the
master's CPU.

What keeps the loop from blocking:

- SQLite never waits for a lock here (its busy timeout is 0). A statement that finds the
  database locked fails at once with SQLITE_BUSY, having done nothing, and is retried after an
  ``asyncio.sleep`` (1 ms, doubling up to 20 ms) until the connect ``timeout`` has passed; then
  the error is raised. Meanwhile the loop runs, and with it the transaction holding the lock.
- Writes begin with ``BEGIN IMMEDIATE`` (engine.py), so the write lock is taken by that
  statement or not at all: a later statement of the transaction cannot meet a lock, and a
  retried BEGIN is always safe. In WAL mode readers never wait for writers.
- A long statement still holds the loop for its duration: the master's statements are point
  queries and bounded batches (logs are read and written in chunks).

The dialect stays SQLAlchemy's ``sqlite+aiosqlite`` (its SQL and typing are pysqlite's); only the
DBAPI module changes, passed as ``module=`` to ``create_async_engine``. aiosqlite is not used.
"""

from __future__ import annotations

import asyncio
import collections
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.connectors.asyncio import (
    AsyncAdapt_dbapi_connection,
    AsyncAdapt_dbapi_cursor,
    AsyncAdapt_dbapi_module,
)
from sqlalchemy.util import EMPTY_DICT
from sqlalchemy.util.concurrency import await_, in_greenlet

# the first and the longest pause before a locked statement is tried again, in seconds
RETRY_FIRST = 0.001
RETRY_LONGEST = 0.02


def _busy(error: sqlite3.OperationalError) -> bool:
    """The database was locked (worth trying again), as opposed to any other failure.

    SQLITE_BUSY_SNAPSHOT (a read transaction that tried to write after another connection
    wrote) will not succeed however long one waits: it is not retried."""
    code = getattr(error, "sqlite_errorcode", None)
    if code is None:  # pragma: no cover - Python < 3.11 has no error codes
        return "locked" in str(error)
    return bool(code == sqlite3.SQLITE_BUSY or code == getattr(sqlite3, "SQLITE_BUSY_RECOVERY", -1))


class _Raw:
    """The sqlite3 connection with the retry rule: what ``AdaptedConnection.driver_connection``
    gives to code that asks for the driver's own connection."""

    __slots__ = ("sqlite", "timeout")

    def __init__(self, sqlite: sqlite3.Connection, timeout: float) -> None:
        self.sqlite = sqlite
        self.timeout = timeout

    def run(self, operation: str, parameters: Any, many: bool) -> sqlite3.Cursor:
        """Execute; the cursor holds the result. A locked database is waited for on the
        event loop when SQLAlchemy runs this in its greenlet; on the fast path (outside one,
        see :func:`begin`) the lock was taken when the transaction began, and the error is
        raised at once."""
        cursor = self.sqlite.cursor()
        try:
            _execute(cursor, operation, parameters, many)
            return cursor
        except sqlite3.OperationalError as error:
            if not _busy(error) or not in_greenlet():
                cursor.close()
                raise
        await_(_retrying(self, lambda: _execute(cursor, operation, parameters, many)))
        return cursor


def _execute(cursor: sqlite3.Cursor, operation: str, parameters: Any, many: bool) -> None:
    if many:
        cursor.executemany(operation, parameters)
    elif parameters is None:
        cursor.execute(operation)
    else:
        cursor.execute(operation, parameters)


async def _retrying(raw: _Raw, attempt: Callable[[], object]) -> None:
    """Try ``attempt`` until the database is not locked, sleeping 1 ms doubling up to 20 ms
    in between, for at most the connection's timeout."""
    give_up = time.monotonic() + raw.timeout
    pause = RETRY_FIRST
    while True:
        try:
            attempt()
            return
        except sqlite3.OperationalError as error:
            if not _busy(error) or time.monotonic() >= give_up:
                raise
        await asyncio.sleep(pause)
        pause = min(pause * 2, RETRY_LONGEST)


class _Ready:
    """An awaitable that is already done. SQLAlchemy's async engine insists that executing a
    statement awaits something (else it assumes a synchronous driver by mistake): awaiting this
    satisfies it for two greenlet switches, without a turn of the event loop."""

    __slots__ = ()

    def __await__(self) -> Any:
        return iter(())


_READY = _Ready()


class _Done:
    """A finished statement, where SQLAlchemy looks for a DBAPI cursor's attributes."""

    __slots__ = ("arraysize", "description", "lastrowid", "rowcount")

    def __init__(self) -> None:
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self.arraysize = 1

    async def close(self) -> None:
        return None


class InLoopCursor(AsyncAdapt_dbapi_cursor):
    """Runs a statement to completion as it is executed (all rows fetched), so no SQLite
    statement is left open, holding a read snapshot, between SQLAlchemy's calls."""

    __slots__ = ()

    def __init__(self, adapt_connection: InLoopConnection) -> None:
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = _Done()  # type: ignore[assignment]
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()

    def _run(self, operation: str, parameters: Any, many: bool) -> None:
        raw: _Raw = self._connection  # type: ignore[assignment]
        if in_greenlet():
            await_(_READY)
        try:
            cursor = raw.run(operation, parameters, many)
        except Exception as error:
            self._adapt_connection._handle_exception(error)
        try:
            done: _Done = self._cursor  # type: ignore[assignment]
            done.description = cursor.description
            self._rows = collections.deque(cursor.fetchall() if cursor.description else ())
            done.rowcount = cursor.rowcount
            done.lastrowid = cursor.lastrowid
        except Exception as error:
            self._adapt_connection._handle_exception(error)
        finally:
            cursor.close()

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        self._run(operation, parameters, many=False)

    def executemany(self, operation: Any, seq_of_parameters: Any) -> Any:
        self._run(operation, seq_of_parameters, many=True)

    async def _async_soft_close(self) -> None:
        return None

    def close(self) -> None:
        self._rows.clear()


class InLoopConnection(AsyncAdapt_dbapi_connection):
    __slots__ = ()
    _cursor_cls = InLoopCursor  # type: ignore[assignment]
    # rows are fetched as the statement runs, streamed or not
    _ss_cursor_cls = InLoopCursor  # type: ignore[assignment]

    @property
    def _sqlite(self) -> sqlite3.Connection:
        raw: _Raw = self._connection  # type: ignore[assignment]
        return raw.sqlite

    @property
    def isolation_level(self) -> str | None:
        return self._sqlite.isolation_level

    @isolation_level.setter
    def isolation_level(self, value: str | None) -> None:
        self._sqlite.isolation_level = value  # type: ignore[assignment]

    def create_function(self, *args: Any, **kw: Any) -> None:
        self._sqlite.create_function(*args, **kw)

    def commit(self) -> None:
        # COMMIT can meet a lock only while a checkpoint runs elsewhere: retried like the rest
        if self._sqlite.in_transaction:
            self._execute_plain("COMMIT")

    def rollback(self) -> None:
        if self._sqlite.in_transaction:
            self._execute_plain("ROLLBACK")

    def _execute_plain(self, sql: str) -> None:
        raw: _Raw = self._connection  # type: ignore[assignment]
        try:
            raw.run(sql, None, many=False).close()
        except Exception as error:
            self._handle_exception(error)

    def close(self) -> None:
        self._sqlite.close()

    def terminate(self) -> None:
        self._sqlite.close()


def _use_wal(raw: _Raw) -> None:
    """Put the database in WAL mode. SQLite answers "database is locked" to this at once,
    whatever the busy timeout, while another connection is switching the same new file to
    WAL (several masters starting together on a fresh database): retried like any statement."""
    raw.run("PRAGMA journal_mode=WAL", None, many=False).close()


class InLoopDBAPI(AsyncAdapt_dbapi_module):
    """Pass as ``module=`` to ``create_async_engine("sqlite+aiosqlite://...")``. Every
    connection it opens is in WAL mode and in autocommit mode (the engine issues BEGIN)."""

    paramstyle = "qmark"
    has_stop = True  # connections can be terminated (closed) at once

    def __init__(self) -> None:
        super().__init__(sqlite3, dbapi_module=sqlite3)
        self.sqlite = sqlite3
        for name in (
            "DatabaseError",
            "Error",
            "IntegrityError",
            "NotSupportedError",
            "OperationalError",
            "ProgrammingError",
            "InterfaceError",
            "InternalError",
            "DataError",
            "Warning",
            "sqlite_version",
            "sqlite_version_info",
            "PARSE_COLNAMES",
            "PARSE_DECLTYPES",
            "Binary",
        ):
            setattr(self, name, getattr(sqlite3, name))

    def connect(self, *arg: Any, **kw: Any) -> InLoopConnection:
        timeout = float(kw.pop("timeout", 5.0))
        kw.pop("async_creator_fn", None)
        # the pool may close a connection from a garbage collector's thread
        kw["check_same_thread"] = False
        sqlite = sqlite3.connect(*arg, timeout=0, isolation_level=None, **kw)  # type: ignore[call-overload]
        raw = _Raw(sqlite, timeout)
        try:
            _use_wal(raw)
        except BaseException:
            sqlite.close()
            raise
        return InLoopConnection(self, raw)  # type: ignore[arg-type]


def dbapi() -> InLoopDBAPI:
    return InLoopDBAPI()


async def begin(raw: Any, *, write: bool) -> None:
    """Open a transaction on ``raw`` (the ``driver_connection`` of a connection of this
    module), waiting on the loop for the database lock: a write transaction takes the write
    lock (``BEGIN IMMEDIATE``), a read transaction its snapshot (it reads the header). The
    transaction's statements then meet no lock, so they can run outside SQLAlchemy's greenlet
    (engine.py's fast path)."""
    assert isinstance(raw, _Raw)
    sqlite = raw.sqlite
    if write:
        await _retrying(raw, lambda: sqlite.execute("BEGIN IMMEDIATE").close())
        return
    sqlite.execute("BEGIN").close()
    try:
        await _retrying(raw, lambda: sqlite.execute("PRAGMA schema_version").close())
    except BaseException:
        sqlite.execute("ROLLBACK").close()
        raise


def in_transaction(raw: Any) -> bool:
    """Whether the driver connection ``raw`` is inside a transaction."""
    assert isinstance(raw, _Raw)
    return raw.sqlite.in_transaction


def sqlite_of(raw: Any) -> sqlite3.Connection:
    """The sqlite3 connection of the driver connection ``raw``."""
    assert isinstance(raw, _Raw)
    return raw.sqlite
