"""How repositories let unique indexes arbitrate between concurrent writers (docs/database.md).

Several masters share one database, so "read, then write if absent" is never enough: two masters
can both read "absent". Every helper here INSERTs inside a savepoint and, when the unique index
says another writer got there first, rolls back only the savepoint and reads the winner's row.
The surrounding transaction stays usable, so callers may pass their own connection.

On SQLite write transactions are serialised (``BEGIN IMMEDIATE``), so the conflict branches only
run on PostgreSQL; they are still the only code path that keeps both backends correct.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from buildyard.master.db.base import inserted_id
from buildyard.master.db.errors import AlreadyClaimed, DbError

_SQLITE_DUPLICATES = ("SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY")


def is_duplicate(exc: sa.exc.IntegrityError) -> bool:
    """Whether a unique index (or primary key) refused the row, as opposed to a foreign key or
    NOT NULL constraint: only the former means that another writer got there first."""
    orig = exc.orig
    if getattr(orig, "sqlstate", None) == "23505":  # PostgreSQL unique_violation
        return True
    return getattr(orig, "sqlite_errorname", None) in _SQLITE_DUPLICATES


def _refused(table: sa.Table, exc: sa.exc.IntegrityError) -> DbError:
    return DbError(f"{table.name}: row refused: {exc.orig}")


async def find_or_create_id(
    c: AsyncConnection,
    table: sa.Table,
    *,
    where: sa.ColumnElement[bool],
    values: Mapping[str, Any],
) -> int:
    """The id of the row matching ``where``, inserted from ``values`` if there is none.

    ``where`` must select by a unique index, so that a concurrent insert of the same row fails.
    """
    select = sa.select(table.c.id).where(where)
    found = (await c.execute(select)).scalar()
    if found is not None:
        return int(found)
    try:
        async with c.begin_nested():
            result = await c.execute(table.insert().values(**values))
            return inserted_id(result)
    except sa.exc.IntegrityError as exc:
        if not is_duplicate(exc):
            raise _refused(table, exc) from exc
        return int((await c.execute(select)).scalar_one())


async def insert_ignoring_duplicates(
    c: AsyncConnection, table: sa.Table, rows: Sequence[Mapping[str, Any]]
) -> None:
    """Insert ``rows``, skipping those a unique index says exist already.

    Any other refusal (a foreign key naming a missing row) raises DbError.

    All rows go in one statement; only if that conflicts is each row retried in a savepoint of
    its own, so leave out the rows you know exist and keep the retries for real races.
    """
    if not rows:
        return
    try:
        async with c.begin_nested():
            await c.execute(table.insert(), [dict(r) for r in rows])
            return
    except sa.exc.IntegrityError as exc:
        if len(rows) == 1:
            if is_duplicate(exc):
                return
            raise _refused(table, exc) from exc
    for row in rows:
        try:
            async with c.begin_nested():
                await c.execute(table.insert().values(**row))
        except sa.exc.IntegrityError as exc:
            if not is_duplicate(exc):
                raise _refused(table, exc) from exc


async def claim_ownership(
    c: AsyncConnection,
    table: sa.Table,
    *,
    key: sa.Column[int],
    objectid: int,
    masterid: int,
    what: str,
) -> None:
    """Make ``masterid`` the owner of ``objectid`` in an ownership table keyed by ``key``.

    The key is the table's primary key, so at most one master owns an object. Claiming what one
    already owns is fine; owned by another master raises :class:`AlreadyClaimed`. A missing
    object or master raises :class:`DbError`.
    """
    owner = sa.select(table.c.masterid).where(key == objectid)
    error: sa.exc.IntegrityError | None = None
    # One retry: the owner may release between our failed INSERT and the look-up.
    for _attempt in range(2):
        try:
            async with c.begin_nested():
                await c.execute(table.insert().values({key.name: objectid, "masterid": masterid}))
                return
        except sa.exc.IntegrityError as exc:
            if not is_duplicate(exc):
                # the object or the master does not exist
                raise _refused(table, exc) from exc
            current = (await c.execute(owner)).scalar()
            if current == masterid:
                return
            if current is not None:
                raise AlreadyClaimed(
                    f"{what} {objectid} is already owned by master {current}"
                ) from exc
            error = exc
    # the owner released it twice between our INSERT and our look-up: a busy object; try later
    raise AlreadyClaimed(
        f"{what} {objectid} changed owner while master {masterid} claimed it"
    ) from error


async def release_ownership(
    c: AsyncConnection, table: sa.Table, *, key: sa.Column[int], objectid: int
) -> None:
    """Leave ``objectid`` without an owner (whoever held it)."""
    await c.execute(table.delete().where(key == objectid))
