"""The running side shared by the schedulers: :class:`BuildsetScheduler`.

It follows the scheduler's ``enabled`` flag, consumes ``changes/*/new`` events through the
change filter, keeps state under Buildbot's object names, and turns changes or source stamps
into buildsets the way Buildbot's ``addBuildsetFor*`` methods do.

Concurrency: the work of a scheduler (its change consumer, its timers) runs in tasks it owns,
and every step that writes (classifying a change, firing a timer) holds the scheduler's lock.
Disabling, reconfiguring or stopping the scheduler takes that lock first, so a buildset being
added completes before its tasks are cancelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

import structlog

from buildyard.master.data.queries import Queries
from buildyard.master.model.buildsets import BuildsetIds
from buildyard.master.model.properties import Properties
from buildyard.master.model.sourcestamps import SourceStampSpec
from buildyard.master.schedulers.arguments import SchedulerBase
from buildyard.master.schedulers.base import Scheduler, SchedulerContext
from buildyard.master.schedulers.change import ChangeView
from buildyard.master.schedulers.changefilter import ChangeFilter

__all__ = ["BuildsetScheduler"]

log = structlog.get_logger(__name__)

_PATCH_KEYS = ("patch_body", "patch_level", "patch_author", "patch_comment", "patch_subdir")


class BuildsetScheduler(Scheduler):
    """A running scheduler that makes buildsets. Subclasses implement :meth:`start_work` (and
    :meth:`got_change` if they consume changes)."""

    config: SchedulerBase

    def __init__(self, name: str, config: SchedulerBase, ctx: SchedulerContext) -> None:
        super().__init__(name, config, ctx)
        self.enabled = True
        self.lock = asyncio.Lock()
        # serializes starting and stopping the work (enable/disable, reconfig, stop)
        self._switch = asyncio.Lock()
        self._work: set[asyncio.Task[None]] = set()
        self._working = False
        self._objectid: int | None = None
        self._last_codebases: dict[str, dict[str, Any]] | None = None
        #: set once this master runs the scheduler and its work has started (if enabled)
        self.activated = asyncio.Event()

    @property
    def queries(self) -> Queries:
        if self.ctx.queries is None:
            raise RuntimeError("SchedulerContext.queries is not wired: schedulers need it")
        return self.ctx.queries

    # -- lifecycle -----------------------------------------------------------------------------

    async def activate(self) -> None:
        assert self.schedulerid is not None
        # subscribe before reading, so a flip between the two is not missed
        sub = self.ctx.mq.subscribe(("schedulers", str(self.schedulerid), "updated"))
        self.enabled = await self.queries.scheduler_enabled(self.schedulerid)
        _ = self.spawn(self._follow_enabled(sub), name="enabled")
        if self.enabled:
            await self._start_work()
        self.activated.set()

    async def _follow_enabled(self, sub: Any) -> None:
        async with sub:
            async for _key, body in sub:
                enabled = bool(body.get("enabled", True))
                if enabled == self.enabled:
                    continue
                self.enabled = enabled
                log.info(
                    "scheduler_enabled" if enabled else "scheduler_disabled", scheduler=self.name
                )
                if enabled:
                    await self._start_work()
                else:
                    await self._stop_work()

    async def _start_work(self) -> None:
        async with self._switch:
            if self._working:
                return
            self._working = True
            await self.start_work()

    async def _stop_work(self) -> None:
        """Cancel the scheduler's work, waiting for a write in progress to finish."""
        async with self._switch:
            if not self._working:
                return
            self._working = False
            async with self.lock:
                tasks = tuple(self._work)
                for task in tasks:
                    task.cancel()
                if tasks:
                    await asyncio.gather(*tasks, return_exceptions=True)
                self._work.clear()
                self.work_stopped()

    async def start_work(self) -> None:
        """Hook: this master runs the enabled scheduler; start consuming, start timers."""

    def work_stopped(self) -> None:
        """Hook: the work tasks are gone (forget timers and the like); the lock is held."""

    def spawn_work(self, coro: Coroutine[Any, Any, None], *, name: str) -> asyncio.Task[None]:
        """Run ``coro`` as part of the scheduler's work (cancelled on disable and reconfig)."""
        task = self.spawn(coro, name=name)
        self._work.add(task)
        task.add_done_callback(self._work.discard)
        return task

    async def reconfigure(self, config: Any) -> None:
        if type(config) is not type(self.config):
            # the running service is of the old class: the manager must replace it
            raise TypeError(
                f"scheduler {self.name!r} changed class ({type(self.config).__name__} -> "
                f"{type(config).__name__}); it must be removed and added again"
            )
        await self._stop_work()
        self.config = config
        self._last_codebases = None
        if self.active and self.enabled:
            await self._start_work()

    async def stop(self) -> None:
        if self.running:
            await self._stop_work()
        await super().stop()
        self.activated.clear()

    def statistics(self) -> dict[str, int]:
        return {**super().statistics(), "work_tasks": len(self._work), "locked": self.lock.locked()}

    # -- state ---------------------------------------------------------------------------------

    async def objectid(self) -> int:
        if self._objectid is None:
            self._objectid = await self.ctx.updates.get_object_id(
                self.name, type(self.config).state_class_name()
            )
        return self._objectid

    async def get_state(self, name: str, default: Any = None) -> Any:
        return await self.ctx.updates.get_state(await self.objectid(), name, default)

    async def set_state(self, name: str, value: Any) -> None:
        await self.ctx.updates.set_state(await self.objectid(), name, value)

    # -- changes -------------------------------------------------------------------------------

    def consume_changes(
        self,
        *,
        file_is_important: Callable[[Any], object] | None,
        change_filter: ChangeFilter | None,
        only_important: bool,
    ) -> None:
        """Start handing each new change that passes ``change_filter`` (and is of one of the
        scheduler's codebases) to :meth:`got_change`, with whether it is important."""
        sub = self.ctx.mq.subscribe(("changes", None, "new"))
        _ = self.spawn_work(
            self._consume(sub, file_is_important, change_filter, only_important), name="changes"
        )

    async def _consume(
        self,
        sub: Any,
        file_is_important: Callable[[Any], object] | None,
        change_filter: ChangeFilter | None,
        only_important: bool,
    ) -> None:
        async with sub:
            async for _key, body in sub:
                change = ChangeView.from_api(body)
                try:
                    if change_filter is not None and not change_filter.filter_change(change):
                        continue
                except Exception:
                    log.exception(
                        "change_filter_failed", scheduler=self.name, changeid=change.number
                    )
                    continue
                if change.codebase not in self.config.codebases:
                    log.info(
                        "change_codebase_not_scheduled",
                        scheduler=self.name,
                        changeid=change.number,
                        codebase=change.codebase,
                    )
                    continue
                important = True
                if file_is_important is not None:
                    try:
                        important = bool(file_is_important(change))
                    except Exception:
                        log.exception(
                            "file_is_important_failed", scheduler=self.name, changeid=change.number
                        )
                        continue
                    if not important and only_important:
                        continue
                async with self.lock:
                    try:
                        await self.got_change(change, important)
                    except Exception:
                        log.exception(
                            "change_processing_failed", scheduler=self.name, changeid=change.number
                        )

    async def got_change(self, change: ChangeView, important: bool) -> None:
        """Hook: a change for this scheduler (the lock is held)."""

    async def record_change(self, change: ChangeView) -> None:
        """Remember the change as its codebase's latest (``createAbsoluteSourceStamps``)."""
        last = await self._load_last_codebases()
        current = last.get(change.codebase, self.config.codebases.get(change.codebase, {}))
        if change.number > current.get("lastChange", -1):
            last[change.codebase] = {
                "repository": change.repository,
                "branch": change.branch,
                "revision": change.revision,
                "lastChange": change.number,
            }
            await self.set_state("lastCodebases", last)

    async def _load_last_codebases(self) -> dict[str, dict[str, Any]]:
        if self._last_codebases is None:
            self._last_codebases = dict(await self.get_state("lastCodebases", {}) or {})
        return self._last_codebases

    async def codebase_defaults(self, codebase: str) -> Mapping[str, Any]:
        """What a buildset uses for a codebase without a change: the configured values, or with
        ``createAbsoluteSourceStamps`` the last change seen in it."""
        if self.config.create_absolute_sourcestamps:
            last = await self._load_last_codebases()
            if codebase in last:
                return last[codebase]
        return self.config.codebases.get(codebase, {})

    # -- buildsets -----------------------------------------------------------------------------

    async def add_buildset_for_changes(
        self,
        changeids: Sequence[int],
        *,
        reason: str,
        priority: int | Callable[..., Any] | None = None,
        builder_names: Sequence[str] | None = None,
        properties: Mapping[str, tuple[Any, str]] | None = None,
        waited_for: bool = False,
        external_idstring: str | None = None,
        parent_buildid: int | None = None,
        parent_relationship: str | None = None,
    ) -> BuildsetIds:
        """One buildset for these changes: per codebase of the scheduler, the stamp of its
        latest change, else the codebase's defaults."""
        by_codebase: dict[str, list[ChangeView]] = {}
        for changeid in changeids:
            body = await self.queries.get_change(changeid)
            if body is not None:
                change = ChangeView.from_api(body)
                by_codebase.setdefault(change.codebase, []).append(change)
        stamps: list[int | SourceStampSpec] = []
        latest: list[ChangeView] = []
        for codebase in sorted(self.config.codebases):
            changes = by_codebase.get(codebase)
            if changes:
                last = max(changes, key=lambda c: c.number)
                if last.sourcestampid is not None:
                    stamps.append(last.sourcestampid)
                    latest.append(last)
                    continue
            stamps.append(_stamp(codebase, await self.codebase_defaults(codebase)))
        if priority is None:
            priority = self.config.priority
        if callable(priority):
            priority = priority(list(builder_names or self.config.builder_names), by_codebase)
        return await self.add_buildset_for_sourcestamps(
            sourcestamps=stamps,
            reason=reason,
            priority=priority,
            builder_names=builder_names,
            properties=properties,
            changes=latest,
            waited_for=waited_for,
            external_idstring=external_idstring,
        )

    async def add_buildset_for_sourcestamps_with_defaults(
        self,
        *,
        reason: str,
        sourcestamps: Sequence[Mapping[str, Any]] = (),
        properties: Mapping[str, tuple[Any, str]] | None = None,
        builder_names: Sequence[str] | None = None,
        priority: int | Callable[..., Any] | None = None,
        waited_for: bool = False,
        parent_buildid: int | None = None,
        parent_relationship: str | None = None,
        external_idstring: str | None = None,
    ) -> BuildsetIds:
        """One buildset with a stamp per codebase of the scheduler (its defaults, overridden by
        the given stamp of that codebase), plus the given stamps of other codebases."""
        given: dict[str, Mapping[str, Any]] = {}
        for ss in sourcestamps:
            codebase = ss["codebase"]
            if codebase in given:
                raise ValueError(f"two sourcestamps for codebase {codebase!r}")
            given[codebase] = ss
        stamps: list[int | SourceStampSpec] = []
        for codebase in self.config.codebases:
            values = {**(await self.codebase_defaults(codebase)), **given.get(codebase, {})}
            stamps.append(_stamp(codebase, values))
        stamps.extend(
            _stamp(codebase, given[codebase])
            for codebase in given
            if codebase not in self.config.codebases
        )
        if callable(priority):
            priority = priority(list(builder_names or self.config.builder_names), {})
        return await self.add_buildset_for_sourcestamps(
            sourcestamps=stamps,
            reason=reason,
            properties=properties,
            builder_names=builder_names,
            priority=priority,
            waited_for=waited_for,
            parent_buildid=parent_buildid,
            parent_relationship=parent_relationship,
            external_idstring=external_idstring,
        )

    async def add_buildset_for_sourcestamps(
        self,
        *,
        sourcestamps: Sequence[int | SourceStampSpec],
        reason: str,
        properties: Mapping[str, tuple[Any, str]] | None = None,
        builder_names: Sequence[str] | None = None,
        priority: object = None,
        changes: Sequence[ChangeView] = (),
        waited_for: bool = False,
        external_idstring: str | None = None,
        parent_buildid: int | None = None,
        parent_relationship: str | None = None,
    ) -> BuildsetIds:
        """The buildset, on the known builders among ``builder_names`` (default: the
        scheduler's ``builderNames``, rendered). Properties: the given ones, then the
        scheduler's, then those of the changes, each overriding the one before (Buildbot's
        order); renderables among them are rendered with them."""
        props = Properties.from_dict(properties or {})
        props.update_from_properties(Properties.from_dict(self.config.properties_with_scheduler()))
        for change in changes:
            props.update_from_properties(Properties.from_dict(change.properties.asDict()))
        # what Buildbot's renderers may read besides the properties
        setattr(props, "changes", [c.asDict() for c in changes])  # noqa: B010
        setattr(props, "sourcestamps", list(sourcestamps))  # noqa: B010
        names = _names(await props.render(builder_names or self.config.builder_names_to_render))
        rendered = {
            name: (await props.render(value), source)
            for name, (value, source) in props.as_dict().items()
        }
        builderids = await self.queries.builder_ids(names)
        if len(builderids) < len(set(names)):
            log.warning("scheduler_unknown_builders", scheduler=self.name, builders=names)
        return await self.ctx.updates.add_buildset(
            scheduler=self.name,
            sourcestamps=sourcestamps,
            reason=reason,
            properties=rendered,
            builderids=builderids,
            waited_for=waited_for,
            external_idstring=external_idstring,
            parent_buildid=parent_buildid,
            parent_relationship=parent_relationship,
            priority=priority if isinstance(priority, int) else 0,
        )


def _names(rendered: object) -> list[str]:
    if isinstance(rendered, str):
        return [rendered]
    if isinstance(rendered, list | tuple) and all(isinstance(n, str) for n in rendered):
        return list(rendered)
    raise TypeError(f"builderNames rendered to {rendered!r}, not a list of builder names")


def _stamp(codebase: str, values: Mapping[str, Any]) -> SourceStampSpec:
    stamp: SourceStampSpec = {
        "codebase": codebase,
        "repository": values.get("repository") or "",
        "branch": values.get("branch"),
        "revision": values.get("revision"),
        "project": values.get("project") or "",
    }
    for key in _PATCH_KEYS:
        if key in values:
            stamp[key] = values[key]  # type: ignore[literal-required]  # one of the patch keys
    return stamp
