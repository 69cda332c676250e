"""REST query arguments -> a result spec: filters, fields, order, limit, offset.

Implements docs/rest-api.md, "Query arguments". Field values are parsed by the resource's
field types.
Filters and order on fields the database stores are pushed into SQL
(:meth:`ResultSpec.query_options`); the rest is applied to the rows in Python
(:meth:`ResultSpec.apply`).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from buildyard.master.data.errors import InvalidQuery
from buildyard.master.db.query import Filter, Op, QueryOptions


class FieldType(enum.Enum):
    INTEGER = "integer"
    STRING = "string"
    BOOLEAN = "boolean"
    IDENTIFIER = "identifier"
    DATETIME = "datetime"
    OTHER = "other"  # lists, objects: selectable, not filterable by value


# the integers a query argument may give (filters compare them as 64-bit integers)
MAX_INT = 2**63 - 1
MIN_INT = -(2**63)
# what an integer column holds on every backend (PostgreSQL's INTEGER): ids, priorities
MAX_COLUMN_INT = 2**31 - 1
MIN_COLUMN_INT = -(2**31)
_TRUE = {"on", "true", "yes", "1"}
_FALSE = {"off", "false", "no", "0"}
IDENTIFIER_RE = re.compile(r"^[a-zA-Z_-][a-zA-Z0-9._-]*$")
_ONE_VALUE_OPS = {"eq", "ne", "lt", "le", "gt", "ge", "contains", "in", "notin"}
_MANY_VALUE_OPS = {"eq", "ne", "contains", "in", "notin"}
_RESERVED = {"field", "limit", "offset", "order", "property"}


def parse_value(kind: FieldType, raw: str, *, field: str) -> Any:
    if kind in (FieldType.INTEGER, FieldType.DATETIME):
        try:
            number = int(raw)
        except ValueError:
            raise InvalidQuery(f"invalid integer value {raw!r} for field {field!r}") from None
        if not MIN_INT <= number <= MAX_INT:
            raise InvalidQuery(f"integer value {raw!r} for field {field!r} is out of range")
        return number
    if kind is FieldType.BOOLEAN:
        low = raw.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise InvalidQuery(f"invalid boolean value {raw!r} for field {field!r}")
    if kind is FieldType.IDENTIFIER and not IDENTIFIER_RE.match(raw):
        raise InvalidQuery(f"invalid identifier value {raw!r} for field {field!r}")
    if "\x00" in raw:  # no text column holds one (PostgreSQL refuses it even in a query)
        raise InvalidQuery(f"invalid value {raw!r} for field {field!r}: a NUL character")
    return raw


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class FieldFilter:
    field: str
    op: str
    values: tuple[Any, ...]

    def matches(self, value: Any) -> bool:
        vals = self.values
        op = self.op
        if op in ("eq", "in"):
            return value in vals
        if op in ("ne", "notin"):
            return value not in vals
        if op == "contains":
            if isinstance(value, str):
                return any(str(v) in value for v in vals)
            if isinstance(value, (list, tuple)):
                return any(v in value for v in vals)
            return False
        if value is None:
            return False
        target = vals[0]
        try:
            return bool(_COMPARE[op](value, target))
        except TypeError:  # a list or object field compared with a string: no match
            return False


_COMPARE: Mapping[str, Callable[[Any, Any], Any]] = {
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
}


_DB_OPS = {
    "eq": Op.EQ,
    "in": Op.IN,
    "ne": Op.NE,
    "notin": Op.NE,
    "lt": Op.LT,
    "le": Op.LE,
    "gt": Op.GT,
    "ge": Op.GE,
    "contains": Op.CONTAINS,
}


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ResultSpec:
    filters: tuple[FieldFilter, ...] = ()
    fields: tuple[str, ...] | None = None
    order: tuple[str, ...] = ()
    limit: int | None = None
    offset: int | None = None
    properties: tuple[str, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not (self.filters or self.order or self.limit is not None or self.offset)

    def query_options(self, db_fields: Iterable[str]) -> tuple[QueryOptions, ResultSpec] | None:
        """Push everything into SQL when every filtered/ordered field is a column, else None."""
        cols = set(db_fields)
        if any(f.field not in cols for f in self.filters) or any(
            o.removeprefix("-") not in cols for o in self.order
        ):
            return None
        options = QueryOptions(
            filters=tuple(
                Filter(field=f.field, op=_DB_OPS[f.op], values=f.values) for f in self.filters
            ),
            order=self.order,
            limit=self.limit,
            offset=self.offset,
        )
        # what is left to do in Python: only the field selection
        return options, ResultSpec(fields=self.fields)

    def apply(self, items: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
        """Filter, order and page ``items``; returns (page, total before paging)."""
        rows = [i for i in items if all(f.matches(i.get(f.field)) for f in self.filters)]
        for key in reversed(self.order):
            name = key.removeprefix("-")
            # None sorts before any value when ascending
            rows.sort(key=_sort_key(name), reverse=key.startswith("-"))
        total = len(rows)
        start = self.offset or 0
        rows = rows[start : start + self.limit if self.limit is not None else None]
        return [self.select(r) for r in rows], total

    def select(self, item: dict[str, Any]) -> dict[str, Any]:
        if self.fields is None:
            return item
        return {k: v for k, v in item.items() if k in self.fields}


def _sort_key(name: str) -> Callable[[dict[str, Any]], tuple[bool, Any]]:
    # None sorts before any value when ascending; a list or mapping (a buildset's sourcestamps)
    # has no order of its own and sorts by its JSON text, so ordering by it is stable, not a 500
    def key(row: dict[str, Any]) -> tuple[bool, Any]:
        value = row.get(name)
        if isinstance(value, list | tuple | dict):
            value = json.dumps(value, sort_keys=True, default=str)
        return (value is not None, value)

    return key


def parse(args: Mapping[str, Sequence[str]], field_types: Mapping[str, FieldType]) -> ResultSpec:
    """Build a ResultSpec from REST query arguments (each key with its repeated values)."""
    filters: list[FieldFilter] = []
    fields: tuple[str, ...] | None = None
    order: tuple[str, ...] = ()
    limit = offset = None
    properties: tuple[str, ...] = ()
    for key, values in args.items():
        if key == "field":
            for f in values:
                if f not in field_types:
                    raise InvalidQuery(f"no such field {f!r}")
            fields = tuple(values)
        elif key in ("limit", "offset"):
            try:
                number = int(values[-1])
            except ValueError:
                raise InvalidQuery(f"invalid {key} {values[-1]!r}: not an integer") from None
            if not 0 <= number <= MAX_INT:
                raise InvalidQuery(f"invalid {key} {values[-1]!r}: out of range")
            if key == "limit":
                limit = number
            else:
                offset = number
        elif key == "order":
            for o in values:
                if o.removeprefix("-") not in field_types:
                    raise InvalidQuery(f"no such field {o.removeprefix('-')!r} to order by")
            order = tuple(values)
        elif key == "property":
            properties = tuple(values)
        elif "__" in key:
            name, op = key.rsplit("__", 1)
            # unknown field or operator with "__" is silently ignored, as Buildbot does
            if name not in field_types or op not in _ONE_VALUE_OPS:
                continue
            if len(values) > 1 and op not in _MANY_VALUE_OPS:
                raise InvalidQuery(f"operator {op!r} takes one value, got {len(values)}")
            parsed = tuple(parse_value(field_types[name], v, field=name) for v in values)
            filters.append(FieldFilter(field=name, op=op, values=parsed))
        elif key in field_types:
            parsed = tuple(parse_value(field_types[key], v, field=key) for v in values)
            filters.append(FieldFilter(field=key, op="eq", values=parsed))
        else:
            raise InvalidQuery(f"unrecognized query parameter {key!r}")
    if fields is not None:
        for name in [f.field for f in filters] + [o.removeprefix("-") for o in order]:
            if name not in fields:
                raise InvalidQuery(f"field {name!r} is used in a filter or order but not selected")
    assert not (_RESERVED & {f.field for f in filters})
    return ResultSpec(
        filters=tuple(filters),
        fields=fields,
        order=order,
        limit=limit,
        offset=offset,
        properties=properties,
    )
