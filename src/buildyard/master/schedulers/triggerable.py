"""Schedulers driven by other builds: ``Triggerable`` (a Trigger step fires it) and
``Dependent`` (a buildset of its upstream scheduler completed successfully).

``Triggerable.trigger`` is what the Trigger step calls: it adds one buildset (source stamps and
properties from the triggering build, the scheduler's own properties on top) and returns its
ids together with a future of the buildset's result, resolved on ``buildsets/<id>/complete``.

``Dependent`` follows the buildsets its upstream scheduler adds (the ``scheduler`` name of the
``buildsets/<id>/new`` event) and keeps their ids in its state, so a restart does not lose the
ones still running; when one completes with SUCCESS or WARNINGS it adds a buildset on the same
source stamps.

The buildsets waited for may be completed by another master (with ``c['mq']`` type
``postgres`` its events reach this one). A completion whose event this master did not get (it
started after it, or its queue lost more than the table keeps) is found in the database: when
``Dependent`` starts, and every :data:`RECHECK` seconds while anything is waited for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import structlog

from buildyard.common.errors import config_error
from buildyard.master.model.buildsets import BuildsetIds
from buildyard.master.model.results import Results
from buildyard.master.model.sourcestamps import SourceStampSpec
from buildyard.master.schedulers.arguments import SchedulerBase
from buildyard.master.schedulers.base import SchedulerContext
from buildyard.master.schedulers.service import BuildsetScheduler

log = structlog.get_logger(__name__)

# how often a wait for buildsets to complete also asks the database (seconds)
RECHECK = 30.0

__all__ = ["Dependent", "Triggerable"]


class Triggerable(SchedulerBase):
    buildbot_class = "buildbot.schedulers.triggerable.Triggerable"

    def __init__(
        self,
        name: str,
        builderNames: Sequence[str],
        *,
        properties: Mapping[str, Any] | None = None,
        reason: str | None = None,
        codebases: Any = None,
        priority: Any = None,
    ) -> None:
        self._common(name, builderNames, properties, codebases, priority)
        self.reason = (
            reason
            if reason is not None
            else f"The Triggerable scheduler named '{name}' triggered this build"
        )

    def make_service(self, name: str, ctx: SchedulerContext) -> TriggerableService:
        return TriggerableService(name, self, ctx)


class TriggerableService(BuildsetScheduler):
    config: Triggerable

    async def trigger(
        self,
        *,
        waited_for: bool,
        sourcestamps: Sequence[Mapping[str, Any]] = (),
        set_props: Mapping[str, tuple[Any, str]] | None = None,
        parent_buildid: int | None = None,
        parent_relationship: str | None = None,
    ) -> tuple[BuildsetIds, asyncio.Future[Results]]:
        """Add the buildset; returns its ids and a future of its result."""
        if not self.enabled:
            raise RuntimeError(f"scheduler {self.name!r} is disabled: it cannot be triggered")
        # subscribe first: a quick buildset must not complete before we listen
        sub = self.ctx.mq.subscribe(("buildsets", None, "complete"))
        try:
            ids = await self.add_buildset_for_sourcestamps_with_defaults(
                reason=self.config.reason,
                sourcestamps=sourcestamps,
                properties=set_props,
                priority=self.config.priority,
                waited_for=waited_for,
                parent_buildid=parent_buildid,
                parent_relationship=parent_relationship,
            )
        except BaseException:
            sub.close()
            raise
        result: asyncio.Future[Results] = asyncio.get_running_loop().create_future()
        _ = self.spawn(self._wait(sub, ids.bsid, result), name=f"buildset:{ids.bsid}")
        _ = self.spawn(self._recheck(ids.bsid, result), name=f"buildset-check:{ids.bsid}")
        return ids, result

    async def _wait(self, sub: Any, bsid: int, result: asyncio.Future[Results]) -> None:
        # the database check may come first: it closes the subscription, which ends this
        result.add_done_callback(lambda _: sub.close())
        try:
            async with sub:
                async for key, body in sub:
                    if key[1] == str(bsid):
                        _resolve(result, body)
                        return
        finally:
            if not result.done():
                result.cancel()

    async def _recheck(self, bsid: int, result: asyncio.Future[Results]) -> None:
        queries = self.ctx.queries
        if queries is None:
            return
        while not result.done():
            try:
                await asyncio.wait_for(asyncio.shield(result), timeout=RECHECK)
            except TimeoutError:
                pass
            except asyncio.CancelledError:
                if result.cancelled():
                    return
                raise
            if result.done():
                return
            body = await queries.get_buildset(bsid)
            if body is not None and body.get("complete"):
                log.info("buildset_completion_found_in_db", scheduler=self.name, bsid=bsid)
                _resolve(result, body)


def _resolve(result: asyncio.Future[Results], body: Mapping[str, Any]) -> None:
    if not result.done():
        code = body.get("results")
        result.set_result(Results(code if code is not None else 0))


class Dependent(SchedulerBase):
    buildbot_class = "buildbot.schedulers.dependent.Dependent"

    @classmethod
    def state_class_name(cls) -> str:
        """Buildbot keeps a Dependent's ``upstream_bsids`` under its service object, named by
        the qualified class name (the other schedulers' state goes under the bare one)."""
        own = cls.__dict__.get("buildbot_class")
        return own if isinstance(own, str) else f"{cls.__module__}.{cls.__name__}"

    def __init__(
        self,
        name: str,
        upstream: Any,
        builderNames: Sequence[str],
        *,
        properties: Mapping[str, Any] | None = None,
        priority: Any = None,
    ) -> None:
        label = self._common(name, builderNames, properties, None, priority)
        if not isinstance(upstream, SchedulerBase):
            config_error(f"{label}: upstream must be a scheduler, not {upstream!r}")
            self.upstream_name = ""
        else:
            self.upstream_name = upstream.name
        self.reason = f"downstream of scheduler {self.upstream_name!r}"

    def _compare_key(self) -> object:
        # the upstream by name: its own arguments are its business
        return (dict(self._config_arguments, upstream=self.upstream_name),)

    def make_service(self, name: str, ctx: SchedulerContext) -> DependentService:
        return DependentService(name, self, ctx)


class DependentService(BuildsetScheduler):
    config: Dependent

    async def start_work(self) -> None:
        sub = self.ctx.mq.subscribe(("buildsets", None, "new"), ("buildsets", None, "complete"))
        _ = self.spawn_work(self._follow(sub), name="upstream")
        _ = self.spawn_work(self._recheck(), name="upstream-check")

    async def _recheck(self) -> None:
        """The watched buildsets completed while no event could tell this master: found in
        the database now (once subscribed), then every :data:`RECHECK` seconds."""
        queries = self.ctx.queries
        if queries is None:
            return
        while True:
            for bsid in await self._watched():
                body = await queries.get_buildset(bsid)
                if body is not None and body.get("complete"):
                    async with self.lock:
                        await self._completed(bsid, body)
            await self.ctx.clock.sleep(RECHECK)

    async def _follow(self, sub: Any) -> None:
        async with sub:
            async for key, body in sub:
                bsid = int(key[1])
                async with self.lock:
                    if key[2] == "new":
                        if body.get("scheduler") == self.config.upstream_name:
                            await self._remember(bsid)
                    else:
                        await self._completed(bsid, body)

    async def _watched(self) -> list[int]:
        return [int(i) for i in await self.get_state("upstream_bsids", [])]

    async def _remember(self, bsid: int) -> None:
        watched = await self._watched()
        if bsid not in watched:
            await self.set_state("upstream_bsids", [*watched, bsid])

    async def _completed(self, bsid: int, body: Mapping[str, Any]) -> None:
        watched = await self._watched()
        if bsid not in watched:
            return
        await self.set_state("upstream_bsids", [b for b in watched if b != bsid])
        if body.get("results") not in (int(Results.SUCCESS), int(Results.WARNINGS)):
            log.info("dependent_upstream_failed", scheduler=self.name, bsid=bsid)
            return
        stamps: list[int | SourceStampSpec] = [int(s["ssid"]) for s in body.get("sourcestamps", [])]
        await self.add_buildset_for_sourcestamps(sourcestamps=stamps, reason=self.config.reason)
