"""Engines for the two supported backends, and the transaction discipline of the store.

* ``db_url`` takes Buildbot's spellings: ``sqlite:///state.sqlite`` (relative to the master's
  directory), ``sqlite://`` (in memory), ``postgresql://user@host/db`` (any ``+driver`` suffix is
  replaced by asyncpg). MySQL is not supported (``copy-db`` reads a Buildbot 4.3 database
  there: :mod:`.copy`).
* SQLite runs in WAL mode with foreign keys on. Write transactions start with ``BEGIN
  IMMEDIATE`` so two writers queue on the busy timeout instead of failing on a lock upgrade;
  read transactions start with a plain ``BEGIN`` and see a consistent snapshot.
"""

from __future__ import annotations

import contextlib
import itertools
import sqlite3
import weakref
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.util.concurrency import greenlet_spawn

from buildyard.master.db import sqlite_driver
from buildyard.master.db.errors import DbError, UnsupportedDatabase

# how long a SQLite statement waits for a lock another connection holds
SQLITE_BUSY_TIMEOUT_MS = 30_000
_WRITE = "buildyard_write"


def normalize_url(db_url: str, *, basedir: Path | None = None) -> sa.URL:
    """The async SQLAlchemy URL for a Buildbot-style ``db_url``."""
    try:
        url = make_url(db_url)
    except sa.exc.ArgumentError as exc:
        raise UnsupportedDatabase(f"db_url {db_url!r} is not a database URL: {exc}") from exc
    backend = url.get_backend_name()
    if backend == "sqlite":
        database = url.database
        if database and database != ":memory:" and not Path(database).is_absolute():
            database = str((basedir or Path.cwd()) / database)
        return url.set(drivername="sqlite+aiosqlite", database=database)
    if backend in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+asyncpg")
    way_on = (
        " (to move a Buildbot 4.3 database off MySQL, copy it with "
        "'buildyard copy-db MYSQL_URL DEST_URL' to an SQLite or PostgreSQL URL (the 'mysql' "
        "extra: pip install 'buildyard[mysql]') and point c['db'] there)"
        if backend in ("mysql", "mariadb")
        else ""
    )
    raise UnsupportedDatabase(
        f"db_url {db_url!r}: backend {backend!r} is not supported; use sqlite or postgresql{way_on}"
    )


def sync_url(url: sa.URL) -> sa.URL:
    """The same database through a synchronous driver (used nowhere at run time; for tools)."""
    if url.get_backend_name() == "sqlite":
        return url.set(drivername="sqlite")
    return url.set(drivername="postgresql+psycopg")


def make_engine(
    url: sa.URL, *, sqlite_timeout: float = SQLITE_BUSY_TIMEOUT_MS / 1000, **kwargs: Any
) -> AsyncEngine:
    """The engine for ``url``; on SQLite a statement waits up to ``sqlite_timeout`` seconds for
    a lock another connection holds (without blocking the event loop) before it fails."""
    if url.get_backend_name() == "sqlite":
        # an in-memory database would be empty on every pooled connection: Database maps
        # "sqlite://" to a private temp file before it gets here
        if not url.database or url.database == ":memory:":
            raise UnsupportedDatabase("make_engine needs a SQLite file, not an in-memory database")
        engine = create_async_engine(
            url,
            module=sqlite_driver.dbapi(),
            connect_args={"timeout": sqlite_timeout},
            **kwargs,
        )
        _configure_sqlite(engine)
        return engine
    return create_async_engine(url, pool_size=10, max_overflow=20, **kwargs)


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # take BEGIN into our own hands (pysqlite's implicit transactions defeat IMMEDIATE)
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # (WAL mode, and no busy timeout: sqlite_driver sets them as it opens the connection)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        if sqlite_driver.in_transaction(conn.connection.driver_connection):
            return  # the fast path began it (sqlite_driver.begin)
        write = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    @event.listens_for(engine.sync_engine, "engine_disposed")
    def _on_dispose(sync: sa.Engine) -> None:
        for conn in _IDLE.pop(sync, ()):
            conn.close()


_CONNECT_ERRORS = (OSError, sa.exc.OperationalError, sa.exc.InterfaceError)


@contextlib.asynccontextmanager
async def _connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection; failing to get one is a DbError naming the database (not a traceback
    from the driver)."""
    connected = False
    try:
        async with engine.connect() as conn:
            connected = True
            yield conn
    except _CONNECT_ERRORS as exc:
        if connected:
            raise
        where = engine.url.render_as_string(hide_password=True)
        raise DbError(f"cannot connect to the database {where}: {exc}") from exc


@contextlib.asynccontextmanager
async def write_transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection inside a write transaction: committed on exit, rolled back on error."""
    if engine.dialect.name == "sqlite":
        async with _sqlite_transaction(engine, write=True) as conn:
            yield conn
        return
    async with _connection(engine) as raw:
        conn = await raw.execution_options(**{_WRITE: True})
        async with conn.begin():
            yield conn


