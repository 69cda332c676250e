"""Prepared statements: built once with SQLAlchemy Core, run straight on sqlite3 on SQLite.

The build pipeline runs the same few dozen statements over and over (a build's row by id, its
step, its request...). Through SQLAlchemy each costs, in CPU: ~120 us when the statement is built
for the call, ~38 us when it is built once and given its parameters, and 1.4 us for sqlite3
itself. A :class:`Prepared` statement is built once (module level, with ``sa.bindparam``), and
compiled once per dialect; on SQLite, inside a transaction of engine.py's fast path, it runs on
the sqlite3 connection with the compiled SQL and its parameters in order, and its rows are
tuples with named fields. Anywhere else (PostgreSQL, or a connection of another kind) it is
plain ``conn.execute``.

Only statements SQLAlchemy would pass through untouched qualify: no type that converts values
on the way in or out (``Boolean``, ``JSON``, ``DateTime``...; ``LargeBinary`` only wraps bytes,
which sqlite3 takes and gives as they are) and no expanding ``IN``;
:class:`Prepared` refuses others when it compiles them, so a wrong use fails in every test.
Errors are SQLAlchemy's (``sa.exc.IntegrityError``...), as callers expect.
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from buildyard.master.db.engine import sqlite_of


class _Compiled(NamedTuple):
    sql: str
    # for each positional parameter: its bind name, whether the call gives it, else its value
    plan: tuple[tuple[str, bool, Any], ...]
    # the class of a result row (None for a statement that returns nothing)
    row: Any


def _row_class(fields: list[str]) -> Any:
    return collections.namedtuple("Row", fields, rename=True)


def _as_is(type_: Any) -> bool:
    """Whether sqlite3 takes and gives values of this type as they are, whatever SQLAlchemy's
    processors do: blobs are ``bytes`` both ways (the processors only wrap them)."""
    return isinstance(type_, sa.LargeBinary)


class Prepared:
    __slots__ = ("_sqlite", "stmt")

    def __init__(self, stmt: sa.Select[Any] | sa.Insert | sa.Update | sa.Delete) -> None:
        self.stmt = stmt
        self._sqlite: _Compiled | None = None

    def _compile_sqlite(self, dialect: sa.Dialect) -> _Compiled:
        compiled: Any = self.stmt.compile(dialect=dialect)
        binds = compiled.binds
        if any(not _as_is(binds[name].type) for name in compiled._bind_processors):
            raise TypeError(f"not a statement to prepare (values are converted): {compiled}")
        names = tuple(compiled.positiontup or ())
        for name in names:
            if binds[name].expanding:
                raise TypeError(f"not a statement to prepare (expanding IN): {compiled}")
        # sa.bindparam("name") is given at each call; a literal (col == 3) is fixed
        plan = tuple(
            (name, True, None)
            if binds[name].required
            else (name, False, binds[name].effective_value)
            for name in names
        )
        row: Any = None
        columns = compiled._result_columns
        if columns:
            for column in columns:
                processor = column[3]._cached_result_processor(dialect, None)
                if processor is not None and not _as_is(column[3]):
                    raise TypeError(f"not a statement to prepare (results converted): {compiled}")
            row = _row_class([c[0] for c in columns])
        self._sqlite = _Compiled(str(compiled), plan, row)
        return self._sqlite

    async def execute(
        self, conn: AsyncConnection, params: Mapping[str, Any] | None = None
    ) -> Result:
        raw = sqlite_of(conn)
        if raw is None:
            return _Wrapped(await conn.execute(self.stmt, dict(params or {})))
        compiled = self._sqlite or self._compile_sqlite(conn.dialect)
        given = params or {}
        try:
            values = [given[name] if need else value for name, need, value in compiled.plan]
        except KeyError as missing:
            raise sa.exc.ArgumentError(f"no value for parameter {missing} of {self.stmt}") from None
        try:
            cursor = raw.execute(compiled.sql, values)
            rows = cursor.fetchall() if compiled.row is not None else []
            count, lastrowid = cursor.rowcount, cursor.lastrowid
            cursor.close()
        except sqlite3.Error as exc:
            raise sa.exc.DBAPIError.instance(compiled.sql, values, exc, sqlite3.Error) from exc
        make = compiled.row
        return _Rows([make._make(r) for r in rows] if make is not None else [], count, lastrowid)

    async def execute_many(
        self, conn: AsyncConnection, params: Sequence[Mapping[str, Any]]
    ) -> None:
        """The statement (an INSERT, UPDATE or DELETE) once for each set of parameters."""
        if not params:
            return
        raw = sqlite_of(conn)
        if raw is None:
            await conn.execute(self.stmt, [dict(p) for p in params])
            return
        compiled = self._sqlite or self._compile_sqlite(conn.dialect)
        if compiled.row is not None:
            raise TypeError(f"execute_many is for statements without rows: {compiled.sql}")
        try:
            values = [
                [given[name] if need else value for name, need, value in compiled.plan]
                for given in params
            ]
        except KeyError as missing:
            raise sa.exc.ArgumentError(f"no value for parameter {missing} of {self.stmt}") from None
        try:
            raw.executemany(compiled.sql, values).close()
        except sqlite3.Error as exc:
            raise sa.exc.DBAPIError.instance(compiled.sql, values, exc, sqlite3.Error) from exc


class Result:
    """What a prepared statement gives back: its rows and its row count."""

    rowcount: int

    def all(self) -> Sequence[Any]:
        raise NotImplementedError

    def first(self) -> Any:
        rows = self.all()
        return rows[0] if rows else None

    def scalar(self) -> Any:
        row = self.first()
        return None if row is None else row[0]

    def scalars(self) -> list[Any]:
        return [row[0] for row in self.all()]

    def inserted_id(self) -> int:
        """The primary key of the row an INSERT just added."""
        raise NotImplementedError


class _Rows(Result):
    __slots__ = ("_lastrowid", "_rows", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int, lastrowid: int | None) -> None:
        self._rows = rows
        self.rowcount = rowcount
        self._lastrowid = lastrowid

    def all(self) -> Sequence[Any]:
        return self._rows

    def inserted_id(self) -> int:
        assert self._lastrowid is not None
        return self._lastrowid


class _Wrapped(Result):
    __slots__ = ("_result", "_rows", "rowcount")

    def __init__(self, result: sa.CursorResult[Any]) -> None:
        self._result = result
        self.rowcount = result.rowcount
        self._rows: Sequence[Any] | None = None

    def all(self) -> Sequence[Any]:
        if self._rows is None:
            self._rows = self._result.all() if self._result.returns_rows else []
        return self._rows

    def inserted_id(self) -> int:
        key = self._result.inserted_primary_key
        assert key is not None
        return int(key[0])
