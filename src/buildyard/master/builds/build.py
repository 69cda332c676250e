"""One build: its properties, its steps in order, its result, and what becomes of its requests.

A build runs the factory's steps (a fresh copy of each) one after the other. After each step
its result is folded into the build's (worst wins, with the step's flunkOn*/warnOn* flags); a
step with haltOnFailure that fails, or one that ends EXCEPTION, RETRY or CANCELLED, stops the
build: the remaining steps run only if they are ``alwaysRun``. Properties set while a step ran
are stored when it ends. At the end the requests are completed with the build's result, or, for
RETRY (the worker was lost), given back to the queue so another build runs them.
"""

from __future__ import annotations

import asyncio
import posixpath
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog

from buildyard.common.awaitables import resolve
from buildyard.master.data.pipeline import NewBuild
from buildyard.master.data.updates import Updates
from buildyard.master.db.connector import Database
from buildyard.master.logs.writer import LogLimits
from buildyard.master.model.buildrequests import BuildRequest
from buildyard.master.model.properties import Properties, render
from buildyard.master.model.results import Results
from buildyard.master.model.sourcestamps import SourceStamp
from buildyard.master.steps.base import BuildStep, combine
from buildyard.master.steps.locks import Held, LockRegistry, accesses, acquire_all, release_all
from buildyard.master.steps.runtime import BuildRuntime
from buildyard.master.workers.connection import WorkerConnection

log = structlog.get_logger(__name__)

_FINAL_TEXT = {
    Results.SUCCESS: "build successful",
    Results.WARNINGS: "warnings",
    Results.FAILURE: "failed",
    Results.SKIPPED: "skipped",
    Results.EXCEPTION: "exception",
    Results.RETRY: "retry",
    Results.CANCELLED: "cancelled",
}


