"""The single write path: each method is one transaction, then the events that announce it.

Nothing else in the master writes to the database or produces state events; this is the one
place to read to know "what changes when". Events are produced after the commit, so a consumer
that reads the database on an event sees the change.

It is also where secrets are hidden: every text a build renders and stores (state strings, step
names and URLs, log names, properties, test results, build data, ...) passes
:attr:`Updates.redactor` on its way in, so neither the database nor an event holds a secret
value. Log content is the exception: the log writer redacts it as it streams (a secret can
straddle its pieces), before it comes here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import structlog

from buildyard.common.clock import Clock
from buildyard.master.data import shapes
from buildyard.master.data.pipeline import Message, PipelineUpdates
from buildyard.master.db.config_rows import ConfigRows
from buildyard.master.db.connector import Database
from buildyard.master.db.errors import NotClaimed
from buildyard.master.model.masters import DeactivationCleanup
from buildyard.master.model.projectconfig import Codebase as CodebaseConfig
from buildyard.master.model.projectconfig import Project, markdown_html
from buildyard.master.model.test_results import NewTestResult
from buildyard.master.mq import keys
from buildyard.master.mq.base import MessageQueue
from buildyard.master.secrets.redaction import Redactor

log = structlog.get_logger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class BuilderInfo:
    """What a builder's configuration says of it in the ``builders`` resource."""

    description: str | None = None
    description_format: str | None = None
    description_html: str | None = None
    project: str | None = None
    tags: tuple[str, ...] = ()


