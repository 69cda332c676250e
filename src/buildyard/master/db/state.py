"""The state connector: small JSON values that services keep across restarts.

An object is identified by ``(name, class_name)`` (for example a scheduler's name and class) and
gets an id once; its state is a set of named JSON values. Services of different masters may share
an object (the web session secret), so creation is arbitrated by the unique indexes.
"""

from __future__ import annotations

import enum
import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from buildyard.master.db import schema as t
from buildyard.master.db.arbitration import find_or_create_id, is_duplicate
from buildyard.master.db.base import Repository
from buildyard.master.db.errors import DbError

_o = t.objects
_os = t.object_state


class _Missing(enum.Enum):
    MISSING = "missing"


_MISSING = _Missing.MISSING


def _dumps(objectid: int, name: str, value: Any) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"state value {name!r} of object {objectid} is not JSON: {exc}") from exc


def _loads(objectid: int, name: str, value_json: str) -> Any:
    try:
        return json.loads(value_json)
    except ValueError as exc:
        raise DbError(f"stored state {name!r} of object {objectid} is not JSON") from exc


def _value_of(objectid: int, name: str) -> sa.Select[str]:
    return sa.select(_os.c.value_json).where(_os.c.objectid == objectid, _os.c.name == name)


class StateRepository(Repository):
    async def get_object_id(
        self, name: str, class_name: str, *, conn: AsyncConnection | None = None
    ) -> int:
        """The id of the object ``(name, class_name)``, created if it is new."""
        async with self._write(conn) as c:
            return await find_or_create_id(
                c,
                _o,
                where=sa.and_(_o.c.name == name, _o.c.class_name == class_name),
                values={"name": name, "class_name": class_name},
            )

    async def find_objects(
        self, class_prefix: str, *, conn: AsyncConnection | None = None
    ) -> list[tuple[int, str, str]]:
        """``(id, name, class_name)`` of the objects whose class name starts with
        ``class_prefix``, by id."""
        query = (
            sa.select(_o.c.id, _o.c.name, _o.c.class_name)
            .where(_o.c.class_name.startswith(class_prefix, autoescape=True))
            .order_by(_o.c.id)
        )
        async with self._read(conn) as c:
            return [(int(r[0]), str(r[1]), str(r[2])) for r in await c.execute(query)]

    async def get_state(
        self,
        objectid: int,
        name: str,
        default: Any = _MISSING,
        *,
        conn: AsyncConnection | None = None,
    ) -> Any:
        """The value stored as ``name`` for the object, else ``default``.

        Raises KeyError when there is no such value and no default was given.
        """
        async with self._read(conn) as c:
            found = (await c.execute(_value_of(objectid, name))).scalar()
        if found is None:
            if default is _MISSING:
                raise KeyError(f"no state value {name!r} for object {objectid}")
            return default
        return _loads(objectid, name, found)

    async def set_state(
        self, objectid: int, name: str, value: Any, *, conn: AsyncConnection | None = None
    ) -> None:
        """Store ``value`` (JSON-serialisable, else TypeError) as ``name`` for the object."""
        value_json = _dumps(objectid, name, value)
        update = (
            _os.update()
            .where(_os.c.objectid == objectid, _os.c.name == name)
            .values(value_json=value_json)
        )
        async with self._write(conn) as c:
            if (await c.execute(update)).rowcount:
                return
            try:
                async with c.begin_nested():
                    await c.execute(
                        _os.insert().values(objectid=objectid, name=name, value_json=value_json)
                    )
            except sa.exc.IntegrityError as exc:
                if not is_duplicate(exc):
                    raise DbError(f"cannot store state for object {objectid}") from exc
                # inserted concurrently: ours is the later write
                await c.execute(update)

    async def atomic_create_or_get_state(
        self, objectid: int, name: str, value: Any, *, conn: AsyncConnection | None = None
    ) -> Any:
        """The value stored as ``name``; if there is none, store ``value`` and return it.

        When several callers race, all of them get the one value that was stored first. The
        result is what the store holds (``value`` after a JSON round trip: tuples become lists).
        """
        value_json = _dumps(objectid, name, value)
        select = _value_of(objectid, name)
        async with self._write(conn) as c:
            found: str | None = (await c.execute(select)).scalar()
            if found is None:
                try:
                    async with c.begin_nested():
                        await c.execute(
                            _os.insert().values(objectid=objectid, name=name, value_json=value_json)
                        )
                    found = value_json
                except sa.exc.IntegrityError as exc:
                    if not is_duplicate(exc):
                        raise DbError(f"cannot store state for object {objectid}") from exc
                    found = (await c.execute(select)).scalar_one()
        return _loads(objectid, name, found)
