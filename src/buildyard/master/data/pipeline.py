"""The write path of the build pipeline: changes, buildsets and requests, builds, steps, logs.

Part of :class:`~buildyard.master.data.updates.Updates` (the single writer): each method is one
transaction, then the events that announce it, with Buildbot's routing keys
(docs/rest-api.md, "Routing keys") and the entity's API shape as body. The bodies are read in the
writing transaction, so an event shows exactly the change it announces and costs no transaction
of its own. (A buildset's completion is the exception: see :meth:`complete_buildrequests`.)

A row this code has just written whole is not read back: a new step's or log's body is made
from what was inserted, and the rows of the builds and steps this master runs are kept while
they run (only their runner writes them), so an update's body is the kept row with the change
applied. A build or step this master does not run is read as before.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from buildyard.master.data import shapes
from buildyard.master.db.connector import Database
from buildyard.master.db.errors import AlreadyClaimed, BuildsetAlreadyComplete, NotClaimed
from buildyard.master.db.logs import THREAD_FROM
from buildyard.master.model.builds import Build
from buildyard.master.model.buildsets import BuildsetIds
from buildyard.master.model.logs import Log, LogType
from buildyard.master.model.properties import JsonValue, PropertyValue
from buildyard.master.model.results import Results, worst
from buildyard.master.model.sourcestamps import SourceStamp, SourceStampSpec
from buildyard.master.model.steps import Step
from buildyard.master.mq import keys
from buildyard.master.mq.base import MessageQueue
from buildyard.master.secrets.redaction import Redactor

log = structlog.get_logger(__name__)

# the version controls whose changes create users from their author (Buildbot's list)
USER_SOURCES = frozenset({"git", "svn", "hg", "cvs", "darcs", "bzr", "fossil"})

# an event to send once the transaction that made it true is committed: (routing key, body)
Message = tuple[tuple[str, ...], Any]

_NOT_IDENTIFIER = re.compile(r"[^a-zA-Z0-9_-]")
SLUG_LENGTH = 50


def slugify(name: str) -> str:
    """A log's slug: its name as an identifier (Buildbot's forceIdentifier, 50 characters)."""
    return _NOT_IDENTIFIER.sub("_", name)[:SLUG_LENGTH] or "_"


class NewBuild(NamedTuple):
    """What :meth:`PipelineUpdates.add_build_of_buildset` gives back."""

    buildid: int
    number: int
    # the buildset's properties, name -> (value, source), and source stamps (when asked)
    properties: dict[str, PropertyValue]
    sourcestamps: list[SourceStamp]


# rows of builds and steps kept while they run, at most (more: forgotten, and read again)
LIVE_MAX = 10_000


class PipelineUpdates:
    _db: Database
    _mq: MessageQueue
    # The rows of the builds and steps this master runs, as it last wrote them: only their
    # runner writes them while they run, so an update's event body is the row kept here with
    # the change applied, not a read of the row just written. Dropped when they finish.
    _live_builds: dict[int, Build]
    _live_steps: dict[int, Step]
    # hides secret values in what is stored (see updates.py)
    redactor: Redactor
    # c['revlink'] (revision, repository) -> url, and c['codebaseGenerator'] (the change as a
    # dict) -> codebase: set by the master at each (re)config
    revlink_hook: Callable[[str, str], Any] | None = None
    codebase_hook: Callable[[dict[str, Any]], Any] | None = None

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
        codebase: str | None = None,
        project: str = "",
        src: str | None = None,
    ) -> int:
        """Record a change; announced as ``changes/<id>/new`` with the change as body.

        ``src`` says which version control the change comes from: as in Buildbot, with one of
        :data:`USER_SOURCES` (``"git"``, ...) the change is linked to the user whose attribute
        of that type is the author, created (named after the author) if there is none; any
        other ``src`` is logged and links no user.

        As in Buildbot: without a ``revlink``, c['revlink'] makes one from the revision and
        repository; without a ``codebase``, c['codebaseGenerator'] picks it from the change
        (as a dict), else it is "". A hook that raises is logged and left out: the change is
        recorded all the same.
        """
        if not revlink and revision and repository and self.revlink_hook is not None:
            try:
                revlink = str(self.revlink_hook(revision, repository) or "")
            except Exception:
                log.exception("revlink_failed", revision=revision, repository=repository)
        if codebase is None and self.codebase_hook is not None:
            chdict = {
                "author": author,
                "committer": committer,
                "files": list(files),
                "comments": comments,
                "revision": revision,
                "when_timestamp": when_timestamp,
                "branch": branch,
                "category": category,
                "revlink": revlink,
                "properties": dict(properties or {}),
                "repository": repository,
                "project": project,
            }
            try:
                codebase = str(self.codebase_hook(chdict))
            except Exception:
                log.exception("codebase_generator_failed", revision=revision)
        hide = self.redactor.redact_value
        if src and src not in USER_SOURCES:
            log.info("change_user_not_created", src=src, reason="unrecognized source")
        async with self._db.transaction() as c:
            uid = None
            if src in USER_SOURCES and author:
                try:
                    uid = await self._db.users.find_user_id_by_attr(
                        hide(author), src, hide(author), conn=c
                    )
                except ValueError as exc:  # an author too long for the users tables
                    log.warning("change_user_not_created", src=src, reason=str(exc))
            changeid = await self._db.changes.add_change(
                conn=c,
                uid=uid,
                author=hide(author),
                committer=hide(committer),
                files=hide(files),
                comments=hide(comments),
                revision=hide(revision),
                when_timestamp=when_timestamp,
                branch=hide(branch),
                category=hide(category),
                revlink=hide(revlink),
                properties=self._hidden_properties(properties),
                repository=hide(repository),
                codebase=hide(codebase or ""),
                project=hide(project),
            )
            change = await self._db.changes.get_change(changeid, conn=c)
            assert change is not None
            stamp = await self._db.sourcestamps.get_sourcestamp(change.sourcestampid, conn=c)
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
        reason = self.redactor.redact(reason)
        async with self._db.transaction() as c:
            ids = await self._db.buildsets.add_buildset(
                conn=c,
                sourcestamps=sourcestamps,
                reason=reason,
                properties=self._hidden_properties(properties) or {},
                builderids=builderids,
                waited_for=waited_for,
                external_idstring=external_idstring,
                parent_buildid=parent_buildid,
                parent_relationship=parent_relationship,
                rebuilt_buildid=rebuilt_buildid,
                priority=priority,
            )
            body = await self._buildset_body(ids.bsid, c)
            requests = await self._request_messages(ids.brids.values(), "new", c)
        self._mq.produce(("buildsets", str(ids.bsid), "new"), {**body, "scheduler": scheduler})
        self._produce(requests)
        log.info("buildset_added", bsid=ids.bsid, scheduler=scheduler, reason=reason)
        return ids

    async def _buildset_body(self, bsid: int, conn: AsyncConnection) -> dict[str, Any]:
        bs = await self._db.buildsets.get_buildset(bsid, conn=conn)
        assert bs is not None
        by_id = {ss.id: ss for ss in await self._db.sourcestamps.get_sourcestamps(bsid, conn=conn)}
        return shapes.buildset(bs, [by_id[i] for i in bs.sourcestamps if i in by_id])

    def _hidden_properties(
        self, properties: Mapping[str, tuple[Any, str]] | None
    ) -> dict[str, tuple[Any, str]] | None:
        """Properties with secret values hidden in their names, values and sources."""
        if properties is None or not self.redactor.active:
            return None if properties is None else dict(properties)
        hide = self.redactor.redact_value
        return {hide(k): (hide(v), hide(s)) for k, (v, s) in properties.items()}

    def _produce(self, messages: Iterable[Message]) -> None:
        for key, body in messages:
            self._mq.produce(key, body)

    async def _request_messages(
        self, brids: Iterable[int], event: str, conn: AsyncConnection
    ) -> list[Message]:
        messages: list[Message] = []
        for brid in brids:
            br = await self._db.buildrequests.get_buildrequest(brid, conn=conn)
            if br is None:
                continue
            body = shapes.buildrequest(br)
            messages += [
                (key, body)
                for key in keys.buildrequest_event(br.id, br.builderid, br.buildsetid, event)
            ]
        return messages

    async def claim_buildrequests(self, brids: Sequence[int], *, masterid: int) -> bool:
        """Claim all of them for this master, or none (False: another master was faster)."""
        try:
            async with self._db.transaction() as c:
                await self._db.buildrequests.claim_buildrequests(brids, masterid, conn=c)
                messages = await self._request_messages(brids, "claimed", c)
        except AlreadyClaimed:
            return False
        self._produce(messages)
        return True

    async def unclaim_buildrequests(self, brids: Sequence[int], *, masterid: int) -> None:
        """Give the requests back to the queue (a build could not start, or ended RETRY)."""
        async with self._db.transaction() as c:
            released = await self._db.buildrequests.unclaim_buildrequests(brids, masterid, conn=c)
            messages = await self._request_messages(released, "unclaimed", c)
        self._produce(messages)

    async def complete_buildrequests(self, brids: Sequence[int], results: Results) -> None:
        """Complete the requests; a buildset whose requests are all complete completes too,
        with the worst of their results.

        The buildset is checked in a transaction of its own, after the requests' one is
        committed: two masters completing a buildset's last two requests at once would each
        see the other's as incomplete inside their own transactions, and neither would
        complete it.
        """
        async with self._db.transaction() as c:
            await self._db.buildrequests.complete_buildrequests(brids, results, conn=c)
            messages = await self._request_messages(brids, "complete", c)
        self._produce(messages)
        bsids = sorted({body["buildsetid"] for key, body in messages if key[0] == "buildrequests"})
        for bsid in bsids:
            await self._maybe_complete_buildset(bsid)

    async def _maybe_complete_buildset(self, bsid: int) -> None:
        async with self._db.transaction() as c:
            messages = await self._complete_buildset_in(bsid, c)
        self._produce(messages)

    async def _complete_buildset_in(self, bsid: int, c: AsyncConnection) -> list[Message]:
        """Complete the buildset in this transaction if all its requests are; its event."""
        requests = await self._db.buildrequests.get_buildrequests(bsid=bsid, conn=c)
        if any(not r.complete for r in requests):
            return []
        results = worst(r.results for r in requests if r.results is not None)
        try:
            await self._db.buildsets.complete_buildset(bsid, results, conn=c)
        except BuildsetAlreadyComplete:
            return []  # another request's completion got there first
        body = await self._buildset_body(bsid, c)
        return [(("buildsets", str(bsid), "complete"), body)]

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
        new = await self.add_build_of_buildset(
            builderid=builderid,
            buildrequestid=buildrequestid,
            workerid=workerid,
            masterid=masterid,
            state_string=state_string,
        )
        return new.buildid, new.number

    async def add_build_of_buildset(
        self,
        *,
        builderid: int,
        buildrequestid: int,
        workerid: int | None,
        masterid: int,
        state_string: str = "created",
        bsid: int | None = None,
        then: Callable[[NewBuild], tuple[Mapping[str, tuple[JsonValue, str]], str | None]]
        | None = None,
    ) -> NewBuild:
        """A new build, as :meth:`add_build`; with ``bsid``, the buildset's properties and
        source stamps (what a build starts from) are read in the same transaction.

        ``then``: called (in the transaction) with the new build; the properties it returns
        (all new: the build has none yet) and its new state string (None: unchanged) are
        stored in the same transaction, announced as :meth:`set_build_properties` would
        after the build's ``new``."""
        properties: dict[str, PropertyValue] = {}
        stamps: list[SourceStamp] = []
        async with self._db.transaction() as c:
            buildid, number = await self._db.builds.add_build(
                builderid=builderid,
                buildrequestid=buildrequestid,
                workerid=workerid,
                masterid=masterid,
                state_string=self.redactor.redact(state_string),
                conn=c,
            )
            messages = await self._build_messages(buildid, "new", c)
            if bsid is not None:
                properties = await self._db.buildsets.get_buildset_properties(bsid, conn=c)
                stamps = await self._db.sourcestamps.get_sourcestamps(bsid, conn=c)
            new = NewBuild(buildid, number, properties, stamps)
            if then is not None:
                props, then_state = then(new)
                messages += await self._store_build_properties(
                    buildid, props, new=props.keys(), state_string=then_state, conn=c
                )
        self._produce(messages)
        return new

    async def _build_messages(
        self, buildid: int, event: str, conn: AsyncConnection
    ) -> list[Message]:
        b = await self._db.builds.get_build(buildid, conn=conn)
        if b is None:
            return []
        return self._build_body_messages(self._remember(self._live_builds, b), event)

    async def _build_changed(
        self, buildid: int, event: str, conn: AsyncConnection, **changes: Any
    ) -> list[Message]:
        """The events of a change just written to the build: the kept row with ``changes``
        applied, or the row read (a build this master does not run)."""
        live = self._live_builds.get(buildid)
        if live is None:
            return await self._build_messages(buildid, event, conn)
        b = self._remember(self._live_builds, dataclasses.replace(live, **changes))
        return self._build_body_messages(b, event)

    @contextlib.asynccontextmanager
    async def _writing(self, live: dict[int, Any], key: int) -> AsyncIterator[AsyncConnection]:
        """A transaction changing the row ``key`` kept in ``live``: if it fails, the kept row
        (which may hold the change that was not made) is forgotten, and read next time."""
        try:
            async with self._db.transaction() as c:
                yield c
        except BaseException:
            live.pop(key, None)
            raise

    @staticmethod
    def _remember(live: dict[int, Any], row: Any) -> Any:
        if row.complete_at is not None:
            live.pop(row.id, None)
        else:
            if len(live) >= LIVE_MAX and row.id not in live:
                live.clear()
            live[row.id] = row
        return row

    def _build_body_messages(self, b: Build, event: str) -> list[Message]:
        buildid = b.id
        body = shapes.build(b)
        messages: list[Message] = [
            (("builders", str(b.builderid), "builds", str(b.number), event), body),
            (("builds", str(buildid), event), body),
        ]
        if b.workerid is not None:
            messages.append((("workers", str(b.workerid), "builds", str(buildid), event), body))
        return messages

    async def set_build_state_string(self, buildid: int, state_string: str) -> None:
        state_string = self.redactor.redact(state_string)
        async with self._writing(self._live_builds, buildid) as c:
            await self._db.builds.set_build_state_string(buildid, state_string, conn=c)
            messages = await self._build_changed(buildid, "update", c, state_string=state_string)
        self._produce(messages)

    async def add_build_locks_duration(self, buildid: int, duration_s: int) -> None:
        async with self._writing(self._live_builds, buildid) as c:
            await self._db.builds.add_build_locks_duration(buildid, duration_s, conn=c)
            live = self._live_builds.get(buildid)
            if live is None:
                messages = await self._build_messages(buildid, "update", c)
            else:
                messages = await self._build_changed(
                    buildid, "update", c, locks_duration_s=live.locks_duration_s + duration_s
                )
        self._produce(messages)

    async def _build_finished(
        self, buildid: int, results: Results, state_string: str | None, c: AsyncConnection
    ) -> list[Message]:
        """Store the build's end (and final state string); its ``finished`` events."""
        changes: dict[str, Any] = {"results": results}
        if state_string is not None:
            state_string = changes["state_string"] = self.redactor.redact(state_string)
        changes["complete_at"] = await self._db.builds.finish_build(
            buildid, results, state_string=state_string, conn=c
        )
        return await self._build_changed(buildid, "finished", c, **changes)

    async def set_build_properties(
        self,
        buildid: int,
        properties: Mapping[str, tuple[JsonValue, str]],
        *,
        new: Collection[str] = (),
        state_string: str | None = None,
    ) -> None:
        """Store these properties of the build (the changed ones); one event with them.

        ``new``: the names the build has no row for yet (its runner knows which it stored),
        only inserted. ``state_string``: the build's new state string, stored in the same
        transaction and announced (``update``) after the properties, as
        :meth:`set_build_state_string` would."""
        if not properties and state_string is None:
            return
        async with self._writing(self._live_builds, buildid) as c:
            messages = await self._store_build_properties(
                buildid, properties, new=new, state_string=state_string, conn=c
            )
        self._produce(messages)

    async def _store_build_properties(
        self,
        buildid: int,
        properties: Mapping[str, tuple[JsonValue, str]],
        *,
        new: Collection[str],
        state_string: str | None,
        conn: AsyncConnection,
    ) -> list[Message]:
        """:meth:`set_build_properties` in the transaction ``conn``; the events to send."""
        hidden = self._hidden_properties(properties) or {}
        if self.redactor.active:
            new = {self.redactor.redact(name) for name in new}
        messages: list[Message] = []
        if hidden:
            await self._db.builds.set_build_properties(buildid, hidden, new=new, conn=conn)
            messages.append(
                (
                    ("builds", str(buildid), "properties", "update"),
                    {name: [value, source] for name, (value, source) in hidden.items()},
                )
            )
        if state_string is not None:
            state_string = self.redactor.redact(state_string)
            await self._db.builds.set_build_state_string(buildid, state_string, conn=conn)
            messages += await self._build_changed(
                buildid, "update", conn, state_string=state_string
            )
        return messages

    async def finish_build(
        self, buildid: int, results: Results, *, state_string: str | None = None
    ) -> None:
        """The build ended with ``results`` (and, when given, its final state string)."""
        async with self._writing(self._live_builds, buildid) as c:
            messages = await self._build_finished(buildid, results, state_string, c)
        self._produce(messages)

    async def end_build(
        self,
        buildid: int,
        results: Results,
        *,
        state_string: str | None,
        brids: Sequence[int],
        masterid: int,
    ) -> None:
        """The build ended: what :meth:`finish_build` stores, and in the same transaction its
        requests completed with ``results`` (:meth:`complete_buildrequests`) or, for RETRY,
        given back (:meth:`unclaim_buildrequests`); the build's events, then the requests'.
        Each buildset whose requests are then all complete is completed: on SQLite in the
        same transaction (its writers are serialized), elsewhere as
        :meth:`complete_buildrequests` says, in a transaction of its own. A request that was
        already complete leaves the build finished and the error raised."""
        refused: NotClaimed | None = None
        async with self._writing(self._live_builds, buildid) as c:
            messages = await self._build_finished(buildid, results, state_string, c)
            if results == Results.RETRY:
                released = await self._db.buildrequests.unclaim_buildrequests(
                    brids, masterid, conn=c
                )
                requests = await self._request_messages(released, "unclaimed", c)
            else:
                try:
                    await self._db.buildrequests.complete_buildrequests(brids, results, conn=c)
                except NotClaimed as exc:  # undone on its own (a savepoint, or no change)
                    refused, requests = exc, []
                else:
                    requests = await self._request_messages(brids, "complete", c)
            bsids = sorted(
                {body["buildsetid"] for key, body in requests if key[0] == "buildrequests"}
            )
            # On SQLite a write transaction excludes every other writer (BEGIN IMMEDIATE), so
            # the buildset's completion cannot miss another master's last request here: it
            # joins this transaction. Elsewhere it needs one of its own, after this commit.
            completed: list[Message] = []
            joined = results != Results.RETRY and self._db.backend == "sqlite"
            if joined:
                for bsid in bsids:
                    completed += await self._complete_buildset_in(bsid, c)
        self._produce(messages)
        self._produce(requests)
        self._produce(completed)
        if refused is not None:
            raise refused
        if results != Results.RETRY and not joined:
            for bsid in bsids:
                await self._maybe_complete_buildset(bsid)

    # -- steps ---------------------------------------------------------------------------------

    async def add_step(
        self, buildid: int, name: str, *, start: bool = False, locks_acquired: bool = False
    ) -> tuple[int, int, str]:
        """A new step at the end of the build; returns (stepid, number, the name it got:
        unique in the build). With ``start``, it is started in the same transaction (as
        :meth:`start_step` does), and both events are sent."""
        name = self.redactor.redact(name)
        async with self._db.transaction() as c:
            stepid, number, got = await self._db.steps.add_step(buildid, name, "pending", conn=c)
            # the row as it was just inserted: nothing to read back
            step = Step(
                id=stepid,
                number=number,
                name=got,
                buildid=buildid,
                started_at=None,
                locks_acquired_at=None,
                complete_at=None,
                state_string="pending",
                results=None,
            )
            messages = self._step_body_messages(step, "new")
            if start:
                when = await self._db.steps.start_step(
                    stepid, locks_acquired=locks_acquired, conn=c
                )
                step = dataclasses.replace(
                    step, started_at=when, locks_acquired_at=when if locks_acquired else None
                )
                messages += self._step_body_messages(step, "started")
        self._remember(self._live_steps, step)
        self._produce(messages)
        return stepid, number, got

    async def _step_messages(self, stepid: int, event: str, conn: AsyncConnection) -> list[Message]:
        s = await self._db.steps.get_step(stepid, conn=conn)
        if s is None:
            return []
        return self._step_body_messages(self._remember(self._live_steps, s), event)

    async def _step_changed(
        self, stepid: int, event: str, conn: AsyncConnection, **changes: Any
    ) -> list[Message]:
        """The events of a change just written to the step: the kept row with ``changes``
        applied, or the row read (a step this master does not run)."""
        live = self._live_steps.get(stepid)
        if live is None:
            return await self._step_messages(stepid, event, conn)
        s = self._remember(self._live_steps, dataclasses.replace(live, **changes))
        return self._step_body_messages(s, event)

    def _step_body_messages(self, s: Step, event: str) -> list[Message]:
        stepid = s.id
        body = shapes.step(s)
        return [
            (("builds", str(s.buildid), "steps", str(stepid), event), body),
            (("steps", str(stepid), event), body),
        ]

    async def start_step(self, stepid: int, *, locks_acquired: bool = False) -> None:
        async with self._writing(self._live_steps, stepid) as c:
            when = await self._db.steps.start_step(stepid, locks_acquired=locks_acquired, conn=c)
            if locks_acquired:
                messages = await self._step_changed(
                    stepid, "started", c, started_at=when, locks_acquired_at=when
                )
            else:
                messages = await self._step_changed(stepid, "started", c, started_at=when)
        self._produce(messages)

    async def set_step_locks_acquired_at(self, stepid: int, when: int) -> None:
        async with self._writing(self._live_steps, stepid) as c:
            await self._db.steps.set_step_locks_acquired_at(stepid, when, conn=c)
            messages = await self._step_changed(stepid, "updated", c, locks_acquired_at=when)
        self._produce(messages)

    async def set_step_state_string(self, stepid: int, state_string: str) -> None:
        state_string = self.redactor.redact(state_string)
        async with self._writing(self._live_steps, stepid) as c:
            await self._db.steps.set_step_state_string(stepid, state_string, conn=c)
            messages = await self._step_changed(stepid, "updated", c, state_string=state_string)
        self._produce(messages)

    async def add_step_url(self, stepid: int, name: str, url: str) -> None:
        async with self._db.transaction() as c:
            await self._db.steps.add_step_url(
                stepid, self.redactor.redact(name), self.redactor.redact(url), conn=c
            )
            messages = await self._step_messages(stepid, "updated", c)
        self._produce(messages)

    async def finish_step(
        self,
        stepid: int,
        results: Results,
        *,
        hidden: bool = False,
        state_string: str | None = None,
        logs: Sequence[tuple[int, str, str]] = (),
    ) -> None:
        """The step ended with ``results`` (and, when given, its final state string).

        ``logs``: (logid, compression, last lines) of logs to close first, as
        :meth:`finish_log` does, in the same transaction; their events come first."""
        changes: dict[str, Any] = {"results": results, "hidden": hidden}
        if state_string is not None:
            state_string = changes["state_string"] = self.redactor.redact(state_string)
        closing = [
            (logid, compression, await self._append_big_last(logid, compression, last))
            for logid, compression, last in logs
        ]
        async with self._writing(self._live_steps, stepid) as c:
            messages = []
            for logid, compression, last in closing:
                messages += await self._finish_log_in(logid, compression, last, c)
            changes["complete_at"] = await self._db.steps.finish_step(
                stepid, results, hidden=hidden, state_string=state_string, conn=c
            )
            messages += await self._step_changed(stepid, "finished", c, **changes)
        self._produce(messages)

    # -- logs ----------------------------------------------------------------------------------

    async def add_log(self, stepid: int, name: str, type: LogType | str) -> int:
        """A new empty log of the step, its slug made from ``name``."""
        name = self.redactor.redact(name)
        slug = slugify(name)
        logid = await self._db.logs.add_log(stepid, name, slug, type)
        # the row as it was just inserted: nothing to read back
        lg = Log(
            id=logid,
            name=name,
            slug=slug,
            stepid=stepid,
            complete=False,
            num_lines=0,
            type=LogType(type),
        )
        self._produce(self._log_messages(lg, "new"))
        return logid

    def _log_messages(self, lg: Log | None, event: str) -> list[Message]:
        if lg is None:
            return []
        body = shapes.log(lg)
        return [
            (("logs", str(lg.id), event), body),
            (("steps", str(lg.stepid), "logs", lg.slug, event), body),
        ]

    async def append_log(
        self, logid: int, content: str, *, compression: str = "raw"
    ) -> tuple[int, int] | None:
        """Append whole lines (each ending in ``\\n``), big chunks compressed with
        ``compression``; returns their (first, last) numbers."""
        appended = await self._db.logs.append_log(logid, content, compression=compression)
        if appended is None:
            return None
        lg, count = appended
        self._produce(self._log_messages(lg, "append"))
        return lg.num_lines - count, lg.num_lines - 1

    async def finish_log(self, logid: int, *, compression: str = "raw", last: str = "") -> None:
        """Close the log; its small raw chunks are merged and stored compressed with
        ``compression`` (c['logCompressionMethod']) in the same transaction.

        ``last``: whole lines not appended yet, appended first in that same transaction (a
        step's log usually ends with a few lines still buffered: one transaction, not two),
        announced as an ``append`` before the ``finished``. A big one is appended on its own
        first, as its chunks are packed off the event loop, outside any transaction."""
        last = await self._append_big_last(logid, compression, last)
        async with self._db.transaction() as c:
            messages = await self._finish_log_in(logid, compression, last, c)
        self._produce(messages)

    async def _append_big_last(self, logid: int, compression: str, last: str) -> str:
        """A big ``last`` is appended on its own (see :meth:`finish_log`); what is left."""
        if len(last) >= THREAD_FROM:
            await self.append_log(logid, last, compression=compression)
            return ""
        return last

    async def _finish_log_in(
        self, logid: int, compression: str, last: str, c: AsyncConnection
    ) -> list[Message]:
        """:meth:`finish_log` in the transaction ``c`` (``last`` small); its events."""
        messages: list[Message] = []
        if last:
            appended = await self._db.logs.append_log(
                logid, last, compression=compression, conn=c, last=True
            )
            if appended is not None:
                messages += self._log_messages(appended[0], "append")
                lg: Log | None = dataclasses.replace(appended[0], complete=True)
            else:
                lg = None
        else:
            await self._db.logs.compress_log(logid, compression, conn=c)
            await self._db.logs.finish_log(logid, conn=c)
            lg = await self._db.logs.get_log(logid, conn=c)
        return messages + self._log_messages(lg, "finished")

    # -- state of schedulers and change sources ------------------------------------------------

    async def get_object_id(self, name: str, class_name: str) -> int:
        """The id under which an object (a scheduler, a poller) keeps its state."""
        return await self._db.state.get_object_id(name, class_name)

    async def get_state(self, objectid: int, name: str, default: Any = None) -> Any:
        return await self._db.state.get_state(objectid, name, default)

    async def atomic_create_or_get_state(self, objectid: int, name: str, value: Any) -> Any:
        """The value stored as ``name``; ``value`` is stored first if there is none (the
        first of racing callers wins, and all of them get its value)."""
        return await self._db.state.atomic_create_or_get_state(objectid, name, value)

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
