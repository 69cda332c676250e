"""The users connector: people known from changes (by VCS attribute) and from the web UI.

A user has a unique ``identifier``, optional web credentials, and at most one attribute per type
(``git`` -> ``"Jane <jane@example.org>"``); an ``(attr_type, attr_data)`` pair names one user.
Change sources on any master may meet the same author at the same moment, so creation by
attribute is arbitrated by the unique indexes.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from buildyard.master.db import schema as t
from buildyard.master.db.arbitration import is_duplicate
from buildyard.master.db.base import Repository, inserted_id
from buildyard.master.db.errors import DbError
from buildyard.master.db.query import QueryOptions, apply
from buildyard.master.model.users import User

_u = t.users
_ui = t.users_info

_COLUMNS: dict[str, sa.ColumnElement[Any]] = {
    "uid": _u.c.uid,
    "identifier": _u.c.identifier,
    "bb_username": _u.c.bb_username,
}

# users.identifier is VARCHAR(255)
IDENTIFIER_LENGTH = 255
_TRAILING_NUMBER = re.compile(r"_([0-9]+)$")


def _check_length(column: sa.Column[str], value: str | None) -> None:
    length = getattr(column.type, "length", None)
    if value is not None and length is not None and len(value) > length:
        raise ValueError(f"{column.name} {value!r} is longer than {length} characters")


def next_identifier(identifier: str) -> str:
    """``identifier`` with its numeric suffix incremented: ``jane`` -> ``jane_2`` -> ``jane_3``."""
    number = 1
    if m := _TRAILING_NUMBER.search(identifier):
        identifier, number = identifier[: m.start()], int(m.group(1))
    suffix = f"_{number + 1}"
    return identifier[: IDENTIFIER_LENGTH - len(suffix)] + suffix


class UsersRepository(Repository):
    async def find_user_id_by_attr(
        self,
        identifier: str,
        attr_type: str,
        attr_data: str,
        *,
        conn: AsyncConnection | None = None,
    ) -> int:
        """The uid of the user with this attribute, created if there is none.

        A new user is called ``identifier``, or ``identifier_2``, ``_3``... if that identifier
        belongs to someone else.
        """
        _check_length(_u.c.identifier, identifier)
        _check_length(_ui.c.attr_type, attr_type)
        _check_length(_ui.c.attr_data, attr_data)
        by_attr = sa.select(_ui.c.uid).where(
            _ui.c.attr_type == attr_type, _ui.c.attr_data == attr_data
        )
        async with self._write(conn) as c:
            while True:
                found = (await c.execute(by_attr)).scalar()
                if found is not None:
                    return int(found)
                # the user and its attribute appear together, or not at all
                inserted_user = False
                try:
                    async with c.begin_nested():
                        result = await c.execute(_u.insert().values(identifier=identifier))
                        uid = inserted_id(result)
                        inserted_user = True
                        await c.execute(
                            _ui.insert().values(uid=uid, attr_type=attr_type, attr_data=attr_data)
                        )
                        return uid
                except sa.exc.IntegrityError as exc:
                    if not is_duplicate(exc):
                        raise DbError(f"cannot add user {identifier!r}") from exc
                    if inserted_user:
                        # someone created the user with this attribute meanwhile
                        return int((await c.execute(by_attr)).scalar_one())
                    identifier = next_identifier(identifier)

    async def find_user_by_identifier(
        self, identifier: str, *, conn: AsyncConnection | None = None
    ) -> User | None:
        async with self._read(conn) as c:
            found = await self._users(c, sa.select(_u).where(_u.c.identifier == identifier))
        return found[0] if found else None

    async def get_user(self, uid: int, *, conn: AsyncConnection | None = None) -> User | None:
        async with self._read(conn) as c:
            found = await self._users(c, sa.select(_u).where(_u.c.uid == uid))
        return found[0] if found else None

    async def get_user_by_username(
        self, username: str, *, conn: AsyncConnection | None = None
    ) -> User | None:
        """The user whose web login is ``username``."""
        async with self._read(conn) as c:
            found = await self._users(c, sa.select(_u).where(_u.c.bb_username == username))
        return found[0] if found else None

    async def get_users(
        self, options: QueryOptions | None = None, *, conn: AsyncConnection | None = None
    ) -> list[User]:
        """Every user with its attributes, by uid unless ``options`` say otherwise."""
        stmt = apply(sa.select(_u), options, _COLUMNS, default_order=[_u.c.uid])
        async with self._read(conn) as c:
            return await self._users(c, stmt)

    async def _users(self, c: AsyncConnection, stmt: sa.Select[Any]) -> list[User]:
        rows = (await c.execute(stmt)).all()
        if not rows:
            return []
        attrs: defaultdict[int, dict[str, str]] = defaultdict(dict)
        for r in await c.execute(
            sa.select(_ui).where(_ui.c.uid.in_([r.uid for r in rows])).order_by(_ui.c.attr_type)
        ):
            attrs[r.uid][r.attr_type] = r.attr_data
        return [
            User(
                uid=r.uid,
                identifier=r.identifier,
                bb_username=r.bb_username,
                bb_password=r.bb_password,
                attributes=attrs[r.uid],
            )
            for r in rows
        ]

    async def update_user(
        self,
        uid: int,
        *,
        identifier: str | None = None,
        bb_username: str | None = None,
        bb_password: str | None = None,
        attr_type: str | None = None,
        attr_data: str | None = None,
        conn: AsyncConnection | None = None,
    ) -> None:
        """Change what is given: the identifier, the web credentials (username and password
        together), and the user's attribute of ``attr_type`` (added or replaced).

        Raises DbError when the identifier, username or attribute belongs to another user.
        """
        if (bb_username is None) != (bb_password is None):
            raise ValueError("bb_username and bb_password are set together")
        if (attr_type is None) != (attr_data is None):
            raise ValueError("attr_type and attr_data are set together")
        values = {
            k: v
            for k, v in (
                ("identifier", identifier),
                ("bb_username", bb_username),
                ("bb_password", bb_password),
            )
            if v is not None
        }
        for key, value in values.items():
            _check_length(_u.c[key], value)
        _check_length(_ui.c.attr_type, attr_type)
        _check_length(_ui.c.attr_data, attr_data)
        async with self._write(conn) as c:
            if values:
                try:
                    async with c.begin_nested():
                        await c.execute(_u.update().where(_u.c.uid == uid).values(**values))
                except sa.exc.IntegrityError as exc:
                    raise DbError(f"user {uid}: identifier or username is taken") from exc
            if attr_type is not None:
                await self._set_attr(c, uid, attr_type, attr_data or "")

    async def _set_attr(self, c: AsyncConnection, uid: int, attr_type: str, attr_data: str) -> None:
        update = (
            _ui.update()
            .where(_ui.c.uid == uid, _ui.c.attr_type == attr_type)
            .values(attr_data=attr_data)
        )
        insert = _ui.insert().values(uid=uid, attr_type=attr_type, attr_data=attr_data)
        error: sa.exc.IntegrityError | None = None
        # The second round runs when the first lost a race to an insert of the same attribute
        # type for this user (the UPDATE then finds it); a pair owned by another user fails both.
        for _attempt in range(2):
            try:
                async with c.begin_nested():
                    if (await c.execute(update)).rowcount == 0:
                        await c.execute(insert)
                    return
            except sa.exc.IntegrityError as exc:
                if not is_duplicate(exc):
                    raise DbError(f"user {uid} does not exist") from exc
                error = exc
        raise DbError(f"user {uid}: {attr_type} {attr_data!r} belongs to another user") from error

    async def remove_user(self, uid: int, *, conn: AsyncConnection | None = None) -> None:
        """Delete the user, its attributes and its links to changes (the changes stay)."""
        async with self._write(conn) as c:
            for table in (_ui, t.change_users, _u):
                await c.execute(table.delete().where(table.c.uid == uid))
