"""The steps connector: the steps of a build, numbered from 0, with unique names.

A step whose name is taken in its build gets a suffix (``compile_1``, ``compile_2``, ...), cut to
fit the 50-character column, as Buildbot does.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from buildyard.master.db import schema as t
from buildyard.master.db.base import Repository
from buildyard.master.db.errors import DbError
from buildyard.master.db.prepared import Prepared
from buildyard.master.model.results import Results
from buildyard.master.model.steps import Step, StepUrl

MAX_NAME_LENGTH = 50
# insert attempts when racing another writer for a number or name in the same build
_ATTEMPTS = 20

_s = t.steps
_STEP = Prepared(sa.select(_s).where(_s.c.id == sa.bindparam("stepid")))
_OF_BUILD = _s.c.buildid == sa.bindparam("buildid")
# the numbers and names taken in the build: the next number and a unique name, in one read
_TAKEN = Prepared(sa.select(_s.c.number, _s.c.name).where(_OF_BUILD))
_ADD = Prepared(
    _s.insert().values(
        buildid=sa.bindparam("buildid"),
        number=sa.bindparam("number"),
        name=sa.bindparam("name"),
        state_string=sa.bindparam("state_string"),
        urls_json="[]",
        hidden=0,
    )
)
_BY_ID = _s.c.id == sa.bindparam("stepid")
_START = Prepared(_s.update().where(_BY_ID).values(started_at=sa.bindparam("when")))
_START_LOCKED = Prepared(
    _s.update()
    .where(_BY_ID)
    .values(started_at=sa.bindparam("when"), locks_acquired_at=sa.bindparam("when"))
)
_FINISH = Prepared(
    _s.update()
    .where(_BY_ID)
    .values(
        complete_at=sa.bindparam("complete_at"),
        results=sa.bindparam("results"),
        hidden=sa.bindparam("hidden"),
    )
)
# the step's end with its final state string: one statement, not two
_FINISH_WITH_STATE = Prepared(
    _s.update()
    .where(_BY_ID)
    .values(
        complete_at=sa.bindparam("complete_at"),
        results=sa.bindparam("results"),
        hidden=sa.bindparam("hidden"),
        state_string=sa.bindparam("state_string"),
    )
)
_SET_STATE = Prepared(
    _s.update()
    .where(_s.c.id == sa.bindparam("stepid"))
    .values(state_string=sa.bindparam("state_string"))
)


def _step(row: sa.Row[Any]) -> Step:
    return Step(
        id=row.id,
        number=row.number,
        name=row.name,
        buildid=row.buildid,
        started_at=row.started_at,
        locks_acquired_at=row.locks_acquired_at,
        complete_at=row.complete_at,
        state_string=row.state_string,
        results=None if row.results is None else Results(row.results),
        urls=tuple(StepUrl(name=u["name"], url=u["url"]) for u in json.loads(row.urls_json)),
        hidden=bool(row.hidden),
    )


def unique_name(name: str, taken: set[str]) -> str:
    """``name``, or the first of ``name_1``, ``name_2``, ... not in ``taken`` (cut to fit)."""
    if name not in taken:
        return name
    n = 1
    while True:
        suffix = f"_{n}"
        candidate = name[: MAX_NAME_LENGTH - len(suffix)] + suffix
        if candidate not in taken:
            return candidate
        n += 1


class StepsRepository(Repository):
    async def add_step(
        self, buildid: int, name: str, state_string: str, *, conn: AsyncConnection | None = None
    ) -> tuple[int, int, str]:
        """Append a step to the build; returns (stepid, number, the name it got)."""
        if len(name) > MAX_NAME_LENGTH:
            raise ValueError(f"step name {name!r} is longer than {MAX_NAME_LENGTH} characters")
        async with self._write(conn) as c:
            of_build = {"buildid": buildid}
            for _ in range(_ATTEMPTS):
                taken = (await _TAKEN.execute(c, of_build)).all()
                number = max((int(r.number) for r in taken), default=-1) + 1
                got = unique_name(name, {r.name for r in taken})
                try:
                    async with c.begin_nested():
                        added = await _ADD.execute(
                            c,
                            {
                                "buildid": buildid,
                                "number": number,
                                "name": got,
                                "state_string": state_string,
                            },
                        )
                        return added.inserted_id(), number, got
                except sa.exc.IntegrityError as exc:
                    if not await self._build_exists(c, buildid):
                        raise DbError(f"cannot add step {name!r}: no build {buildid}") from exc
                    # another writer took this number or name: retry with fresh values
            raise DbError(f"cannot add step {name!r} to build {buildid}: too many conflicts")

    async def _build_exists(self, c: AsyncConnection, buildid: int) -> bool:
        found = await c.execute(sa.select(t.builds.c.id).where(t.builds.c.id == buildid))
        return found.first() is not None

    async def get_step(
        self,
        stepid: int | None = None,
        *,
        buildid: int | None = None,
        number: int | None = None,
        name: str | None = None,
        conn: AsyncConnection | None = None,
    ) -> Step | None:
        """A step by id, or by ``buildid`` with its ``number`` or ``name``."""
        if stepid is not None:
            async with self._read(conn) as c:
                row = (await _STEP.execute(c, {"stepid": stepid})).first()
            return _step(row) if row else None
        if buildid is not None and number is not None:
            where = sa.and_(_s.c.buildid == buildid, _s.c.number == number)
        elif buildid is not None and name is not None:
            where = sa.and_(_s.c.buildid == buildid, _s.c.name == name)
        else:
            raise ValueError("give stepid, or buildid with number or name")
        async with self._read(conn) as c:
            row = (await c.execute(sa.select(_s).where(where))).first()
        return _step(row) if row else None

    async def get_steps(self, buildid: int, *, conn: AsyncConnection | None = None) -> list[Step]:
        """The build's steps in order."""
        stmt = sa.select(_s).where(_s.c.buildid == buildid).order_by(_s.c.number)
        async with self._read(conn) as c:
            return [_step(r) for r in await c.execute(stmt)]

    async def start_step(
        self,
        stepid: int,
        *,
        started_at: int | None = None,
        locks_acquired: bool = False,
        conn: AsyncConnection | None = None,
    ) -> int:
        """Record the start (now by default); ``locks_acquired`` also sets locks_acquired_at.
        Returns the time recorded."""
        when = self._now() if started_at is None else started_at
        async with self._write(conn) as c:
            if locks_acquired:
                await _START_LOCKED.execute(c, {"stepid": stepid, "when": when})
            else:
                await _START.execute(c, {"stepid": stepid, "when": when})
        return when

    async def set_step_locks_acquired_at(
        self, stepid: int, locks_acquired_at: int, *, conn: AsyncConnection | None = None
    ) -> None:
        async with self._write(conn) as c:
            await c.execute(
                _s.update().where(_s.c.id == stepid).values(locks_acquired_at=locks_acquired_at)
            )

    async def set_step_state_string(
        self, stepid: int, state_string: str, *, conn: AsyncConnection | None = None
    ) -> None:
        async with self._write(conn) as c:
            await _SET_STATE.execute(c, {"stepid": stepid, "state_string": state_string})

    async def add_step_url(
        self, stepid: int, name: str, url: str, *, conn: AsyncConnection | None = None
    ) -> None:
        """Append ``{name, url}`` to the step's URLs unless that exact pair is there already.

        Read-modify-write: the row is locked (PostgreSQL) or the write transaction is exclusive
        (SQLite), so concurrent additions are not lost.
        """
        async with self._write(conn) as c:
            stored = (
                await c.execute(
                    sa.select(_s.c.urls_json).where(_s.c.id == stepid).with_for_update()
                )
            ).scalar()
            if stored is None:
                raise DbError(f"cannot add a URL to step {stepid}: no such step")
            urls = json.loads(stored)
            item = {"name": name, "url": url}
            if item not in urls:
                urls.append(item)
                await c.execute(
                    _s.update().where(_s.c.id == stepid).values(urls_json=json.dumps(urls))
                )

    async def finish_step(
        self,
        stepid: int,
        results: Results,
        *,
        hidden: bool = False,
        state_string: str | None = None,
        conn: AsyncConnection | None = None,
    ) -> int:
        """Record the step's end (now); with ``state_string``, its final state string in the
        same statement. Returns the time recorded."""
        when = self._now()
        params: dict[str, Any] = {
            "stepid": stepid,
            "complete_at": when,
            "results": int(results),
            "hidden": int(hidden),
        }
        async with self._write(conn) as c:
            if state_string is None:
                await _FINISH.execute(c, params)
            else:
                params["state_string"] = state_string
                await _FINISH_WITH_STATE.execute(c, params)
        return when