class Build:
    def __init__(
        self,
        *,
        updates: Updates,
        db: Database,
        builder_config: Any,
        builderid: int,
        requests: Sequence[BuildRequest],
        conn: WorkerConnection,
        worker_config: Any,
        masterid: int,
        global_properties: Mapping[str, Any] | None = None,
        log_limits: LogLimits | None = None,
        locks: LockRegistry | None = None,
        master_basedir: Path | None = None,
        schedulers: Callable[[str], Any] | None = None,
        secrets_providers: Sequence[Any] = (),
        cancel_buildrequest: Callable[[int, str], Awaitable[bool]] | None = None,
    ) -> None:
        self.updates = updates
        self.db = db
        self.config = builder_config
        self.builderid = builderid
        self.requests = list(requests)
        self.conn = conn
        self.worker_config = worker_config
        self.masterid = masterid
        self.global_properties = dict(global_properties or {})
        self.log_limits = log_limits or LogLimits()
        self.locks = locks or LockRegistry()
        self._lock_wait: asyncio.Task[Held] | None = None
        self.buildid: int | None = None
        self.number: int | None = None
        self.results: Results | None = None
        self.properties = Properties()
        self.sourcestamps: list[SourceStamp] = []
        self.master_basedir = master_basedir
        self.schedulers = schedulers
        self.cancel_buildrequest = cancel_buildrequest
        self.secrets_providers = list(secrets_providers)
        self.steps: list[BuildStep] = []
        self.executed: list[BuildStep] = []
        self.runtime: BuildRuntime | None = None
        self.stopped = False
        self._stop_reason = ""
        self._texts: list[str] = []
        self._stored_properties: dict[str, tuple[Any, str]] = {}

    @property
    def name(self) -> str:
        return str(self.config.name)

    # -- control -------------------------------------------------------------------------------

    async def stop(self, reason: str) -> None:
        """Stop the build: the running step is interrupted and ends CANCELLED, the rest are
        skipped unless alwaysRun."""
        self.stopped = True
        self._stop_reason = reason
        if self._lock_wait is not None:
            self._lock_wait.cancel()
        if self.runtime is not None and self.runtime.current_step is not None:
            await resolve(self.runtime.current_step.interrupt(reason))

    def addStepsAfterCurrentStep(self, steps: Sequence[BuildStep]) -> None:
        """Dynamic builds: run these (templates) right after the step that is running."""
        at = len(self.executed)
        self.steps[at:at] = [s.copy() for s in steps]

    def addStepsAfterLastStep(self, steps: Sequence[BuildStep]) -> None:
        self.steps.extend(s.copy() for s in steps)

    def getProperties(self) -> Properties:
        return self.properties

    def getProperty(self, name: str, default: Any = None) -> Any:
        return self.properties.getProperty(name, default)

    def setProperty(self, name: str, value: Any, source: str, runtime: bool = True) -> None:
        self.properties.setProperty(name, value, source, runtime=runtime)

    # -- running -------------------------------------------------------------------------------

    async def run(self) -> Results:
        """Run to the end and settle the requests; returns the build's result."""
        first = self.requests[0]
        # Nothing to wait for or decide before the build runs (no locks, no do_build_if): its
        # properties and its "building" state are stored in the transaction that adds it.
        simple = (
            not self.config.locks
            and not (getattr(self.worker_config, "locks", ()) or ())
            and getattr(self.config, "do_build_if", None) is None
        )
        setup_failed: list[Exception] = []

        def first_properties(new: NewBuild) -> tuple[dict[str, tuple[Any, str]], str | None]:
            self.buildid, self.number = new.buildid, new.number
            try:
                self._setup_properties(new.properties, new.sourcestamps)
            except Exception as exc:  # raised below: the build ends EXCEPTION, not retried
                setup_failed.append(exc)
                return {}, None
            return self._unstored_properties(), None if self.stopped else "building"

        try:
            new = await self.updates.add_build_of_buildset(
                builderid=self.builderid,
                buildrequestid=first.id,
                workerid=self.conn.workerid,
                masterid=self.masterid,
                state_string="starting",
                bsid=first.buildsetid,
                then=first_properties if simple else None,
            )
            self.buildid, self.number = new.buildid, new.number
        except Exception:
            # the build could not start: its requests go back to the queue
            log.exception("build_not_started", builder=self.name)
            await asyncio.shield(
                self.updates.unclaim_buildrequests(
                    [r.id for r in self.requests], masterid=self.masterid
                )
            )
            return Results.RETRY
        log.info("build_started", builder=self.name, number=self.number, worker=self.conn.name)
        results = Results.EXCEPTION
        try:
            if setup_failed:
                raise setup_failed[0]
            if not simple:
                self._setup_properties(new.properties, new.sourcestamps)
            self.runtime = BuildRuntime(
                updates=self.updates,
                buildid=self.buildid,
                number=self.number,
                builderid=self.builderid,
                builder_name=self.name,
                properties=self.properties,
                conn=self.conn,
                worker=self.worker_config,
                builder_dir=self._builder_dir(),
                workdir=str(getattr(self.config.factory, "workdir", "build")),
                env=dict(self.config.env),
                log_limits=self.log_limits,
                locks=self.locks,
                build=self,
                master_basedir=self.master_basedir,
                schedulers=self.schedulers,
                cancel_buildrequest=self.cancel_buildrequest,
                secrets_providers=self.secrets_providers,
                sourcestamps=list(self.sourcestamps),
            )
            self.properties.build = self.runtime  # Interpolate's src:, worker: and secret:
            if simple:
                if self.stopped:
                    results = Results.CANCELLED
                else:
                    results = await self._run_steps(self.runtime)
            else:
                results = await self._run_guarded(self.runtime)
        except asyncio.CancelledError:
            results = Results.RETRY
            await asyncio.shield(self._finish(results))
            raise
        except Exception:
            log.exception("build_failed", builder=self.name, number=self.number)
            results = Results.EXCEPTION
        await self._finish(results)
        return results

    async def _run_guarded(self, rt: BuildRuntime) -> Results:
        """Store the properties, take the locks, ask ``do_build_if``, then run the steps."""
        assert self.buildid is not None
        await self._store_properties()
        held = await self._acquire_locks(await self._wanted_locks())
        try:
            if self.stopped:
                return Results.CANCELLED
            if not await self._do_build():
                return Results.SKIPPED
            await self.updates.set_build_state_string(self.buildid, "building")
            return await self._run_steps(rt)
        finally:
            release_all(self, held)

    async def _do_build(self) -> bool:
        """``BuilderConfig(do_build_if=...)``: called with the build; False skips it."""
        check = getattr(self.config, "do_build_if", None)
        if check is None:
            return True
        decided = check(self)
        decided = await resolve(decided)
        return bool(decided)

    async def _wanted_locks(self) -> list[tuple[Any, Any]]:
        """The builder's and the worker's locks (``locks=...``), rendered: (lock, access)."""
        return [
            (self.locks.real(a.lockid, self.conn.name), a)
            for a in accesses(
                await render(
                    [*self.config.locks, *(getattr(self.worker_config, "locks", ()) or ())],
                    self.properties,
                )
            )
        ]

    async def _acquire_locks(self, wanted: list[tuple[Any, Any]]) -> Held:
        """Take the locks ``wanted`` (:meth:`_wanted_locks`); the time spent waiting is the
        build's ``locks_duration_s``. A stop while waiting gives up."""
        assert self.buildid is not None
        if not wanted:
            return []
        if not all(lock.available(self, access) for lock, access in wanted):
            await self.updates.set_build_state_string(self.buildid, "waiting for locks")
        started = time.monotonic()
        self._lock_wait = asyncio.get_running_loop().create_task(acquire_all(self, wanted))
        try:
            held = await self._lock_wait
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            held = []  # stopped while waiting
        finally:
            self._lock_wait = None
        waited = round(time.monotonic() - started)
        if waited:
            await self.updates.add_build_locks_duration(self.buildid, waited)
        return held

    def _builder_dir(self) -> str:
        basedir = self.conn.info.get("basedir")
        workerbuilddir = str(self.config.workerbuilddir)
        return (
            posixpath.join(basedir, workerbuilddir) if isinstance(basedir, str) else workerbuilddir
        )

    async def _run_steps(self, rt: BuildRuntime) -> Results:
        factory = self.config.factory
        self.steps = [s.copy() for s in getattr(factory, "steps", ())]
        results = Results.SUCCESS
        terminate = False
        while len(self.executed) < len(self.steps):
            step = self.steps[len(self.executed)]
            self.executed.append(step)
            if (terminate or self.stopped) and not step.alwaysRun:
                continue
            step_results = await step.execute(rt)
            await self._store_properties()
            summary = step.getBuildResultSummary()
            if "build" in summary:
                self._texts.append(summary["build"])
            results, halt = combine(step, step_results, results)
            terminate = terminate or halt
            if not self.conn.attached or self.conn.peer.closed:
                terminate = True
        if self.stopped and results not in (Results.RETRY, Results.EXCEPTION):
            results = Results.CANCELLED
        return results

    async def _finish(self, results: Results) -> None:
        assert self.buildid is not None
        self.results = results
        # as Buildbot composes it: the result, why it was stopped, that the worker was lost,
        # then what the steps said of the build ("failed 'make' (failure)")
        words = [_FINAL_TEXT[results]]
        if self.stopped and self._stop_reason:
            words.append(f"({self._stop_reason})")
        if results == Results.RETRY and (not self.conn.attached or self.conn.peer.closed):
            words.append("lost connection")
        text = " ".join([*words, *self._texts])
        try:
            await self._store_properties()
            # the build's end and its requests' in one transaction
            await self.updates.end_build(
                self.buildid,
                results,
                state_string=text,
                brids=[r.id for r in self.requests],
                masterid=self.masterid,
            )
        except Exception:
            log.exception("build_finish_failed", builder=self.name, number=self.number)
        log.info("build_finished", builder=self.name, number=self.number, results=results.text)

    # -- properties ----------------------------------------------------------------------------

    def _setup_properties(
        self, stored: Mapping[str, tuple[Any, str]], stamps: Sequence[SourceStamp]
    ) -> None:
        """The build's properties: the global ones, then its (first) request's buildset's
        ``stored`` properties and ``stamps`` (read as the build was added), the builder's and
        the worker's, and the build's own."""
        props = self.properties
        for name, value in self.global_properties.items():
            props.setProperty(name, value, "Global Configuration")
        for name, (value, source) in stored.items():
            props.setProperty(name, value, source)
        if stamps:
            ss = stamps[0]
            props.setProperty("branch", ss.branch, "Build")
            props.setProperty("revision", ss.revision, "Build")
            props.setProperty("repository", ss.repository, "Build")
            props.setProperty("codebase", ss.codebase, "Build")
            props.setProperty("project", ss.project, "Build")
        self.sourcestamps = list(stamps)
        for name, value in self.config.properties.items():
            props.setProperty(name, value, "Builder")
        for name, value in self.config.default_properties.items():
            if not props.hasProperty(name):
                props.setProperty(name, value, "Builder")
        worker = self.worker_config
        for name, value in dict(getattr(worker, "properties", {}) or {}).items():
            props.setProperty(name, value, "Worker")
        for name, value in dict(getattr(worker, "default_properties", {}) or {}).items():
            if not props.hasProperty(name):
                props.setProperty(name, value, "Worker")
        props.setProperty("buildername", self.name, "Builder")
        props.setProperty("builderid", self.builderid, "Builder")
        props.setProperty("buildnumber", self.number, "Build")
        props.setProperty("workername", self.conn.name, "Worker")
        props.setProperty("builddir", self._builder_dir(), "Worker")
        props.setProperty("workerbuilddir", str(self.config.workerbuilddir), "Worker")

    async def _store_properties(self, *, state_string: str | None = None) -> None:
        """Store the properties that are new or changed since the last time (and, when given,
        the build's new state string in the same transaction). Only this build writes its
        properties, so the names never stored are inserted without looking for a row."""
        if self.buildid is None:
            return
        stored = self._stored_properties
        current = {name: (value, source) for name, value, source in self.properties.asList()}
        changed = {k: v for k, v in current.items() if stored.get(k) != v}
        if changed or state_string is not None:
            await self.updates.set_build_properties(
                self.buildid,
                changed,
                new=[k for k in changed if k not in stored],
                state_string=state_string,
            )
            stored.update(changed)

    def _unstored_properties(self) -> dict[str, tuple[Any, str]]:
        """The properties of a build none of whose properties is stored yet (its first
        transaction stores them): all of them, now counted as stored."""
        current = {name: (value, source) for name, value, source in self.properties.asList()}
        self._stored_properties.update(current)
        return current
