"""The reads that services above ``data`` need and that no event carries.

Schedulers see changes through ``changes/<id>/new`` events, but some of their work starts from
the database: a restarted scheduler reloads the changes it classified and had not built yet, and a
buildset needs the ids of the builders it names. :class:`Queries` answers those few questions,
with the same shapes as events and the REST API; it never writes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from buildyard.master.data import shapes
from buildyard.master.db.connector import Database
from buildyard.master.db.schedulers import ANY, Unfiltered

__all__ = ["ANY", "Queries", "Unfiltered"]


class Queries:
    def __init__(self, *, db: Database) -> None:
        self._db = db
        # builder names by id: a builder's row keeps its name for good (a renamed builder is
        # a new row), so a name once read stays right
        self._builder_names: dict[int, str] = {}
        # and the other way: a name's row, once it exists, is that name's for good (no
        # builder row is ever deleted), so a scheduler's builders are read once, not per
        # buildset; a name with no row yet is read again next time
        self._builder_ids: dict[str, int] = {}

    async def get_change(self, changeid: int) -> dict[str, Any] | None:
        """The change in its API shape (the body of its ``new`` event), or None."""
        change = await self._db.changes.get_change(changeid)
        if change is None:
            return None
        stamp = await self._db.sourcestamps.get_sourcestamp(change.sourcestampid)
        return shapes.change(change, stamp)

    async def get_change_classifications(
        self,
        schedulerid: int,
        *,
        branch: str | Unfiltered | None = ANY,
        repository: str | Unfiltered | None = ANY,
        project: str | Unfiltered | None = ANY,
        codebase: str | Unfiltered | None = ANY,
    ) -> dict[int, bool]:
        """The scheduler's classified changes not acted upon yet, ``{changeid: important}`` by
        ascending id; each argument given limits them to that value (``branch=None``: the
        default branch)."""
        return await self._db.schedulers.get_change_classifications(
            schedulerid, branch=branch, repository=repository, project=project, codebase=codebase
        )

    async def scheduler_enabled(self, schedulerid: int) -> bool:
        """Whether the scheduler may start builds (an unknown one counts as enabled)."""
        scheduler = await self._db.schedulers.get_scheduler(schedulerid)
        return scheduler is None or scheduler.enabled

    async def builder_ids(self, names: Iterable[str]) -> list[int]:
        """The ids of the known builders among ``names``, ascending; unknown names are left out
        (as Buildbot does when a scheduler names a builder that does not exist)."""
        known = self._builder_ids
        wanted = set(names)
        missing = [n for n in wanted if n not in known]
        if missing:
            known.update(await self._db.builders.ids_by_name(missing))
        return sorted(known[n] for n in wanted if n in known)

    async def builder_name(self, builderid: int) -> str | None:
        name = self._builder_names.get(builderid)
        if name is None:
            name = await self._db.builders.builder_name(builderid)
            if name is not None:
                self._builder_names[builderid] = name
        return name

    async def get_buildset(self, bsid: int) -> dict[str, Any] | None:
        """The buildset in its API shape (the body of its ``complete`` event), or None."""
        bs = await self._db.buildsets.get_buildset(bsid)
        if bs is None:
            return None
        stamps = [await self._db.sourcestamps.get_sourcestamp(i) for i in bs.sourcestamps]
        return shapes.buildset(bs, [s for s in stamps if s is not None])

    async def builds_of_request(self, buildrequestid: int) -> list[dict[str, Any]]:
        """The builds of a build request (``buildid``, ``complete``, ``results``,
        ``state_string``), by id."""
        builds = await self._db.builds.get_builds(buildrequestid=buildrequestid)
        return [_build(b) for b in builds]

    async def get_build(self, buildid: int) -> dict[str, Any] | None:
        """A build (``buildid``, ``complete``, ``results``, ``state_string``), or None."""
        build = await self._db.builds.get_build(buildid)
        return None if build is None else _build(build)


def _build(build: Any) -> dict[str, Any]:
    return {
        "buildid": build.id,
        "buildrequestid": build.buildrequestid,
        "complete": build.complete_at is not None,
        "results": None if build.results is None else int(build.results),
        "state_string": build.state_string,
    }
