"""``schedulers.SingleBranchScheduler`` and ``schedulers.AnyBranchScheduler``: build on changes.

Both take keyword arguments only (Buildbot reports positional ones). A change that passes the
filter is important unless ``fileIsImportant(change)`` says otherwise; with ``onlyImportant`` an
unimportant change is dropped at once.

Without ``treeStableTimer`` each important change starts a buildset of its own, at once, and
unimportant ones are ignored. With it, changes are classified in the database (so a restart keeps
them: the restarted scheduler reloads them and starts their timers again) and a timer waits until
the tree has been quiet for ``treeStableTimer`` seconds: an important change starts or restarts
the timer, an unimportant one restarts a running timer. When the timer fires, one buildset gets
every change classified so far. SingleBranchScheduler has one timer; AnyBranchScheduler has one
per (codebase, project, repository, branch).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from buildyard.common.config_object import is_placeholder
from buildyard.common.errors import config_error
from buildyard.master.schedulers.arguments import SchedulerBase
from buildyard.master.schedulers.base import SchedulerContext
from buildyard.master.schedulers.change import ChangeView
from buildyard.master.schedulers.changefilter import NOT_A_BRANCH, ChangeFilter
from buildyard.master.schedulers.service import BuildsetScheduler

__all__ = ["AnyBranchScheduler", "BaseBasicScheduler", "SingleBranchScheduler"]

log = structlog.get_logger(__name__)

_DEFAULT_REASON = "The %(classname)s scheduler named '%(name)s' triggered this build"

TimerName = tuple[str, str, str, str | None]


class BaseBasicScheduler(SchedulerBase):
    """The arguments and behaviour shared by the two change schedulers."""

    tree_stable_timer: float | None
    file_is_important: Callable[[Any], object] | None
    only_important: bool
    change_filter: ChangeFilter | None

    def _basic(
        self,
        args: tuple[object, ...],
        *,
        name: object,
        builderNames: object,
        treeStableTimer: object,
        fileIsImportant: object,
        reason: object,
        onlyImportant: object,
        properties: object,
        codebases: object,
        priority: object,
    ) -> str:
        if args:
            config_error(
                f"{type(self).__name__}: pass arguments to schedulers using keyword arguments"
            )
        label = self._common(name, builderNames, properties, codebases, priority)
        self.tree_stable_timer = None
        if treeStableTimer is not None:
            if isinstance(treeStableTimer, bool) or not isinstance(treeStableTimer, int | float):
                config_error(f"{label}: treeStableTimer must be a number of seconds or None")
            elif treeStableTimer < 0:
                config_error(f"{label}: treeStableTimer must not be negative")
            else:
                self.tree_stable_timer = treeStableTimer
        self.file_is_important = None
        if fileIsImportant is not None:
            if callable(fileIsImportant):
                self.file_is_important = fileIsImportant
            else:
                config_error(f"{label}: fileIsImportant must be a callable")
        self.only_important = bool(onlyImportant)
        self.reason = ""
        if not isinstance(reason, str):
            config_error(f"{label}: reason must be a string")
        else:
            try:
                self.reason = reason % {"name": self.name, "classname": type(self).__name__}
            except (KeyError, ValueError, TypeError) as exc:
                config_error(
                    f"{label}: reason {reason!r} can only use %(name)s and %(classname)s ({exc})"
                )
        return label

    def timer_name(self, change: ChangeView) -> TimerName:
        """Which tree-stable timer the change starts or restarts."""
        raise NotImplementedError

    def timer_changes(self, name: TimerName) -> dict[str, str | None]:
        """Which classified changes the timer ``name`` builds (filters on their attributes)."""
        return {}

    def make_service(self, name: str, ctx: SchedulerContext) -> BasicScheduler:
        return BasicScheduler(name, self, ctx)


class SingleBranchScheduler(BaseBasicScheduler):
    """Builds the changes of one branch: ``branch=`` (None: the default branch) or a
    ``change_filter``."""

    buildbot_class = "buildbot.schedulers.basic.SingleBranchScheduler"

    def __init__(
        self,
        *args: object,
        name: str | None = None,
        treeStableTimer: float | None = None,
        builderNames: Sequence[str] | None = None,
        branch: Any = NOT_A_BRANCH,
        branches: Any = NOT_A_BRANCH,
        fileIsImportant: Callable[[Any], object] | None = None,
        categories: str | Sequence[str] | None = None,
        reason: str = _DEFAULT_REASON,
        change_filter: ChangeFilter | None = None,
        onlyImportant: bool = False,
        createAbsoluteSourceStamps: bool = False,
        properties: dict[str, Any] | None = None,
        codebases: dict[str, dict[str, Any]] | Sequence[str] | None = None,
        priority: int | Callable[..., Any] | None = None,
    ) -> None:
        label = self._basic(
            args,
            name=name,
            builderNames=builderNames,
            treeStableTimer=treeStableTimer,
            fileIsImportant=fileIsImportant,
            reason=reason,
            onlyImportant=onlyImportant,
            properties=properties,
            codebases=codebases,
            priority=priority,
        )
        self.create_absolute_sourcestamps = bool(createAbsoluteSourceStamps)
        self.change_filter = None
        if branch is NOT_A_BRANCH and change_filter is None:
            config_error(
                f"{label}: the 'branch' argument to SingleBranchScheduler is mandatory unless "
                "change_filter is provided"
            )
        elif branches is not NOT_A_BRANCH:
            config_error(
                f"{label}: the 'branches' argument is not allowed for SingleBranchScheduler"
            )
        else:
            self.change_filter = _filter(change_filter, branch, categories)

    def timer_name(self, change: ChangeView) -> TimerName:
        return ("only", "", "", None)  # one timer for all changes


class AnyBranchScheduler(BaseBasicScheduler):
    """Builds changes on any branch (``branches=`` or ``change_filter`` narrow it), with a
    tree-stable timer per branch."""

    buildbot_class = "buildbot.schedulers.basic.AnyBranchScheduler"

    def __init__(
        self,
        *args: object,
        name: str | None = None,
        treeStableTimer: float | None = None,
        builderNames: Sequence[str] | None = None,
        branch: Any = NOT_A_BRANCH,
        branches: Any = NOT_A_BRANCH,
        fileIsImportant: Callable[[Any], object] | None = None,
        categories: str | Sequence[str] | None = None,
        reason: str = _DEFAULT_REASON,
        change_filter: ChangeFilter | None = None,
        onlyImportant: bool = False,
        properties: dict[str, Any] | None = None,
        codebases: dict[str, dict[str, Any]] | Sequence[str] | None = None,
        priority: int | Callable[..., Any] | None = None,
    ) -> None:
        label = self._basic(
            args,
            name=name,
            builderNames=builderNames,
            treeStableTimer=treeStableTimer,
            fileIsImportant=fileIsImportant,
            reason=reason,
            onlyImportant=onlyImportant,
            properties=properties,
            codebases=codebases,
            priority=priority,
        )
        self.change_filter = None
        if branch is not NOT_A_BRANCH:
            config_error(
                f"{label}: the 'branch' argument is not allowed for AnyBranchScheduler; use "
                "branches or change_filter"
            )
        else:
            self.change_filter = _filter(change_filter, branches, categories)

    def timer_name(self, change: ChangeView) -> TimerName:
        return (change.codebase, change.project, change.repository, change.branch)

    def timer_changes(self, name: TimerName) -> dict[str, str | None]:
        codebase, project, repository, branch = name
        return {
            "codebase": codebase,
            "project": project,
            "repository": repository,
            "branch": branch,
        }


def _filter(
    change_filter: object, branch: object, categories: str | Sequence[str] | None
) -> ChangeFilter | None:
    if is_placeholder(change_filter):
        return None  # a stand-in, already reported
    if change_filter is not None and not isinstance(change_filter, ChangeFilter):
        config_error(f"change_filter must be a util.ChangeFilter, not {change_filter!r}")
        return None
    return ChangeFilter.fromSchedulerConstructorArgs(
        change_filter=change_filter, branch=branch, categories=categories
    )


class BasicScheduler(BuildsetScheduler):
    """The running SingleBranchScheduler or AnyBranchScheduler."""

    config: BaseBasicScheduler

    def __init__(self, name: str, config: BaseBasicScheduler, ctx: SchedulerContext) -> None:
        super().__init__(name, config, ctx)
        self._timers: dict[TimerName, asyncio.Task[None]] = {}

    async def start_work(self) -> None:
        cfg = self.config
        self.consume_changes(
            file_is_important=cfg.file_is_important,
            change_filter=cfg.change_filter,
            only_important=cfg.only_important,
        )
        assert self.schedulerid is not None
        if cfg.tree_stable_timer:
            await self._reload_classified_changes()
        else:
            # no timer: what a previous configuration classified is of no use
            await self.ctx.updates.flush_change_classifications(self.schedulerid)

    async def _reload_classified_changes(self) -> None:
        """Start the timers again for the changes classified before a restart (a change that
        arrives meanwhile may be seen twice, which only restarts its timer)."""
        assert self.schedulerid is not None
        classified = await self.queries.get_change_classifications(self.schedulerid)
        async with self.lock:
            for changeid, important in classified.items():
                body = await self.queries.get_change(changeid)
                if body is not None:
                    await self.got_change(ChangeView.from_api(body), important)
        if classified:
            log.info("scheduler_reloaded_changes", scheduler=self.name, changes=len(classified))

    def work_stopped(self) -> None:
        self._timers.clear()

    async def got_change(self, change: ChangeView, important: bool) -> None:
        cfg = self.config
        assert self.schedulerid is not None
        if cfg.create_absolute_sourcestamps:
            await self.record_change(change)
        if not cfg.tree_stable_timer:
            if important:
                await self.add_buildset_for_changes(
                    [change.number], reason=cfg.reason, priority=cfg.priority
                )
            return
        name = cfg.timer_name(change)
        running = self._timers.pop(name, None)
        if important or running is not None:
            if running is not None:
                running.cancel()
            self._timers[name] = self.spawn_work(
                self._stable_timer(name, cfg.tree_stable_timer), name=f"tree-stable:{name}"
            )
        await self.ctx.updates.classify_changes(self.schedulerid, {change.number: important})

    async def _stable_timer(self, name: TimerName, seconds: float) -> None:
        await self.ctx.clock.sleep(seconds)
        async with self.lock:
            # a change that came meanwhile replaced this timer with a new one
            if self._timers.get(name) is not asyncio.current_task():
                return
            del self._timers[name]
            await self._tree_stable(name)

    async def _tree_stable(self, name: TimerName) -> None:
        assert self.schedulerid is not None
        mine = await self.queries.get_change_classifications(
            self.schedulerid, **self.config.timer_changes(name)
        )
        if not mine:
            return
        changeids = sorted(mine)
        await self.add_buildset_for_changes(
            changeids, reason=self.config.reason, priority=self.config.priority
        )
        await self._forget(changeids)

    async def _forget(self, changeids: list[int]) -> None:
        """Drop the classifications of the changes just built.

        Buildbot flushes every classification below the highest id built, which also drops
        the pending changes of other branches' timers (AnyBranchScheduler); those are put back.
        """
        assert self.schedulerid is not None
        built = set(changeids)
        everything = await self.queries.get_change_classifications(self.schedulerid)
        keep = {c: imp for c, imp in everything.items() if c not in built and c < changeids[-1]}
        await self.ctx.updates.flush_change_classifications(
            self.schedulerid, less_than=changeids[-1] + 1
        )
        if keep:
            await self.ctx.updates.classify_changes(self.schedulerid, keep)
