"""``buildyard copy-db``: copy every row of one database to another (SQLite <-> PostgreSQL, and
from the MySQL/MariaDB database of a Buildbot 4.3 master).

The destination gets the schema first (the migrations, as ``create-master`` makes it), then the
tables are copied parents first, each in batches of :data:`BATCH_ROWS` rows read by key, so
memory stays bounded whatever the size of the logs. Rows keep their ids. A foreign key that
points to a table copied later, or to its own table (a buildset's parent build, a change's
parent change, a commit's parent commit), is written NULL with its row and filled in once every
table is there. On PostgreSQL the id sequences are then set past the highest id copied, so the
master goes on numbering where the source left off.

The rows (the emptying of a destination given ``--overwrite``, then every table) are written in
one transaction of the destination: a copy that fails leaves its rows as they were. The schema
is not part of it: a destination without tables gets them first, in transactions of their own,
and keeps them (empty) when the copy then fails. The source is read in one snapshot (a read
transaction; REPEATABLE READ on PostgreSQL).

A MySQL source is a Buildbot 4.3 database, read only (:func:`mysql_source`, :func:`check_buildbot
_source`): its tables are Buildbot 4.3's, which are buildyard's revision ``0001`` (see
:mod:`.adopt`), so its rows go into a destination at that revision, which the caller then brings
to the head. It is read through aiomysql (SQLAlchemy's ``mysql+aiomysql`` dialect), each
connection set read-only at the server, and each table in one streamed query (MySQL has no row
id to page the tables without a primary key by).

The order and the deferred columns are worked out from :mod:`.schema`, so a table added there is
copied without a change here.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from buildyard.master.db.errors import DbError, UnsupportedDatabase
from buildyard.master.db.schema import metadata

#: rows read and written at a time
BATCH_ROWS = 2000
#: differences from the schema named in a refusal
_SHOWN_DIFFERENCES = 10
#: a table this long reports its progress every few batches
_PROGRESS_EVERY = 10


def same_database(a: sa.URL, b: sa.URL) -> bool:
    """Whether the two (normalised, see :func:`..engine.normalize_url`) URLs may name the same
    database: the same SQLite file (however its path is spelled: relative, through symlinks,
    hard links), or on PostgreSQL the same database name and port on hosts that share an
    address (``localhost``, ``127.0.0.1`` and the local socket are one). Doubtful cases count as
    the same: the caller refuses them rather than risk emptying the source."""
    if a.get_backend_name() != b.get_backend_name():
        return False
    if a.get_backend_name() == "sqlite":
        if not a.database or not b.database:
            return a.database == b.database
        try:
            return os.path.samefile(a.database, b.database)
        except OSError:  # one does not exist (yet): the same path is the same file
            return os.path.realpath(a.database) == os.path.realpath(b.database)
    return (
        (a.database or a.username) == (b.database or b.username)
        and _pg_port(a) == _pg_port(b)
        and bool(_pg_addresses(a) & _pg_addresses(b))
    )


def _pg_port(url: sa.URL) -> int:
    port = url.port or url.query.get("port")
    return int(port) if isinstance(port, str | int) and str(port).isdigit() else 5432


_LOCAL = "local"


def _pg_addresses(url: sa.URL) -> set[str]:
    """The addresses of the URL's host; every loopback address, and a Unix socket (no host, or
    one that is a directory path), are all :data:`_LOCAL`."""
    host = url.host or url.query.get("host")
    if not isinstance(host, str) or not host or host.startswith("/"):
        return {_LOCAL}
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return {host.lower()}
    found = set()
    for info in infos:
        address = str(info[4][0])
        loopback = address.startswith("127.") or address == "::1"
        found.add(_LOCAL if loopback else address)
    return found or {host.lower()}


MYSQL_BACKENDS = ("mysql", "mariadb")


def is_mysql(db_url: str) -> bool:
    """Whether ``db_url`` names a MySQL or MariaDB database (any driver suffix)."""
    try:
        return sa.engine.make_url(db_url).get_backend_name() in MYSQL_BACKENDS
    except sa.exc.ArgumentError:
        return False


def mysql_source(db_url: str) -> AsyncEngine:
    """An engine that reads the MySQL database at ``db_url`` (Buildbot's spelling: any
    ``+driver`` suffix, ``mysql://`` included, is replaced by aiomysql), every connection
    read-only and REPEATABLE READ, in utf8mb4 unless the URL names a charset."""
    if importlib.util.find_spec("aiomysql") is None:
        raise UnsupportedDatabase(
            "reading a MySQL database needs the 'mysql' extra: pip install 'buildyard[mysql]'"
        )
    url = sa.engine.make_url(db_url).set(drivername="mysql+aiomysql")
    if "charset" not in url.query:
        url = url.update_query_dict({"charset": "utf8mb4"})
    engine = create_async_engine(url, isolation_level="REPEATABLE READ", pool_size=2)

    @sa.event.listens_for(engine.sync_engine, "connect")
    def _read_only(dbapi_connection: Any, _record: Any) -> None:
        # the server refuses any write in this session's transactions: the site's database
        # cannot be changed by the copy, whatever happens
        cursor = dbapi_connection.cursor()
        cursor.execute("SET SESSION TRANSACTION READ ONLY")
        cursor.close()

    return engine


def check_buildbot_source(conn: sa.Connection) -> None:
    """Refuse (:class:`DbError`) a MySQL source that is not a Buildbot 4.3 database whose tables
    have buildyard's columns; reads only."""
    from buildyard.master.db import adopt

    inspector = sa.inspect(conn)
    tables = set(inspector.get_table_names())
    revision = None
    if "alembic_version" in tables:
        row = conn.execute(sa.text("SELECT version_num FROM alembic_version")).first()
        revision = None if row is None else str(row[0])
    found = adopt.identify(conn, revision)
    if found is None:
        raise DbError(
            "the MySQL database is not a Buildbot database (no Buildbot schema revision in "
            f"alembic_version: {revision!r}); copy-db copies a Buildbot 4.3 database from MySQL"
        )
    if found.revision != adopt.ADOPTABLE:
        raise DbError(
            f"the MySQL database was made by {found.describe()}; copy-db copies the databases "
            f"of Buildbot 4.3 (revision {adopt.ADOPTABLE!r}) from MySQL: upgrade it with "
            "Buildbot 4.3.0's 'buildbot upgrade-master' first, or copy it with Buildbot's own "
            "'buildbot copy-db' and run 'buildyard upgrade-master' on the copy"
        )
    missing = sorted(t.name for t in metadata.sorted_tables if t.name not in tables)
    differences = [f"missing tables: {', '.join(missing)}"] if missing else []
    for table in metadata.sorted_tables:
        if table.name not in tables:
            continue
        have = {c["name"] for c in inspector.get_columns(table.name)}
        want = {c.name for c in table.columns}
        differences += [f"{table.name}.{c} is missing" for c in sorted(want - have)]
        differences += [f"{table.name}.{c} is not Buildbot's" for c in sorted(have - want)]
    if differences:
        shown = differences[:_SHOWN_DIFFERENCES]
        more = len(differences) - len(shown)
        raise DbError(
            f"the MySQL database was made by {found.describe()} but its tables differ from "
            f"that schema ({'; '.join(shown)}{f'; and {more} more' if more else ''}); "
            "refusing to copy it"
        )


@dataclass(frozen=True)
class TablePlan:
    table: sa.Table
    #: nullable foreign-key columns written NULL at first and filled in at the end
    deferred: tuple[str, ...] = ()


@dataclass
class CopyReport:
    rows: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)


