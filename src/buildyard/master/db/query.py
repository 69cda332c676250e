"""Generic query options: the filters, order and paging every collection read accepts.

The data layer turns REST query arguments into a :class:`QueryOptions`; repositories apply it to
their SELECT with :func:`apply`, given the mapping of field names to columns they expose.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement


class Op(enum.StrEnum):
    EQ = "eq"
    NE = "ne"
    LT = "lt"
    LE = "le"
    GT = "gt"
    GE = "ge"
    CONTAINS = "contains"
    IN = "in"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Filter:
    field: str
    op: Op
    values: tuple[Any, ...]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class QueryOptions:
    filters: tuple[Filter, ...] = ()
    # field names; a leading "-" sorts descending
    order: tuple[str, ...] = ()
    limit: int | None = None
    offset: int | None = None


class UnknownField(ValueError):
    pass


class _position(FunctionElement[int]):  # noqa: N801 (a SQL function's name)
    """Where ``needle`` first occurs in ``haystack`` (1-based; 0: nowhere), comparing characters
    exactly on every backend. ``LIKE`` would not: SQLite's ignores ASCII case, PostgreSQL's
    does not, and ``%``/``_`` need escaping."""

    type = sa.Integer()
    inherit_cache = True
    name = "position"


@compiles(_position)
def _position_default(element: _position, compiler: SQLCompiler, **kw: Any) -> str:
    return f"strpos({compiler.process(element.clauses, **kw)})"


@compiles(_position, "sqlite")
def _position_sqlite(element: _position, compiler: SQLCompiler, **kw: Any) -> str:
    return f"instr({compiler.process(element.clauses, **kw)})"


def contains(col: sa.ColumnElement[Any], value: str) -> sa.ColumnElement[bool]:
    """``value`` is a substring of the text column ``col`` (case-sensitive, as Buildbot's
    ``contains`` is on the values it filters in Python); NULL contains nothing."""
    return _position(col, sa.literal(value, sa.Text)) > 0


def _bound(value: Any) -> sa.ColumnElement[Any]:
    return value if isinstance(value, sa.ColumnElement) else sa.literal(value)


def _condition(col: sa.ColumnElement[Any], f: Filter) -> sa.ColumnElement[bool]:
    # booleans are stored as 0/1 small integers; PostgreSQL will not compare those with true/false
    raw = tuple(int(v) if isinstance(v, bool) else v for v in f.values)
    # integers are compared as 64-bit ones: PostgreSQL's INTEGER columns are 32-bit, and a value
    # beyond that (a far-off timestamp) is still a fine bound; its indexes serve int4 vs int8
    wide = isinstance(col.type, sa.Integer)
    vals: tuple[Any, ...] = tuple(
        sa.literal(v, sa.BigInteger) if wide and isinstance(v, int) else v for v in raw
    )
    match f.op:
        case Op.EQ | Op.IN:
            if len(vals) == 1:
                return col.is_(None) if raw[0] is None else col == vals[0]
            return col.in_(vals)
        case Op.NE:
            if len(vals) == 1:
                return col.is_not(None) if raw[0] is None else col != vals[0]
            return col.not_in(vals)
        case Op.LT:
            return col < _bound(vals[0])
        case Op.LE:
            return col <= _bound(vals[0])
        case Op.GT:
            return col > _bound(vals[0])
        case Op.GE:
            return col >= _bound(vals[0])
        case Op.CONTAINS:
            # a substring of a text column, case-sensitive everywhere; a number contains
            # nothing, as in resultspec.FieldFilter.matches
            if not isinstance(col.type, sa.String):
                return sa.false()
            return sa.or_(*(contains(col, str(v)) for v in raw))


def count_of(
    stmt: sa.Select[Any], options: QueryOptions | None, columns: Mapping[str, sa.ColumnElement[Any]]
) -> sa.Select[Any]:
    """SELECT count(*) of the rows ``stmt`` gives under the filters of ``options`` (order and
    paging ignored): the ``meta.total`` of a REST collection."""
    filters = QueryOptions(filters=options.filters) if options else None
    return sa.select(sa.func.count()).select_from(apply(stmt, filters, columns).subquery())


def apply(
    stmt: sa.Select[Any],
    options: QueryOptions | None,
    columns: Mapping[str, sa.ColumnElement[Any]],
    *,
    default_order: Sequence[sa.ColumnElement[Any]] = (),
) -> sa.Select[Any]:
    """Apply filters, order and paging to ``stmt``; unknown field names raise UnknownField."""
    if options is None:
        return stmt.order_by(*default_order)
    for f in options.filters:
        if f.field not in columns:
            raise UnknownField(f.field)
        stmt = stmt.where(_condition(columns[f.field], f))
    order: list[sa.ColumnElement[Any]] = []
    for key in options.order:
        name = key.removeprefix("-")
        if name not in columns:
            raise UnknownField(name)
        # NULL before any value ascending (after, descending) on both backends, as the REST
        # API orders in Python
        col = columns[name]
        order.append(col.desc().nulls_last() if key.startswith("-") else col.asc().nulls_first())
    stmt = stmt.order_by(*(order or default_order))
    if options.limit is not None:
        stmt = stmt.limit(options.limit)
    if options.offset:
        stmt = stmt.offset(options.offset)
    return stmt
