"""Rows the connector tests need as context (masters, builders, workers, requests, builds),
inserted with plain SQLAlchemy Core so that each test exercises only its own repository."""

from __future__ import annotations

from typing import TYPE_CHECKING

from buildyard.master.db import schema as t
from buildyard.master.db.base import inserted_id
from buildyard.master.db.hashes import name_hash

if TYPE_CHECKING:
    from buildyard.master.db.connector import Database


async def add_master(database: Database, name: str = "host:/srv/m") -> int:
    async with database.transaction() as c:
        result = await c.execute(
            t.masters.insert().values(name=name, name_hash=name_hash(name), active=1, last_active=0)
        )
        return inserted_id(result)


async def add_builder(database: Database, name: str = "b") -> int:
    async with database.transaction() as c:
        result = await c.execute(t.builders.insert().values(name=name, name_hash=name_hash(name)))
        return inserted_id(result)


async def add_worker(database: Database, name: str = "w") -> int:
    async with database.transaction() as c:
        return inserted_id(await c.execute(t.workers.insert().values(name=name, info="{}")))


async def add_sourcestamp(
    database: Database,
    *,
    branch: str | None = "main",
    revision: str | None = None,
    repository: str = "https://git/r",
    codebase: str = "",
) -> int:
    """A stamp row (its hash only has to be unique here)."""
    async with database.transaction() as c:
        result = await c.execute(
            t.sourcestamps.insert().values(
                ss_hash=name_hash(f"{branch}/{revision}/{repository}/{codebase}"),
                branch=branch,
                revision=revision,
                repository=repository,
                codebase=codebase,
                project="",
                created_at=0,
            )
        )
        return inserted_id(result)


async def add_request(
    database: Database, builderid: int, *, ssids: tuple[int, ...] = (), submitted_at: int = 0
) -> tuple[int, int]:
    """A buildset with the given stamps and one incomplete request on ``builderid``:
    (bsid, brid)."""
    async with database.transaction() as c:
        bsid = inserted_id(
            await c.execute(
                t.buildsets.insert().values(submitted_at=submitted_at, complete=0, results=-1)
            )
        )
        for ssid in ssids:
            await c.execute(
                t.buildset_sourcestamps.insert().values(buildsetid=bsid, sourcestampid=ssid)
            )
        brid = inserted_id(
            await c.execute(
                t.buildrequests.insert().values(
                    buildsetid=bsid,
                    builderid=builderid,
                    submitted_at=submitted_at,
                    complete=0,
                    results=-1,
                )
            )
        )
        return bsid, brid


async def add_build(
    database: Database,
    *,
    builderid: int,
    buildrequestid: int,
    masterid: int,
    number: int,
    results: int | None = None,
    complete_at: int | None = None,
    workerid: int | None = None,
) -> int:
    async with database.transaction() as c:
        result = await c.execute(
            t.builds.insert().values(
                number=number,
                builderid=builderid,
                buildrequestid=buildrequestid,
                workerid=workerid,
                masterid=masterid,
                started_at=0,
                complete_at=complete_at,
                locks_duration_s=0,
                state_string="",
                results=results,
            )
        )
        return inserted_id(result)


async def add_step(
    database: Database, buildid: int, *, number: int = 0, started_at: int = 0
) -> int:
    async with database.transaction() as c:
        result = await c.execute(
            t.steps.insert().values(
                number=number,
                name=f"step{number}",
                buildid=buildid,
                started_at=started_at,
                state_string="",
                urls_json="[]",
                hidden=0,
            )
        )
        return inserted_id(result)


async def add_running_step(database: Database) -> tuple[int, int, int]:
    """A master, builder, request, build and step: (builderid, buildid, stepid)."""
    masterid = await add_master(database)
    builderid = await add_builder(database)
    _bsid, brid = await add_request(database, builderid)
    buildid = await add_build(
        database, builderid=builderid, buildrequestid=brid, masterid=masterid, number=1
    )
    return builderid, buildid, await add_step(database, buildid)