@contextlib.asynccontextmanager
async def read_transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection inside a read-only snapshot."""
    if engine.dialect.name == "sqlite":
        async with _sqlite_transaction(engine, write=False) as conn:
            yield conn
        return
    async with _connection(engine) as conn, conn.begin():
        yield conn


# -- SQLite's fast path -----------------------------------------------------------------------
#
# sqlite_driver runs statements on the event loop, so SQLAlchemy's async machinery around them
# (a greenlet per call, a task to close each connection, the pool's checkout and reset) is all
# that is left, and it cost several times the statements: an empty transaction ~300 us of CPU.
# Here a transaction takes a SQLAlchemy Connection kept open between transactions, waits for
# the database lock on the loop as it begins (sqlite_driver.begin), and its statements run
# straight on that Connection: the lock is already held, so none of them waits.

# idle Connections of each engine, reused by the next transaction; closed when it is disposed
_IDLE: weakref.WeakKeyDictionary[sa.Engine, list[sa.Connection]] = weakref.WeakKeyDictionary()
# more idle ones than this are closed (transactions overlap only when one awaits something else)
_IDLE_MAX = 8


class _SQLiteConnection(AsyncConnection):
    """An AsyncConnection whose ``execute`` runs the statement at once on its Connection
    (everything else is AsyncConnection's own)."""

    async def execute(
        self,
        statement: sa.Executable,
        parameters: Any = None,
        *,
        execution_options: Any = None,
    ) -> sa.CursorResult[Any]:
        sync = self.sync_connection
        assert sync is not None
        if execution_options is None:
            return sync.execute(statement, parameters)
        return sync.execute(statement, parameters, execution_options=execution_options)

    def begin_nested(self) -> Any:
        sync = self.sync_connection
        assert sync is not None
        return _Savepoint(sync)


def sqlite_of(conn: AsyncConnection) -> sqlite3.Connection | None:
    """The sqlite3 connection under a transaction of the fast path (None for any other)."""
    if type(conn) is not _SQLiteConnection:
        return None
    sync = conn.sync_connection
    assert sync is not None
    return sqlite_driver.sqlite_of(sync.connection.driver_connection)


class _Savepoint:
    """``async with conn.begin_nested():`` on the fast path: SAVEPOINT, then RELEASE, or
    ROLLBACK TO (and RELEASE) on an error, straight on the sqlite3 connection. SQLAlchemy's
    own nested transaction cost ~1 ms of CPU each through its events and bookkeeping, and a
    build takes two (its claim, its number); its Connection needs no word of them."""

    __slots__ = ("_name", "_sqlite")

    def __init__(self, sync: sa.Connection) -> None:
        self._sqlite = sqlite_driver.sqlite_of(sync.connection.driver_connection)
        self._name = f"buildyard_sp_{next(_SAVEPOINTS)}"

    def _run(self, sql: str) -> None:
        try:
            self._sqlite.execute(sql).close()
        except sqlite3.Error as exc:  # as SQLAlchemy would have raised it
            raise sa.exc.DBAPIError.instance(sql, None, exc, sqlite3.Error) from exc

    async def __aenter__(self) -> _Savepoint:
        self._run(f"SAVEPOINT {self._name}")
        return self

    async def __aexit__(self, kind: object, error: object, _traceback: object) -> None:
        if kind is not None:
            self._run(f"ROLLBACK TO SAVEPOINT {self._name}")
        self._run(f"RELEASE SAVEPOINT {self._name}")


# savepoint names, unique within the process (so nested ones never share one)
_SAVEPOINTS = itertools.count(1)


async def _sqlite_checkout(engine: AsyncEngine) -> sa.Connection:
    idle = _IDLE.get(engine.sync_engine)
    while idle:
        conn = idle.pop()
        if not conn.closed and not conn.invalidated:
            return conn
    try:
        # in SQLAlchemy's greenlet: opening a new database may wait for a lock (WAL mode)
        return await greenlet_spawn(engine.sync_engine.connect)
    except _CONNECT_ERRORS as exc:
        where = engine.url.render_as_string(hide_password=True)
        raise DbError(f"cannot connect to the database {where}: {exc}") from exc


def release_cache_memory(engine: AsyncEngine) -> int:
    """Empty the page caches of ``engine``'s idle SQLite connections (``PRAGMA
    shrink_memory``); returns how many there were (0 on PostgreSQL).

    Each connection caches up to 2 MiB of the pages it read; after a start with 10,000
    builders they are the builders' and workers' rows, not read again soon. A later statement
    reads the pages it needs from the file again (which the system's cache still holds)."""
    if engine.dialect.name != "sqlite":
        return 0
    idle = _IDLE.get(engine.sync_engine, ())
    for conn in idle:
        # only memory: a connection that cannot do it now keeps its cache, nothing else
        with contextlib.suppress(sqlite3.Error):
            sqlite_driver.sqlite_of(conn.connection.driver_connection).execute(
                "PRAGMA shrink_memory"
            ).close()
    return len(idle)


def _sqlite_checkin(engine: AsyncEngine, conn: sa.Connection) -> None:
    idle = _IDLE.setdefault(engine.sync_engine, [])
    if conn.closed or conn.invalidated or conn.in_transaction() or len(idle) >= _IDLE_MAX:
        conn.close()
    else:
        idle.append(conn)


@contextlib.asynccontextmanager
async def _sqlite_transaction(
    engine: AsyncEngine, *, write: bool
) -> AsyncIterator[AsyncConnection]:
    conn = await _sqlite_checkout(engine)
    try:
        try:
            await sqlite_driver.begin(conn.connection.driver_connection, write=write)
        except sqlite3.Error as exc:  # as SQLAlchemy would have raised it
            begin = "BEGIN IMMEDIATE" if write else "BEGIN"
            raise sa.exc.DBAPIError.instance(begin, None, exc, sqlite3.Error) from exc
        transaction = conn.begin()  # SQLAlchemy's bookkeeping: _on_begin sees it begun
        try:
            yield _SQLiteConnection(engine, conn)
        except BaseException:
            transaction.rollback()
            raise
        transaction.commit()
    finally:
        _sqlite_checkin(engine, conn)