def plan(tables: Sequence[sa.Table] | None = None) -> list[TablePlan]:
    """Every table in an order where a row's NOT NULL foreign keys point to rows already
    copied, with the nullable ones that cannot be (cycles, self-references) deferred."""
    remaining = {t.name: t for t in (tables if tables is not None else metadata.sorted_tables)}
    placed: list[TablePlan] = []
    done: set[str] = set()

    def targets(table: sa.Table, *, nullable: bool | None) -> set[str]:
        out = set()
        for fk in table.foreign_keys:
            if nullable is None or fk.parent.nullable == nullable:
                out.add(fk.column.table.name)
        return out - {table.name}

    while remaining:
        # prefer a table whose every parent is there; else one whose required parents are
        ready = [n for n, t in remaining.items() if targets(t, nullable=None) <= done]
        if not ready:
            ready = [n for n, t in remaining.items() if targets(t, nullable=False) <= done]
        if not ready:  # pragma: no cover - the schema has no cycle of NOT NULL keys
            raise DbError(f"the tables {sorted(remaining)} refer to each other: cannot order them")
        name = sorted(ready)[0]
        table = remaining.pop(name)
        deferred = sorted(
            {
                fk.parent.name
                for fk in table.foreign_keys
                if fk.column.table.name == name or fk.column.table.name not in done
            }
        )
        for column in deferred:
            assert table.c[column].nullable, (name, column)
        placed.append(TablePlan(table, tuple(deferred)))
        done.add(name)
    return placed


