"""Trigger: start builds through Triggerable schedulers, and optionally wait for them.

The triggered buildsets get this build's source stamps (with ``got_revision`` as the revision,
``updateSourceStamp``), none (``alwaysUseLatest``: the scheduler's codebase defaults) or the
ones given (``sourceStamps``); properties from ``set_properties`` (rendered) and
``copy_properties`` (copied from this build), with source "Trigger". With ``waitForFinish`` the
step's result is the worst of the triggered buildsets' results (those of
``unimportantSchedulerNames`` left out). Stopping the build stops the wait and cancels the
triggered requests: those still waiting end CANCELLED, builds already running are stopped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import structlog

from buildyard.common.errors import config_error
from buildyard.master.model.results import Results, worst
from buildyard.master.steps.base import BuildStep, BuildStepFailed

log = structlog.get_logger(__name__)

__all__ = ["Trigger"]


class Trigger(BuildStep):
    name = "trigger"
    renderables: ClassVar[Sequence[str]] = (
        *BuildStep.renderables,
        "alwaysUseLatest",
        "parent_relationship",
        "schedulerNames",
        "set_properties",
        "sourceStamps",
        "updateSourceStamp",
        "waitForFinish",
    )

    def __init__(
        self,
        schedulerNames: Sequence[str] | None = None,
        sourceStamp: Mapping[str, Any] | None = None,
        sourceStamps: Sequence[Mapping[str, Any]] | None = None,
        updateSourceStamp: bool | None = None,
        alwaysUseLatest: bool = False,
        parent_relationship: str = "Triggered from",
        waitForFinish: bool = False,
        set_properties: Mapping[str, Any] | None = None,
        copy_properties: Sequence[str] | None = None,
        unimportantSchedulerNames: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        if not schedulerNames:
            config_error("Trigger: you must specify a scheduler to trigger (schedulerNames)")
        if sourceStamp is not None:
            sourceStamps = [*(sourceStamps or ()), sourceStamp]
        if sourceStamps and updateSourceStamp is not None:
            config_error("Trigger: you can't specify both sourceStamps and updateSourceStamp")
        if sourceStamps and alwaysUseLatest:
            config_error("Trigger: you can't specify both sourceStamps and alwaysUseLatest")
        if alwaysUseLatest and updateSourceStamp is not None:
            config_error("Trigger: you can't specify both alwaysUseLatest and updateSourceStamp")
        unimportant = list(unimportantSchedulerNames or ())
        if not set(unimportant) <= set(schedulerNames or ()):
            config_error("Trigger: unimportantSchedulerNames must be a subset of schedulerNames")
        self.schedulerNames: Any = list(schedulerNames or ())
        self.sourceStamps: Any = list(sourceStamps or ())
        self.updateSourceStamp: Any = (
            updateSourceStamp
            if updateSourceStamp is not None
            else not (alwaysUseLatest or sourceStamps)
        )
        self.alwaysUseLatest: Any = alwaysUseLatest
        self.parent_relationship: Any = parent_relationship
        self.waitForFinish: Any = waitForFinish
        self.set_properties: Any = dict(set_properties or {})
        self.copy_properties = list(copy_properties or ())
        self.unimportantSchedulerNames = unimportant
        kwargs.setdefault("flunkOnFailure", True)
        super().__init__(**kwargs)
        self._waiting: asyncio.Future[Any] | None = None
        # the requests this step made, cancelled if it is interrupted
        self._brids: list[int] = []

    def getCurrentSummary(self) -> dict[str, str]:
        if self.description is not None:
            return super().getCurrentSummary()
        return {"step": f"triggering {', '.join(map(str, self.schedulerNames))}"}

    def getResultSummary(self) -> dict[str, str]:
        if self.descriptionDone is not None or self.description is not None:
            return super().getResultSummary()
        text = f"triggered {', '.join(map(str, self.schedulerNames))}"
        if self.results is not None and self.results != Results.SUCCESS:
            text += f" ({self.results.text})"
        return {"step": text}

    def _stamps(self) -> list[dict[str, Any]]:
        if self.sourceStamps:
            return [dict(s) for s in self.sourceStamps]
        if self.alwaysUseLatest:
            return []
        rt = self._runtime()
        got = rt.properties.getProperty("got_revision")
        stamps = []
        for ss in rt.sourcestamps:
            stamp = {
                "codebase": ss.codebase,
                "repository": ss.repository,
                "branch": ss.branch,
                "revision": ss.revision,
                "project": ss.project,
            }
            if self.updateSourceStamp:
                revision = got.get(ss.codebase) if isinstance(got, dict) else got
                if revision:
                    stamp["revision"] = revision
            stamps.append(stamp)
        return stamps

    async def run(self) -> int:
        rt = self._runtime()
        lookup = rt.schedulers
        found = [(n, lookup(n) if lookup is not None else None) for n in self.schedulerNames]
        missing = [n for n, s in found if s is None or not hasattr(s, "trigger")]
        if missing:
            await self.addCompleteLog(
                "err.text", f"not valid Triggerable schedulers: {', '.join(missing)}\n"
            )
            return int(Results.EXCEPTION)
        props: dict[str, tuple[Any, str]] = {
            name: (value, "Trigger") for name, value in self.set_properties.items()
        }
        for name in self.copy_properties:
            if rt.properties.hasProperty(name):
                props[name] = (rt.properties.getProperty(name), "Trigger")
        stamps = self._stamps()
        waits: list[tuple[str, asyncio.Future[Results]]] = []
        for name, scheduler in found:
            assert scheduler is not None
            try:
                ids, result = await scheduler.trigger(
                    waited_for=bool(self.waitForFinish),
                    sourcestamps=stamps,
                    set_props=props,
                    parent_buildid=rt.buildid,
                    parent_relationship=self.parent_relationship,
                )
            except RuntimeError as exc:  # a disabled scheduler
                raise BuildStepFailed(str(exc)) from exc
            waits.append((name, result))
            if ids is None:  # a NightlyTriggerable: it builds at its next time
                continue
            self._brids.extend(ids.brids.values())
            for brid in ids.brids.values():
                await self.addURL(f"{name} #{ids.bsid} (request {brid})", f"buildrequests/{brid}")
        if not self.waitForFinish:
            return int(Results.SUCCESS)
        self._waiting = asyncio.gather(*(w for _n, w in waits))
        try:
            outcomes = await self._waiting
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            return int(Results.CANCELLED)  # the build was stopped while waiting
        finally:
            self._waiting = None
        important = [
            r
            for (name, _w), r in zip(waits, outcomes, strict=True)
            if name not in self.unimportantSchedulerNames
        ]
        return int(worst(important))

    async def interrupt(self, reason: str) -> None:
        """Cancel what this step triggered, as Buildbot does: a request still waiting is
        completed CANCELLED, a build already running is stopped."""
        await super().interrupt(reason)
        cancel = self._runtime().cancel_buildrequest if self.build is not None else None
        if cancel is not None:
            for brid in self._brids:
                try:
                    await cancel(brid, "parent build was interrupted")
                except Exception:
                    log.exception("trigger_cancel_failed", brid=brid)
        if self._waiting is not None:
            self._waiting.cancel()
