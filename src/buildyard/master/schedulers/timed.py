"""``schedulers.Periodic`` and ``schedulers.Nightly``: build on the clock.

Each firing stores its time as the scheduler's ``last_build`` state before it starts the
buildset, and the next firing is computed from that time: a restarted master does not fire
again for a time already fired, and fires at once (once) for a time missed while it was down.
``Periodic`` fires every ``periodicBuildTimer`` seconds, the first time as soon as it starts;
``Nightly`` fires at the times its cron-like arguments name (see
:mod:`buildyard.master.schedulers.cron`), in the master's local time.

A firing builds the changes classified since the previous one (when the scheduler watches
changes: with ``onlyIfChanged`` or ``createAbsoluteSourceStamps``), else the codebases' defaults.
With ``onlyIfChanged`` a firing without an important change is skipped, except the first one of
a new scheduler and the first after ``onlyIfChanged`` was turned on (state
``last_only_if_changed``), and except at a ``force_at_*`` time of a Nightly.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog

from buildyard.common.config_object import is_placeholder
from buildyard.common.errors import config_error
from buildyard.master.model.results import Results
from buildyard.master.schedulers.arguments import SchedulerBase
from buildyard.master.schedulers.base import SchedulerContext
from buildyard.master.schedulers.change import ChangeView
from buildyard.master.schedulers.changefilter import NOT_A_BRANCH, ChangeFilter
from buildyard.master.schedulers.cron import CronRule
from buildyard.master.schedulers.service import BuildsetScheduler

__all__ = ["Nightly", "NightlyTriggerable", "Periodic", "Timed"]

log = structlog.get_logger(__name__)


class Timed(SchedulerBase):
    """The arguments shared by the clock-driven schedulers."""

    only_if_changed: bool
    branch: Any
    change_filter: ChangeFilter | None
    file_is_important: Callable[[Any], object] | None
    only_important: bool

    def _timed(
        self,
        *,
        name: object,
        builderNames: object,
        reason: object,
        createAbsoluteSourceStamps: object,
        onlyIfChanged: object,
        branch: object,
        change_filter: object,
        fileIsImportant: object,
        onlyImportant: object,
        properties: object,
        codebases: object,
        priority: object,
    ) -> str:
        label = self._common(name, builderNames, properties, codebases, priority)
        self.reason = ""
        if not isinstance(reason, str):
            config_error(f"{label}: reason must be a string")
        else:
            try:
                self.reason = reason % {"name": self.name}
            except (KeyError, ValueError, TypeError) as exc:
                config_error(f"{label}: reason {reason!r} can only use %(name)s ({exc})")
        self.create_absolute_sourcestamps = bool(createAbsoluteSourceStamps)
        self.only_if_changed = bool(onlyIfChanged)
        self.branch = branch
        self.change_filter = None
        if isinstance(change_filter, ChangeFilter):
            self.change_filter = change_filter
        elif change_filter is not None and not is_placeholder(change_filter):
            config_error(f"{label}: change_filter must be a util.ChangeFilter")
        self.file_is_important = None
        if fileIsImportant is not None:
            if callable(fileIsImportant):
                self.file_is_important = fileIsImportant
            else:
                config_error(f"{label}: fileIsImportant must be a callable")
        self.only_important = bool(onlyImportant)
        return label

    def next_build_time(
        self, last: float | None, now: float, tz: datetime.tzinfo | None
    ) -> float | None:
        """When to fire next, given the previous firing (None: never fired); None: never."""
        raise NotImplementedError

    def force_build_at(self, when: float, tz: datetime.tzinfo | None) -> bool:
        """Whether a firing at ``when`` builds even without important changes."""
        return False

    def make_service(self, name: str, ctx: SchedulerContext) -> TimedScheduler:
        return TimedScheduler(name, self, ctx)


class Periodic(Timed):
    """Builds every ``periodicBuildTimer`` seconds."""

    buildbot_class = "buildbot.schedulers.timed.Periodic"

    def __init__(
        self,
        name: str,
        builderNames: Sequence[str],
        *,
        periodicBuildTimer: float | None = None,
        reason: str = "The Periodic scheduler named '%(name)s' triggered this build",
        createAbsoluteSourceStamps: bool = False,
        onlyIfChanged: bool = False,
        branch: Any = NOT_A_BRANCH,
        change_filter: ChangeFilter | None = None,
        fileIsImportant: Callable[[Any], object] | None = None,
        onlyImportant: bool = False,
        properties: dict[str, Any] | None = None,
        codebases: dict[str, dict[str, Any]] | Sequence[str] | None = None,
        priority: int | Callable[..., Any] | None = None,
    ) -> None:
        label = self._timed(
            name=name,
            builderNames=builderNames,
            reason=reason,
            createAbsoluteSourceStamps=createAbsoluteSourceStamps,
            onlyIfChanged=onlyIfChanged,
            branch=branch,
            change_filter=change_filter,
            fileIsImportant=fileIsImportant,
            onlyImportant=onlyImportant,
            properties=properties,
            codebases=codebases,
            priority=priority,
        )
        self.periodic_build_timer = 0.0
        if periodicBuildTimer is None:
            config_error(f"{label}: periodicBuildTimer (seconds) is required")
        elif isinstance(periodicBuildTimer, bool) or not isinstance(
            periodicBuildTimer, int | float
        ):
            config_error(f"{label}: periodicBuildTimer must be a number of seconds")
        elif periodicBuildTimer <= 0:
            config_error(f"{label}: periodicBuildTimer must be positive")
        else:
            self.periodic_build_timer = float(periodicBuildTimer)

    def next_build_time(
        self, last: float | None, now: float, tz: datetime.tzinfo | None
    ) -> float | None:
        if self.periodic_build_timer <= 0:
            return None
        return now if last is None else last + self.periodic_build_timer


class Nightly(Timed):
    """Builds at the times named by ``minute``, ``hour``, ``dayOfMonth``, ``month`` and
    ``dayOfWeek`` (Monday = 0), each an integer, a list of integers or a cron string."""

    buildbot_class = "buildbot.schedulers.timed.Nightly"

    def __init__(
        self,
        name: str,
        builderNames: Sequence[str],
        *,
        minute: int | str | Sequence[int] = 0,
        hour: int | str | Sequence[int] = "*",
        dayOfMonth: int | str | Sequence[int] = "*",
        month: int | str | Sequence[int] = "*",
        dayOfWeek: int | str | Sequence[int] = "*",
        force_at_minute: int | str | Sequence[int] | None = None,
        force_at_hour: int | str | Sequence[int] | None = None,
        force_at_day_of_month: int | str | Sequence[int] | None = None,
        force_at_month: int | str | Sequence[int] | None = None,
        force_at_day_of_week: int | str | Sequence[int] | None = None,
        reason: str = "The Nightly scheduler named '%(name)s' triggered this build",
        createAbsoluteSourceStamps: bool = False,
        onlyIfChanged: bool = False,
        branch: Any = NOT_A_BRANCH,
        change_filter: ChangeFilter | None = None,
        fileIsImportant: Callable[[Any], object] | None = None,
        onlyImportant: bool = False,
        properties: dict[str, Any] | None = None,
        codebases: dict[str, dict[str, Any]] | Sequence[str] | None = None,
        priority: int | Callable[..., Any] | None = None,
    ) -> None:
        label = self._timed(
            name=name,
            builderNames=builderNames,
            reason=reason,
            createAbsoluteSourceStamps=createAbsoluteSourceStamps,
            onlyIfChanged=onlyIfChanged,
            branch=branch,
            change_filter=change_filter,
            fileIsImportant=fileIsImportant,
            onlyImportant=onlyImportant,
            properties=properties,
            codebases=codebases,
            priority=priority,
        )
        self.rule: CronRule | None = None
        try:
            self.rule = CronRule.from_buildbot(minute, hour, dayOfMonth, month, dayOfWeek)
        except ValueError as exc:
            config_error(f"{label}: {exc}")
        forced = (
            force_at_minute,
            force_at_hour,
            force_at_day_of_month,
            force_at_month,
            force_at_day_of_week,
        )
        self.force_rule: CronRule | None = None
        if any(v is not None for v in forced):
            defaults: tuple[object, ...] = (0, "*", "*", "*", "*")
            try:
                self.force_rule = CronRule.from_buildbot(
                    *(d if v is None else v for v, d in zip(forced, defaults, strict=True))
                )
            except ValueError as exc:
                config_error(f"{label}: force_at_* arguments: {exc}")

    def next_build_time(
        self, last: float | None, now: float, tz: datetime.tzinfo | None
    ) -> float | None:
        if self.rule is None:
            return None
        return self.rule.next_after(last or now, tz)

    def force_build_at(self, when: float, tz: datetime.tzinfo | None) -> bool:
        return self.force_rule is not None and self.force_rule.matches(when, tz)


class NightlyTriggerable(Nightly):
    """A Nightly that builds only what a Trigger step gave it since its last firing: at its
    times it builds the last trigger's source stamps and properties (parent build included),
    and nothing if it was not triggered. The trigger is kept in its state (``lastTrigger``), so
    a restart does not lose it. A Trigger step waiting for it gets SUCCESS at once."""

    buildbot_class = "buildbot.schedulers.timed.NightlyTriggerable"

    def __init__(
        self,
        name: str,
        builderNames: Sequence[str],
        *,
        reason: str = "The NightlyTriggerable scheduler named '%(name)s' triggered this build",
        **kwargs: Any,
    ) -> None:
        super().__init__(name, builderNames, reason=reason, **kwargs)

    def make_service(self, name: str, ctx: SchedulerContext) -> NightlyTriggerableScheduler:
        return NightlyTriggerableScheduler(name, self, ctx)


class TimedScheduler(BuildsetScheduler):
    """The running Periodic or Nightly."""

    config: Timed
    #: the time zone of the firing times; None: the master's local time
    tz: datetime.tzinfo | None = None

    def __init__(self, name: str, config: Timed, ctx: SchedulerContext) -> None:
        super().__init__(name, config, ctx)
        self.last_actuated: float | None = None
        self.next_build_at: float | None = None
        self._is_first_build = False

    async def start_work(self) -> None:
        cfg = self.config
        assert self.schedulerid is not None
        self.last_actuated = await self.get_state("last_build", None)
        self._is_first_build = self.last_actuated is None
        if cfg.only_if_changed or cfg.create_absolute_sourcestamps:
            self.consume_changes(
                file_is_important=cfg.file_is_important,
                change_filter=cfg.change_filter,
                only_important=cfg.only_important,
            )
        else:
            await self.ctx.updates.flush_change_classifications(self.schedulerid)
        _ = self.spawn_work(self._fire_on_time(), name="timer")

    def work_stopped(self) -> None:
        self.next_build_at = None

    async def _fire_on_time(self) -> None:
        clock = self.ctx.clock
        while True:
            now = clock.now()
            at = self.config.next_build_time(self.last_actuated, now, self.tz)
            if at is None:
                return
            if at < now:
                log.info("scheduled_build_time_missed", scheduler=self.name, missed=at)
            at = max(at, now)
            self.next_build_at = at
            await clock.sleep(at - now)
            async with self.lock:
                self.next_build_at = None
                self.last_actuated = at
                await self.set_state("last_build", at)
                try:
                    await self.start_build()
                except Exception:
                    log.exception("timed_build_failed", scheduler=self.name)

    async def got_change(self, change: ChangeView, important: bool) -> None:
        cfg = self.config
        assert self.schedulerid is not None
        # the branch is not part of the change filter of these schedulers
        if cfg.branch is not NOT_A_BRANCH and change.branch != cfg.branch:
            return
        await self.ctx.updates.classify_changes(self.schedulerid, {change.number: important})
        if cfg.create_absolute_sourcestamps:
            await self.record_change(change)

    async def start_build(self) -> None:
        """One firing (the lock is held)."""
        cfg = self.config
        assert self.schedulerid is not None
        classified = await self.queries.get_change_classifications(self.schedulerid)
        last_only_if_changed = await self.get_state("last_only_if_changed", True)
        if (
            last_only_if_changed
            and cfg.only_if_changed
            and not any(classified.values())
            and not self._is_first_build
            and not (
                self.last_actuated is not None and cfg.force_build_at(self.last_actuated, self.tz)
            )
        ):
            log.info("scheduled_build_skipped", scheduler=self.name, reason="no important change")
            self._is_first_build = False
            return
        if last_only_if_changed != cfg.only_if_changed:
            await self.set_state("last_only_if_changed", cfg.only_if_changed)
        changeids = sorted(classified)
        if changeids:
            await self.add_buildset_for_changes(changeids, reason=cfg.reason, priority=cfg.priority)
            await self.ctx.updates.flush_change_classifications(
                self.schedulerid, less_than=changeids[-1] + 1
            )
        else:
            await self.add_buildset_for_sourcestamps_with_defaults(
                reason=cfg.reason,
                sourcestamps=[{"codebase": cb} for cb in cfg.codebases],
                priority=cfg.priority,
            )
        self._is_first_build = False


class NightlyTriggerableScheduler(TimedScheduler):
    """The running NightlyTriggerable."""

    def __init__(self, name: str, config: Timed, ctx: SchedulerContext) -> None:
        super().__init__(name, config, ctx)
        # (stamps, {name: [value, source]}, parent build, relationship) of the last trigger
        self._last_trigger: list[Any] | None = None

    async def start_work(self) -> None:
        stored = await self.get_state("lastTrigger", None)
        self._last_trigger = None
        if (
            isinstance(stored, list)
            and len(stored) == 4
            and isinstance(stored[0], list)
            and isinstance(stored[1], dict)
        ):
            self._last_trigger = stored
        elif stored is not None:
            log.warning("last_trigger_unreadable", scheduler=self.name, state=repr(stored)[:200])
        await super().start_work()

    async def trigger(
        self,
        *,
        waited_for: bool,
        sourcestamps: Sequence[Mapping[str, Any]] = (),
        set_props: Mapping[str, tuple[Any, str]] | None = None,
        parent_buildid: int | None = None,
        parent_relationship: str | None = None,
    ) -> tuple[None, asyncio.Future[Results]]:
        """Remember this trigger for the next firing (a later one replaces it); no buildset
        now, so no ids, and the result is SUCCESS at once."""
        if not self.enabled:
            raise RuntimeError(f"scheduler {self.name!r} is disabled: it cannot be triggered")
        props = {name: [value, source] for name, (value, source) in (set_props or {}).items()}
        trigger = [[dict(ss) for ss in sourcestamps], props, parent_buildid, parent_relationship]
        async with self.lock:
            await self.set_state("lastTrigger", trigger)
            self._last_trigger = trigger
        done: asyncio.Future[Results] = asyncio.get_running_loop().create_future()
        done.set_result(Results.SUCCESS)
        return None, done

    async def start_build(self) -> None:
        """One firing (the lock is held): the last trigger's buildset, if there was one."""
        trigger, self._last_trigger = self._last_trigger, None
        if trigger is None:
            log.info("scheduled_build_skipped", scheduler=self.name, reason="not triggered")
            return
        await self.set_state("lastTrigger", None)
        stamps, props, parent_buildid, parent_relationship = trigger
        await self.add_buildset_for_sourcestamps_with_defaults(
            reason=self.config.reason,
            sourcestamps=stamps,
            properties={name: (value, source) for name, (value, source) in props.items()},
            priority=self.config.priority,
            parent_buildid=parent_buildid,
            parent_relationship=parent_relationship,
        )