def _single_pk(table: sa.Table) -> sa.Column[Any] | None:
    pk = list(table.primary_key.columns)
    return pk[0] if len(pk) == 1 else None


def _row_key(table: sa.Table, backend: str) -> sa.ColumnElement[Any]:
    """What a table's rows are read in order of: its primary key, or the row's physical id
    (SQLite's rowid, PostgreSQL's ctid) for the tables without one."""
    pk = _single_pk(table)
    if pk is not None:
        return pk
    name = "rowid" if backend == "sqlite" else "ctid"
    return sa.literal_column(f"{table.name}.{name}")


async def _batches(
    conn: AsyncConnection, table: sa.Table, backend: str, columns: Sequence[str]
) -> AsyncIterator[list[dict[str, Any]]]:
    """The rows of ``table`` (only ``columns``), a batch at a time, in key order."""
    if backend == "mysql":
        # one streamed query (a server-side cursor): the connection serves nothing else until
        # it is read to the end, which copy_rows does before its next read
        stmt = sa.select(*(table.c[c] for c in columns))
        pk = _single_pk(table)
        if pk is not None:
            stmt = stmt.order_by(pk)
        result = await conn.stream(stmt.execution_options(yield_per=BATCH_ROWS))
        async for part in result.partitions(BATCH_ROWS):
            yield [{c: row._mapping[c] for c in columns} for row in part]
        return
    key = _row_key(table, backend)
    physical = _single_pk(table) is None
    last: Any = None
    while True:
        stmt = sa.select(key.label("_key"), *(table.c[c] for c in columns)).order_by(key)
        if last is not None:
            if physical and backend == "postgresql":
                stmt = stmt.where(key > sa.literal_column(_tid(last)))
            else:
                stmt = stmt.where(key > last)
        rows = (await conn.execute(stmt.limit(BATCH_ROWS))).all()
        if not rows:
            return
        last = rows[-1]._key
        yield [{c: row._mapping[c] for c in columns} for row in rows]
        if len(rows) < BATCH_ROWS:
            return


def _tid(value: Any) -> str:
    """A ctid as SQL: asyncpg gives it as ``(page, item)``."""
    page, item = (int(v) for v in value)
    return f"'({page},{item})'::tid"