class Updates(PipelineUpdates):
    def __init__(
        self, *, db: Database, mq: MessageQueue, clock: Clock, redactor: Redactor | None = None
    ) -> None:
        self._db = db
        self._mq = mq
        self._clock = clock
        self.redactor = redactor or Redactor()
        self._live_builds = {}
        self._live_steps = {}

    # -- masters -------------------------------------------------------------------------------

    async def find_master_id(self, name: str) -> int:
        return await self._db.masters.find_master_id(name)

    async def master_active(self, *, name: str, masterid: int) -> bool:
        """Check in: mark the master active now; announce it if it was not (and say so)."""
        if await self._db.masters.set_master_state(masterid, active=True):
            self._mq.produce(
                keys.master_event(masterid, "started"),
                {"masterid": masterid, "name": name, "active": True},
            )
            return True
        return False

    async def master_stopped(self, *, name: str, masterid: int) -> None:
        """The master stops (or finds its previous run dead): undo what it held, announce it."""
        async with self._db.transaction() as conn:
            master = await self._db.masters.get_master(masterid, conn=conn)
            if master is None:
                return
            # Clean up even when the master never became active (a start that failed half-way
            # registered builders); before the state flips, since unlinking tells us which
            # builders to announce.
            cleanup = await self._db.masters.deactivation_cleanup(masterid, conn=conn)
            await self._db.masters.set_master_state(masterid, active=False, conn=conn)
        await self._announce_cleanup(cleanup)
        if master.active:
            self._mq.produce(
                keys.master_event(masterid, "stopped"),
                {"masterid": masterid, "name": name, "active": False},
            )

    async def find_user_id_by_attr(self, identifier: str, attr_type: str, attr_data: str) -> int:
        """The user with that attribute, created (named ``identifier``) if there is none."""
        return await self._db.users.find_user_id_by_attr(identifier, attr_type, attr_data)

    async def update_user(
        self,
        uid: int,
        *,
        identifier: str | None = None,
        bb_username: str | None = None,
        bb_password: str | None = None,
        attr_type: str | None = None,
        attr_data: str | None = None,
    ) -> None:
        await self._db.users.update_user(
            uid,
            identifier=identifier,
            bb_username=bb_username,
            bb_password=bb_password,
            attr_type=attr_type,
            attr_data=attr_data,
        )

    async def remove_user(self, uid: int) -> None:
        await self._db.users.remove_user(uid)

    async def delete_old_logs(self, horizon: float) -> int:
        """Delete the lines of logs whose step started more than ``horizon`` seconds ago
        (util.JanitorConfigurator's ``logHorizon``); how many chunks went."""
        return await self._db.logs.delete_old_logs(int(self._clock.now() - horizon))

    async def delete_old_build_data(self, horizon: float) -> int:
        """Delete the data of builds that completed more than ``horizon`` seconds ago
        (util.JanitorConfigurator's ``build_data_horizon``); how many rows went."""
        return await self._db.builds.delete_old_build_data(int(self._clock.now() - horizon))

    async def prune_changes(self, horizon: int) -> int:
        """Delete all but the newest ``horizon`` changes (``c['changeHorizon']``); how many
        went. Nothing is announced: Buildbot sends no event for it either."""
        return await self._db.changes.prune_changes(horizon)

    async def expire_masters(
        self, *, expire_after: float, force_housekeeping: bool = False
    ) -> list[int]:
        """Mark masters silent for ``expire_after`` seconds inactive and undo what they held.

        With ``force_housekeeping`` the cleanup also runs for masters already inactive (at
        start-up, in case an earlier cleanup was interrupted). Returns the ids newly marked
        inactive.
        """
        cutoff = int(self._clock.now() - expire_after)
        expired: list[int] = []
        for master in await self._db.masters.find_expired(older_than=cutoff):
            if not master.active and not force_housekeeping:
                continue
            async with self._db.transaction() as conn:
                # re-checked in this transaction: a master that checked in since is left alone
                changed = await self._db.masters.mark_inactive_if_stale(
                    master.id, older_than=cutoff, conn=conn
                )
                current = await self._db.masters.get_master(master.id, conn=conn)
                if not changed and (
                    not force_housekeeping
                    or current is None
                    or current.active
                    or current.last_active >= cutoff
                ):
                    continue
                cleanup = await self._db.masters.deactivation_cleanup(master.id, conn=conn)
            await self._announce_cleanup(cleanup)
            if changed:
                expired.append(master.id)
                log.warning(
                    "master_expired",
                    masterid=master.id,
                    master=master.name,
                    last_active=master.last_active,
                )
                self._mq.produce(
                    keys.master_event(master.id, "stopped"),
                    {"masterid": master.id, "name": master.name, "active": False},
                )
        return expired

    async def _announce_cleanup(self, cleanup: DeactivationCleanup) -> None:
        m = cleanup.masterid
        for workerid in cleanup.workerids:
            await self._announce_worker(workerid, "disconnected")
        for builderid in cleanup.builderids:
            self._mq.produce(
                keys.builder_event(builderid, "stopped"), {"builderid": builderid, "masterid": m}
            )
        # each with the whole resource and every key, as when a live master ends them
        messages: list[Message] = []
        async with self._db.reading() as c:
            for logid, _stepid in cleanup.logs:
                messages += self._log_messages(
                    await self._db.logs.get_log(logid, conn=c), "finished"
                )
            for stepid, _buildid in cleanup.steps:
                messages += await self._step_messages(stepid, "finished", c)
            for buildid, _builderid, _number in cleanup.builds:
                messages += await self._build_messages(buildid, "finished", c)
            brids = [brid for brid, _builderid, _bsid in cleanup.unclaimed]
            messages += await self._request_messages(brids, "unclaimed", c)
            done = [brid for brid, _builderid, _bsid in cleanup.completed]
            messages += await self._request_messages(done, "complete", c)
        self._produce(messages)
        for bsid in sorted({*cleanup.buildsets, *(bsid for _, _, bsid in cleanup.completed)}):
            await self._maybe_complete_buildset(bsid)

    # -- build requests ------------------------------------------------------------------------

    async def set_buildrequest_priority(self, brid: int, priority: int) -> bool:
        """Change the priority of a request not complete yet (the next distribution pass
        orders by it); False, changing nothing, if it is complete or unknown. No event, as in
        Buildbot."""
        try:
            await self._db.buildrequests.set_buildrequests_priority([brid], priority)
        except NotClaimed:
            return False
        return True

    # -- build data and test results -----------------------------------------------------------

    async def set_build_data(self, buildid: int, name: str, value: bytes, source: str) -> None:
        """Create or replace the build's blob ``name`` (Buildbot's ``setBuildData``); read
        back under ``builds/<id>/data``. No event, as in Buildbot. A value that is UTF-8 text
        is stored redacted."""
        value = bytes(value)
        if self.redactor.active:
            try:
                text = value.decode("utf-8")
            except UnicodeDecodeError:
                pass
            else:
                value = self.redactor.redact(text).encode("utf-8")
        await self._db.builds.add_build_data(buildid, self.redactor.redact(name), value, source)

    async def add_test_result_set(
        self,
        *,
        builderid: int,
        buildid: int,
        stepid: int,
        description: str | None,
        category: str,
        value_unit: str,
    ) -> int:
        """A new, incomplete set of test results of a step; announced as
        ``test_result_sets/<id>/new``. Returns its id."""
        hide = self.redactor.redact
        setid = await self._db.test_results.add_test_result_set(
            builderid=builderid,
            buildid=buildid,
            stepid=stepid,
            description=None if description is None else hide(description),
            category=hide(category),
            value_unit=hide(value_unit),
        )
        await self._announce_test_result_set(setid, "new")
        return setid

    async def complete_test_result_set(
        self,
        test_result_setid: int,
        *,
        tests_passed: int | None = None,
        tests_failed: int | None = None,
    ) -> None:
        """Mark the set complete with its counts; ``test_result_sets/<id>/completed``.
        :class:`~buildyard.master.db.errors.TestResultSetAlreadyComplete` if it was already
        (or is unknown)."""
        await self._db.test_results.complete_test_result_set(
            test_result_setid, tests_passed=tests_passed, tests_failed=tests_failed
        )
        await self._announce_test_result_set(test_result_setid, "completed")

    async def add_test_results(
        self,
        builderid: int,
        test_result_setid: int,
        result_values: Sequence[Mapping[str, Any]],
    ) -> None:
        """Add results to a set: each a dict with ``value`` and at least one of ``test_name``
        and ``test_code_path`` (optional ``line``, ``duration_ns``), as Buildbot's
        ``addTestResults`` takes them. No event: readers wait for the set's ``completed``."""
        hide = self.redactor.redact_value
        rows = [
            NewTestResult(
                test_name=hide(r.get("test_name")),
                test_code_path=hide(r.get("test_code_path")),
                line=r.get("line"),
                duration_ns=r.get("duration_ns"),
                value=hide(str(r["value"])),
            )
            for r in result_values
        ]
        await self._db.test_results.add_test_results(builderid, test_result_setid, rows)

    async def _announce_test_result_set(self, setid: int, event: str) -> None:
        found = await self._db.test_results.get_test_result_set(setid)
        if found is not None:
            self._mq.produce(("test_result_sets", str(setid), event), shapes.test_result_set(found))

    # -- projects and codebases from the configuration ------------------------------------------

    async def configure_projects(
        self, projects: Sequence[Project], codebases: Sequence[CodebaseConfig]
    ) -> dict[tuple[str, str], int]:
        """Give each project of ``c['projects']`` (created if new) its slug and description,
        and each codebase of ``c['codebases']`` (created in its project if new) its slug, as
        Buildbot's reconfig does; ``projects/<id>/update`` and ``codebases/<id>/update`` for
        those whose stored values differ (nothing is written for the others). Returns each
        codebase's id by (project, name). Projects and codebases no longer configured keep
        their rows: their history stays readable, as in Buildbot."""
        projectids: dict[str, int] = {}
        for p in projects:
            projectid = await self._db.projects.find_project_id(p.name)
            projectids[p.name] = projectid
            html = None
            if p.description is not None and p.description_format == "markdown":
                html = markdown_html(p.description)
                if html is None:
                    log.warning(
                        "project_description_not_rendered",
                        project=p.name,
                        reason="description_format='markdown' needs the markdown package "
                        "(pip install markdown)",
                    )
            wanted = (p.slug, p.description, p.description_format, html)
            stored = await self._db.projects.get_project(projectid)
            if stored is not None and wanted == (
                stored.slug,
                stored.description,
                stored.description_format,
                stored.description_html,
            ):
                continue
            await self._db.projects.update_project_info(
                projectid,
                slug=p.slug,
                description=p.description,
                description_format=p.description_format,
                description_html=html,
            )
            self._mq.produce(
                ("projects", str(projectid), "update"),
                {
                    "projectid": projectid,
                    "name": p.name,
                    "slug": p.slug,
                    "active": None,
                    "description": p.description,
                    "description_format": p.description_format,
                    "description_html": html,
                },
            )
        ids: dict[tuple[str, str], int] = {}
        for cb in codebases:
            if cb.project not in projectids:
                raise ValueError(
                    f"codebase {cb.name!r}: project {cb.project!r} is not in c['projects']"
                )
            codebaseid = await self._db.codebases.find_codebase_id(
                projectid=projectids[cb.project], name=cb.name
            )
            assert codebaseid is not None
            ids[(cb.project, cb.name)] = codebaseid
            found = await self._db.codebases.get_codebase(codebaseid)
            if found is None or found.slug != cb.slug:
                await self.update_codebase_info(
                    codebaseid=codebaseid, projectid=projectids[cb.project], slug=cb.slug
                )
        return ids

    async def codebase_id(self, *, project: str, name: str) -> int:
        """The id of ``project``'s codebase ``name`` (created if new), for a change source
        given ``codebase=util.Codebase(...)``; LookupError if the project is unknown (it is
        created from c['projects'] when the configuration is applied)."""
        found = await self._db.projects.get_project_by_name(project)
        if found is None:
            raise LookupError(f"project {project!r} is not configured (c['projects'])")
        codebaseid = await self._db.codebases.find_codebase_id(projectid=found.id, name=name)
        assert codebaseid is not None
        return codebaseid

    async def commit_id(self, *, codebaseid: int, revision: str) -> int | None:
        """The id of the codebase's commit ``revision``, None if it is not recorded (a poller
        links its first new commit to the parent it already knows)."""
        found = await self._db.codebase_commits.get_commit_by_revision(
            codebaseid=codebaseid, revision=revision
        )
        return None if found is None else found.id

    # -- codebases, branches, commits ----------------------------------------------------------

    async def find_codebase_id(
        self, *, projectid: int, name: str, auto_create: bool = True
    ) -> int | None:
        """The id of the project's codebase ``name``, created if new and ``auto_create``
        (else None). No event, as in Buildbot."""
        return await self._db.codebases.find_codebase_id(
            projectid=projectid, name=name, auto_create=auto_create
        )

    async def update_codebase_info(self, *, codebaseid: int, projectid: int, slug: str) -> None:
        """Move the codebase to a project and give it a slug; ``codebases/<id>/update``."""
        await self._db.codebases.update_codebase_info(
            codebaseid=codebaseid, projectid=projectid, slug=slug
        )
        found = await self._db.codebases.get_codebase(codebaseid)
        if found is not None:
            self._mq.produce(("codebases", str(codebaseid), "update"), shapes.codebase(found))

    async def update_branch(
        self, *, codebaseid: int, name: str, commitid: int | None = None, last_timestamp: int
    ) -> None:
        """Create the codebase's branch ``name`` or move its head to ``commitid``;
        ``branches/<id>/update``."""
        branchid = await self._db.codebase_branches.update_branch(
            codebaseid=codebaseid, name=name, commitid=commitid, last_timestamp=last_timestamp
        )
        found = await self._db.codebase_branches.get_branch(branchid)
        if found is not None:
            self._mq.produce(("branches", str(branchid), "update"), shapes.branch(found))

    async def add_commit(
        self,
        *,
        codebaseid: int,
        author: str,
        committer: str | None = None,
        files: Sequence[str] | None = None,
        comments: str,
        when_timestamp: int,
        revision: str,
        parent_commitid: int | None = None,
    ) -> int:
        """A new commit of the codebase (``files`` are not kept, as in Buildbot); announced as
        ``commits/<id>/new`` and ``codebases/<codebaseid>/commits/<id>/new``. Returns its id."""
        commitid = await self._db.codebase_commits.add_commit(
            codebaseid=codebaseid,
            author=author,
            committer=committer,
            comments=comments,
            when_timestamp=when_timestamp,
            revision=revision,
            parent_commitid=parent_commitid,
        )
        found = await self._db.codebase_commits.get_commit(commitid)
        if found is not None:
            body = shapes.commit(found)
            self._mq.produce(("commits", str(commitid), "new"), body)
            self._mq.produce(("codebases", str(codebaseid), "commits", str(commitid), "new"), body)
        return commitid

    # -- builders ------------------------------------------------------------------------------

    async def find_builder_id(self, name: str) -> int:
        return await self._db.builders.find_builder_id(name)

    async def update_builder_list(
        self, *, masterid: int, builder_names: Sequence[str]
    ) -> dict[str, int]:
        """Make this master's configured builders exactly ``builder_names``; announce changes.

        Returns the id of each builder by name.
        """
        async with self._db.transaction() as conn:
            ids = await self._db.builders.find_builder_ids(builder_names, conn=conn)
            added, removed = await self._db.builders.update_builder_list(
                masterid, list(ids.values()), conn=conn
            )
        names = {v: k for k, v in ids.items()}
        for builderid in removed:
            self._mq.produce(
                keys.builder_event(builderid, "stopped"),
                {"builderid": builderid, "masterid": masterid},
            )
        for builderid in added:
            self._mq.produce(
                keys.builder_event(builderid, "started"),
                {"builderid": builderid, "masterid": masterid, "name": names[builderid]},
            )
        return ids

    async def update_builder_infos(self, infos: Mapping[int, BuilderInfo]) -> list[int]:
        """Give each builder (by id) what its configuration says of it, as Buildbot's reconfig
        does: its description, project (by name; created if new) and tags, which the REST API
        and the reporters' tag filters read. Only the builders whose stored info differs are
        written, so a start or reconfig that changes none writes nothing. Returns the ids
        written."""
        if not infos:
            return []
        stored = await self._db.builders.get_infos(infos)
        projectids: dict[str, int] = {}
        for info in infos.values():
            if info.project and info.project not in projectids:
                projectids[info.project] = await self._db.projects.find_project_id(info.project)
        changed = []
        for builderid, info in infos.items():
            projectid = projectids[info.project] if info.project else None
            wanted = (
                info.description,
                info.description_format,
                info.description_html,
                projectid,
                tuple(sorted(info.tags)),
            )
            if stored.get(builderid) == wanted:
                continue
            await self._db.builders.update_builder_info(
                builderid,
                description=info.description,
                description_format=info.description_format,
                description_html=info.description_html,
                projectid=projectid,
                tags=info.tags,
            )
            changed.append(builderid)
        return changed

    # -- what a configuration creates -----------------------------------------------------------

    async def config_rows(self) -> ConfigRows:
        """The ids of every builder, worker, scheduler and change source in the database."""
        return await self._db.config_rows.get_config_rows()

    async def forget_config_rows(self, rows: ConfigRows) -> None:
        """Delete those of ``rows`` that nothing uses (a rolled-back reconfiguration's own)."""
        async with self._db.transaction() as conn:
            await self._db.config_rows.delete_unused(rows, conn=conn)

    # -- workers -------------------------------------------------------------------------------

    async def find_worker_id(self, name: str) -> int:
        return await self._db.workers.find_worker_id(name)

    async def configure_workers(
        self, *, masterid: int, builders_of: Mapping[str, Sequence[int]]
    ) -> dict[str, int]:
        """Make this master's configured workers exactly ``builders_of`` (worker name -> the
        ids of the builders it serves), in one transaction; returns each worker's id."""
        async with self._db.transaction() as conn:
            ids = await self._db.workers.find_worker_ids(list(builders_of), conn=conn)
            await self._db.workers.configure_workers_for_master(
                masterid, {ids[name]: b for name, b in builders_of.items()}, conn=conn
            )
        return {name: ids[name] for name in builders_of}

    async def worker_connected(
        self, *, workerid: int, masterid: int, workerinfo: Mapping[str, Any]
    ) -> None:
        """Record the connection and what the worker says about itself; announce it."""
        workerinfo = self.redactor.redact_value(dict(workerinfo))
        await self._db.workers.worker_connected(workerid, masterid, workerinfo)
        await self._announce_worker(workerid, "connected")

    async def worker_disconnected(self, *, workerid: int, masterid: int) -> None:
        await self._db.workers.worker_disconnected(workerid, masterid)
        await self._announce_worker(workerid, "disconnected")

    async def set_worker_state(
        self, *, workerid: int, paused: bool, graceful: bool, pause_reason: str | None = None
    ) -> None:
        """Pause / unpause / graceful shutdown; announced as ``workers/<id>/state_updated``.

        Distribution (issue 4) starts no build on a paused or graceful worker."""
        await self._db.workers.set_worker_state(
            workerid, paused=paused, graceful=graceful, pause_reason=pause_reason
        )
        await self._announce_worker(workerid, "state_updated")

    async def request_graceful_shutdown(self, *, workerid: int) -> None:
        """The worker asked to be shut down (a PB worker's ``shutdown``): marked graceful, its
        pause state kept, as Buildbot's ``shutdownRequested`` does."""
        worker = await self._db.workers.get_worker(workerid)
        if worker is None or worker.graceful:
            return
        await self.set_worker_state(
            workerid=workerid,
            paused=worker.paused,
            graceful=True,
            pause_reason=worker.pause_reason,
        )

    async def worker_missing(
        self, *, workerid: int, last_connection: str, notify: Sequence[str]
    ) -> None:
        """The worker has been gone for its ``missing_timeout``: ``workers/<id>/missing``, with
        when it was last connected and whom to tell (reporters send the mail)."""
        await self._announce_worker(
            workerid, "missing", last_connection=last_connection, notify=list(notify)
        )

    async def _announce_worker(self, workerid: int, event: str, **extra: Any) -> None:
        worker = await self._db.workers.get_worker(workerid)
        if worker is None:
            return
        self._mq.produce(
            ("workers", str(workerid), event),
            {
                "workerid": worker.id,
                "name": worker.name,
                "workerinfo": dict(worker.workerinfo),
                "connected_to": [{"masterid": m} for m in worker.connected_to],
                "configured_on": [
                    {"masterid": c.masterid, "builderid": c.builderid} for c in worker.configured_on
                ],
                "paused": worker.paused,
                "pause_reason": worker.pause_reason,
                "graceful": worker.graceful,
                **extra,
            },
        )
