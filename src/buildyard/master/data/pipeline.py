"""The write path of the build pipeline: changes, buildsets and requests, builds, steps, logs.

Part of :class:`~buildyard.master.data.updates.Updates` (the single writer): each method is one
transaction, then the events that announce it, with Buildbot's routing keys
(spec/rest-api.md section 7.3) and the entity's API shape as body.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import structlog

from buildyard.master.data import shapes
from buildyard.master.db.connector import Database
from buildyard.master.db.errors import AlreadyClaimed, BuildsetAlreadyComplete
from buildyard.master.model.buildsets import BuildsetIds
from buildyard.master.model.logs import Log, LogType
from buildyard.master.model.properties import JsonValue, PropertyValue
from buildyard.master.model.results import Results, worst
from buildyard.master.model.sourcestamps import SourceStampSpec
from buildyard.master.mq import keys
from buildyard.master.mq.base import MessageQueue

log = structlog.get_logger(__name__)

_NOT_IDENTIFIER = re.compile(r"[^a-zA-Z0-9_-]")
SLUG_LENGTH = 50


def slugify(name: str) -> str:
    """A log's slug: its name as an identifier (Buildbot's forceIdentifier, 50 characters)."""
    return _NOT_IDENTIFIER.sub("_", name)[:SLUG_LENGTH] or "_"


class PipelineUpdates:
    _db: Database
    _mq: MessageQueue

    # -- changes -------------------------------------------------------------------------------

    async def add_change(
        self,
        *,
        author: str,
        committer: str | None = None,
        files: Sequence[str] = (),
        comments: str = "",
        revision: str | None = None,
        when_timestamp: int | None = None,
        branch: str | None = None,
        category: str | None = None,
        revlink: str | None = "",
        properties: Mapping[str, PropertyValue] | None = None,
        repository: str = "",
        codebase: str = "",
        project: str = "",
    ) -> int:
        """Record a change; announced as ``changes/<id>/new`` with the change as body."""
        changeid = await self._db.changes.add_change(
            author=author,
            committer=committer,
            files=files,
            comments=comments,
            revision=revision,
            when_timestamp=when_timestamp,
            branch=branch,
            category=category,
            revlink=revlink,
            properties=properties,
            repository=repository,
            codebase=codebase,
            project=project,
        )
        change = await self._db.changes.get_change(changeid)
        assert change is not None
        stamp = await self._db.sourcestamps.get_sourcestamp(change.sourcestampid)
        self._mq.produce(("changes", str(changeid), "new"), shapes.change(change, stamp))
        return changeid

    # -- buildsets and build requests -------------------------------------------------------------

    async def add_buildset(
        self,
        *,
        scheduler: str,
        sourcestamps: Sequence[int | SourceStampSpec],
        reason: str,
        properties: Mapping[str, PropertyValue],
        builderids: Sequence[int],
        waited_for: bool = False,
        external_idstring: str | None = None,
        parent_buildid: int | None = None,
        parent_relationship: str | None = None,
        rebuilt_buildid: int | None = None,
        priority: int = 0,
    ) -> BuildsetIds:
        """A buildset and one request per builder; ``buildsets/<id>/new`` (with the
        scheduler's name) then each request's ``new``."""
        ids = await self._db.buildsets.add_buildset(
            sourcestamps=sourcestamps,
            reason=reason,
            properties=properties,
            builderids=builderids,
            waited_for=waited_for,
            external_idstring=external_idstring,
            parent_buildid=parent_buildid,
            parent_relationship=parent_relationship,
            rebuilt_buildid=rebuilt_buildid,
            priority=priority,
        )
        body = await self._buildset_body(ids.bsid)
        self._mq.produce(("buildsets", str(ids.bsid), "new"), {**body, "scheduler": scheduler})
        await self._announce_requests(ids.brids.values(), "new")
        log.info("buildset_added", bsid=ids.bsid, scheduler=scheduler, reason=reason)
        return ids

    async def _buildset_body(self, bsid: int) -> dict[str, Any]:
        bs = await self._db.buildsets.get_buildset(bsid)
        assert bs is not None
        stamps = [await self._db.sourcestamps.get_sourcestamp(i) for i in bs.sourcestamps]
        return shapes.buildset(bs, [s for s in stamps if s is not None])

    async def _announce_requests(self, brids: Iterable[int], event: str) -> None:
        for brid in brids:
            br = await self._db.buildrequests.get_buildrequest(brid)
            if br is None:
                continue
            body = shapes.buildrequest(br)
            for key in keys.buildrequest_event(br.id, br.builderid, br.buildsetid, event):
                self._mq.produce(key, body)

    async def claim_buildrequests(self, brids: Sequence[int], *, masterid: int) -> bool:
        """Claim all of them for this master, or none (False: another master was faster)."""
        try:
            await self._db.buildrequests.claim_buildrequests(brids, masterid)
        except AlreadyClaimed:
            return False
        await self._announce_requests(brids, "claimed")
        return True

    async def unclaim_buildrequests(self, brids: Sequence[int], *, masterid: int) -> None:
        """Give the requests back to the queue (a build could not start, or ended RETRY)."""
        released = await self._db.buildrequests.unclaim_buildrequests(brids, masterid)
        await self._announce_requests(released, "unclaimed")

    async def complete_buildrequests(self, brids: Sequence[int], results: Results) -> None:
        """Complete the requests; a buildset whose requests are all complete completes too,
        with the worst of their results."""
        await self._db.buildrequests.complete_buildrequests(brids, results)
        await self._announce_requests(brids, "complete")
        bsids = set()
        for brid in brids:
            br = await self._db.buildrequests.get_buildrequest(brid)
            if br is not None:
                bsids.add(br.buildsetid)
        for bsid in sorted(bsids):
            await self._maybe_complete_buildset(bsid)

    async def _maybe_complete_buildset(self, bsid: int) -> None:
        if await self._db.buildrequests.incomplete_requests_of_buildset(bsid):
            return
        requests = await self._db.buildrequests.get_buildrequests(bsid=bsid)
        results = worst(r.results for r in requests if r.results is not None)
        try:
            await self._db.buildsets.complete_buildset(bsid, results)
        except BuildsetAlreadyComplete:
            return  # another request's completion got there first
        self._mq.produce(("buildsets", str(bsid), "complete"), await self._buildset_body(bsid))

    # -- builds --------------------------------------------------------------------------------

    async def add_build(
        self,
        *,
        builderid: int,
        buildrequestid: int,
        workerid: int | None,
        masterid: int,
        state_string: str = "created",
    ) -> tuple[int, int]:
        """A new build; returns (buildid, number)."""
        buildid, number = await self._db.builds.add_build(
            builderid=builderid,
            buildrequestid=buildrequestid,
            workerid=workerid,
            masterid=masterid,
            state_string=state_string,
        )
        await self._announce_build(buildid, "new")
        return buildid, number

    async def _announce_build(self, buildid: int, event: str) -> None:
        b = await self._db.builds.get_build(buildid)
        if b is None:
            return
        body = shapes.build(b)
        self._mq.produce(("builders", str(b.builderid), "builds", str(b.number), event), body)
        self._mq.produce(("builds", str(buildid), event), body)
        if b.workerid is not None:
            self._mq.produce(("workers", str(b.workerid), "builds", str(buildid), event), body)

    async def set_build_state_string(self, buildid: int, state_string: str) -> None:
        await self._db.builds.set_build_state_string(buildid, state_string)
        await self._announce_build(buildid, "update")

    async def add_build_locks_duration(self, buildid: int, duration_s: int) -> None:
        await self._db.builds.add_build_locks_duration(buildid, duration_s)
        await self._announce_build(buildid, "update")

    async def set_build_properties(
        self, buildid: int, properties: Mapping[str, tuple[JsonValue, str]]
    ) -> None:
        """Store these properties of the build (the changed ones); one event with them."""
        if not properties:
            return
        await self._db.builds.set_build_properties(buildid, properties)
        self._mq.produce(
            ("builds", str(buildid), "properties", "update"),
            {name: [value, source] for name, (value, source) in properties.items()},
        )

    async def finish_build(self, buildid: int, results: Results) -> None:
        await self._db.builds.finish_build(buildid, results)
        await self._announce_build(buildid, "finished")

    # -- steps ---------------------------------------------------------------------------------

    async def add_step(self, buildid: int, name: str) -> tuple[int, int, str]:
        """A new step at the end of the build; returns (stepid, number, the name it got:
        unique in the build)."""
        stepid, number, got = await self._db.steps.add_step(buildid, name, "pending")
        await self._announce_step(stepid, "new")
        return stepid, number, got

    async def _announce_step(self, stepid: int, event: str) -> None:
        s = await self._db.steps.get_step(stepid)
        if s is None:
            return
        body = shapes.step(s)
        self._mq.produce(("builds", str(s.buildid), "steps", str(stepid), event), body)
        self._mq.produce(("steps", str(stepid), event), body)

    async def start_step(self, stepid: int, *, locks_acquired: bool = False) -> None:
        await self._db.steps.start_step(stepid, locks_acquired=locks_acquired)
        await self._announce_step(stepid, "started")

    async def set_step_locks_acquired_at(self, stepid: int, when: int) -> None:
        await self._db.steps.set_step_locks_acquired_at(stepid, when)
        await self._announce_step(stepid, "updated")

    async def set_step_state_string(self, stepid: int, state_string: str) -> None:
        await self._db.steps.set_step_state_string(stepid, state_string)
        await self._announce_step(stepid, "updated")

    async def add_step_url(self, stepid: int, name: str, url: str) -> None:
        await self._db.steps.add_step_url(stepid, name, url)
        await self._announce_step(stepid, "updated")

    async def finish_step(self, stepid: int, results: Results, *, hidden: bool = False) -> None:
        await self._db.steps.finish_step(stepid, results, hidden=hidden)
        await self._announce_step(stepid, "finished")

    # -- logs ----------------------------------------------------------------------------------

    async def add_log(self, stepid: int, name: str, type: LogType | str) -> int:
        """A new empty log of the step, its slug made from ``name``."""
        logid = await self._db.logs.add_log(stepid, name, slugify(name), type)
        await self._announce_log(logid, "new")
        return logid

    async def _announce_log(self, logid: int, event: str, lg: Log | None = None) -> None:
        if lg is None:
            lg = await self._db.logs.get_log(logid)
        if lg is None:
            return
        body = shapes.log(lg)
        self._mq.produce(("logs", str(logid), event), body)
        self._mq.produce(("steps", str(lg.stepid), "logs", lg.slug, event), body)

    async def append_log(
        self, logid: int, content: str, *, compression: str = "raw"
    ) -> tuple[int, int] | None:
        """Append whole lines (each ending in ``\\n``), big chunks compressed with
        ``compression``; returns their (first, last) numbers."""
        lg = await self._db.logs.append_log(logid, content, compression=compression)
        if lg is None:
            return None
        await self._announce_log(logid, "append", lg)
        return lg.num_lines - content.count("\n"), lg.num_lines - 1

    async def finish_log(self, logid: int) -> None:
        await self._db.logs.finish_log(logid)
        await self._announce_log(logid, "finished")

    async def compress_log(self, logid: int, method: str = "gz") -> int:
        """Store the finished log compressed with ``method`` (c['logCompressionMethod'])."""
        return await self._db.logs.compress_log(logid, method)

    # -- state of schedulers and change sources ------------------------------------------------

    async def get_object_id(self, name: str, class_name: str) -> int:
        """The id under which an object (a scheduler, a poller) keeps its state."""
        return await self._db.state.get_object_id(name, class_name)

    async def get_state(self, objectid: int, name: str, default: Any = None) -> Any:
        return await self._db.state.get_state(objectid, name, default)

    async def set_state(self, objectid: int, name: str, value: Any) -> None:
        """Store a JSON value as the object's ``name`` (TypeError if it is not JSON)."""
        await self._db.state.set_state(objectid, name, value)

    # -- which master runs each change source and scheduler ------------------------------------

    async def find_changesource_id(self, name: str) -> int:
        return await self._db.changesources.find_changesource_id(name)

    async def claim_changesource(self, changesourceid: int, *, masterid: int) -> bool:
        """Whether this master now runs the change source (False: another one does)."""
        try:
            await self._db.changesources.set_changesource_master(changesourceid, masterid)
        except AlreadyClaimed:
            return False
        return True

    async def release_changesource(self, changesourceid: int) -> None:
        await self._db.changesources.set_changesource_master(changesourceid, None)

    async def find_scheduler_id(self, name: str) -> int:
        return await self._db.schedulers.find_scheduler_id(name)

    async def claim_scheduler(self, schedulerid: int, *, masterid: int) -> bool:
        """Whether this master now runs the scheduler (False: another one does)."""
        try:
            await self._db.schedulers.set_scheduler_master(schedulerid, masterid)
        except AlreadyClaimed:
            return False
        return True

    async def release_scheduler(self, schedulerid: int) -> None:
        await self._db.schedulers.set_scheduler_master(schedulerid, None)

    async def set_scheduler_enabled(self, schedulerid: int, enabled: bool) -> None:
        await self._db.schedulers.set_scheduler_enabled(schedulerid, enabled)
        scheduler = await self._db.schedulers.get_scheduler(schedulerid)
        if scheduler is not None:
            self._mq.produce(
                ("schedulers", str(schedulerid), "updated"),
                {"schedulerid": schedulerid, "name": scheduler.name, "enabled": enabled},
            )

    async def classify_changes(self, schedulerid: int, classifications: Mapping[int, bool]) -> None:
        await self._db.schedulers.classify_changes(schedulerid, classifications)

    async def flush_change_classifications(
        self, schedulerid: int, *, less_than: int | None = None
    ) -> None:
        await self._db.schedulers.flush_change_classifications(schedulerid, less_than=less_than)