async def _count(conn: AsyncConnection, table: sa.Table) -> int:
    return int((await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar_one())


async def non_empty_tables(conn: AsyncConnection) -> dict[str, int]:
    """The tables of the schema that hold rows, with how many."""
    counts = {}
    for table in metadata.sorted_tables:
        n = await _count(conn, table)
        if n:
            counts[table.name] = n
    return counts


async def empty_all(conn: AsyncConnection) -> None:
    """Delete every row of every table (children first; self-references cleared first)."""
    order = plan()
    for step in order:
        if step.deferred:
            await conn.execute(step.table.update().values(dict.fromkeys(step.deferred)))
    for step in reversed(order):
        await conn.execute(step.table.delete())


async def _missing_parents(
    conn: AsyncConnection, table: sa.Table, rows: list[dict[str, Any]], skip: set[str]
) -> list[int]:
    """Indexes of ``rows`` with a foreign key (not in ``skip``) whose target row is absent."""
    bad: set[int] = set()
    for fk in table.foreign_keys:
        column = fk.parent.name
        if column in skip:
            continue
        wanted = {r[column] for r in rows if r[column] is not None}
        if not wanted:
            continue
        target = fk.column
        found = set(
            (await conn.execute(sa.select(target).where(target.in_(sorted(wanted))))).scalars()
        )
        bad.update(
            i for i, r in enumerate(rows) if r[column] is not None and r[column] not in found
        )
    return sorted(bad)


@contextlib.asynccontextmanager
async def snapshot(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A read transaction over the whole source, not the store's per-call ones."""
    async with engine.connect() as plain:
        conn = plain
        if engine.dialect.name == "postgresql":
            conn = await plain.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            yield conn


async def copy_rows(
    source: AsyncConnection,
    dest: AsyncConnection,
    *,
    ignore_fk_error_rows: bool = False,
    say: Callable[[str], None] = lambda _line: None,
) -> CopyReport:
    """Copy every table's rows from ``source`` to ``dest`` (which must have the schema and no
    rows); both connections are inside their transactions, which the caller ends."""
    src_backend = source.dialect.name
    dst_backend = dest.dialect.name
    report = CopyReport()
    for step in plan():
        table = step.table
        total = await _count(source, table)
        say(f"copying {table.name}: {total} rows")
        columns = [c.name for c in table.columns]
        copied = skipped = batches = 0
        async for rows in _batches(source, table, src_backend, columns):
            for column in step.deferred:
                for row in rows:
                    row[column] = None
            if ignore_fk_error_rows:
                bad = await _missing_parents(dest, table, rows, set(step.deferred))
                for i in reversed(bad):
                    say(f"  skipping a row of {table.name} whose parent is missing: {rows[i]!r}")
                    del rows[i]
                skipped += len(bad)
            if rows:
                try:
                    await dest.execute(table.insert(), rows)
                except sa.exc.IntegrityError as exc:
                    raise DbError(
                        f"copying {table.name}: {exc.orig} (a row refers to a row the source "
                        "lacks; --ignore-fk-error-rows leaves such rows out)"
                    ) from exc
            copied += len(rows)
            batches += 1
            if batches % _PROGRESS_EVERY == 0:
                say(f"  {table.name}: {copied}/{total} rows")
        report.rows[table.name] = copied
        if skipped:
            report.skipped[table.name] = skipped
    for step in plan():
        if step.deferred:
            await _fill_deferred(source, dest, step, src_backend, say)
    if dst_backend == "postgresql":
        await reset_sequences(dest)
    return report


async def _fill_deferred(
    source: AsyncConnection,
    dest: AsyncConnection,
    step: TablePlan,
    backend: str,
    say: Callable[[str], None],
) -> None:
    table = step.table
    pk = _single_pk(table)
    assert pk is not None, f"{table.name} defers a column but has no single primary key"
    say(f"linking {table.name}: {', '.join(step.deferred)}")
    stmt = (
        table.update()
        .where(pk == sa.bindparam("_pk"))
        .values({c: sa.bindparam(f"_{c}") for c in step.deferred})
    )
    async for rows in _batches(source, table, backend, [pk.name, *step.deferred]):
        wanted = [
            {"_pk": r[pk.name], **{f"_{c}": r[c] for c in step.deferred}}
            for r in rows
            if any(r[c] is not None for c in step.deferred)
        ]
        if wanted:
            # a row left out (--ignore-fk-error-rows) matches nothing; a link to a left-out
            # row is refused by the foreign key like any other
            try:
                await dest.execute(stmt, wanted)
            except sa.exc.IntegrityError as exc:
                raise DbError(f"linking {table.name}: {exc.orig}") from exc


async def reset_sequences(conn: AsyncConnection) -> None:
    """Set each PostgreSQL id sequence so the next id is past the highest in its table."""
    for table in metadata.sorted_tables:
        pk = _single_pk(table)
        if pk is None or not isinstance(pk.type, sa.Integer) or pk.foreign_keys:
            continue
        await conn.execute(
            sa.text(
                f"SELECT setval(pg_get_serial_sequence('{table.name}', '{pk.name}'), "
                f"COALESCE((SELECT MAX({pk.name}) FROM {table.name}), 0) + 1, false)"
            )
        )
