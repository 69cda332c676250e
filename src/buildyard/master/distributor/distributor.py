"""The build request distributor (``master.botmaster.brd``): pending requests -> running builds.

A distribution pass looks at every builder with unclaimed requests, oldest request first (or
``c['prioritizeBuilders']``), and while the builder has a request and a worker that can take
it, it picks the request (highest priority, then oldest; or the builder's ``nextBuild``), the
worker (``nextWorker``, else ``c['select_next_worker']``, else at random), claims the request
(and the compatible older ones when requests collapse), and starts the build. A worker can
take a build when it is connected, configured for the builder, neither paused nor shutting
down gracefully, runs fewer than its ``max_builds``, and runs no build of that builder already
(as in Buildbot, a worker runs one build of a builder at a time: the builds of one builder
share its build directory on the worker; builds of different builders may run side by side).

A builder whose requests no connected worker can take has a latent worker of its list started
(the first, in ``workernames`` order, that is not running, starting or in quarantine), one per
waiting request; the requests stay unclaimed meanwhile, and the worker, once connected, takes
one like any other (``master.workers.latent``).

Passes run one at a time, woken by the events that may let a build start: a new or unclaimed
request, a worker that connects or changes state, a build that ends; and every
``poll_interval`` seconds, for what another master released without an event reaching us.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime
import random
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog

from buildyard.common.awaitables import resolve
from buildyard.common.service import Service
from buildyard.master.builds.build import Build
from buildyard.master.data import shapes
from buildyard.master.data.updates import Updates
from buildyard.master.db.connector import Database
from buildyard.master.logs.writer import LogLimits
from buildyard.master.model.buildrequests import BuildRequest
from buildyard.master.model.properties import Properties
from buildyard.master.model.results import Results
from buildyard.master.model.workers import Worker
from buildyard.master.mq.base import MessageQueue
from buildyard.master.steps.locks import LockRegistry
from buildyard.master.workers.connection import WorkerConnection
from buildyard.master.workers.latent import LatentBuild
from buildyard.master.workers.manager import WorkerManager

log = structlog.get_logger(__name__)

# how many buildsets' source stamps collapsing keeps (a few MB at most)
_STAMPS_KEPT = 20_000

_WAKE_PATTERNS: tuple[tuple[str | None, ...], ...] = (
    ("buildrequests", None, "new"),
    ("buildrequests", None, "unclaimed"),
    ("workers", None, "connected"),
    ("workers", None, "state_updated"),
)


@dataclasses.dataclass(eq=False)
class BuilderView:
    """What master.cfg's callables get as a builder (Buildbot's Builder, read-only)."""

    name: str
    config: Any
    builderid: int
    _requests: list[BuildRequest]

    async def getOldestRequestTime(self) -> datetime.datetime | None:
        if not self._requests:
            return None
        return _utc(min(r.submitted_at for r in self._requests))

    async def getNewestRequestTime(self) -> datetime.datetime | None:
        if not self._requests:
            return None
        return _utc(max(r.submitted_at for r in self._requests))


@dataclasses.dataclass(eq=False)
class RequestView:
    """A build request as nextBuild, nextWorker and canStartBuild get it."""

    request: BuildRequest

    @property
    def id(self) -> int:
        return self.request.id

    @property
    def bsid(self) -> int:
        return self.request.buildsetid

    @property
    def buildername(self) -> str:
        return self.request.buildername

    @property
    def priority(self) -> int:
        return self.request.priority

    @property
    def submittedAt(self) -> datetime.datetime:
        return _utc(self.request.submitted_at)


@dataclasses.dataclass(eq=False)
class WorkerView:
    workername: str
    info: dict[str, Any]
    config: Any

    @property
    def name(self) -> str:
        return self.workername


@dataclasses.dataclass(eq=False)
class WorkerForBuilderView:
    """A worker as nextWorker and canStartBuild get it (``.worker.workername``)."""

    worker: WorkerView
    conn: WorkerConnection

    @property
    def name(self) -> str:
        return self.worker.workername


def _utc(epoch: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC)


def _wfb(conn: WorkerConnection, worker: Any) -> WorkerForBuilderView:
    return WorkerForBuilderView(WorkerView(conn.name, dict(conn.info), worker), conn)


async def _call(fn: Callable[..., Any], *args: Any) -> Any:
    result = fn(*args)
    result = await resolve(result)
    return result


class BuildRequestDistributor(Service):
    poll_interval = 10.0

    def __init__(
        self,
        *,
        updates: Updates,
        db: Database,
        mq: MessageQueue,
        workers: WorkerManager,
        masterid: Callable[[], int],
        master_basedir: Path | None = None,
        schedulers: Callable[[str], Any] | None = None,
    ) -> None:
        super().__init__("_brd")  # "_": no builder name can clash
        self._updates = updates
        self._db = db
        self._mq = mq
        self._workers = workers
        self._masterid = masterid
        self.master_basedir = master_basedir
        self.schedulers = schedulers
        self._wake = asyncio.Event()
        self.wakeups = 0
        self.passes = 0
        # builder name -> (builderid, BuilderConfig); set by the botmaster on (re)config
        self.builders: dict[str, tuple[int, Any]] = {}
        self.config: Any = None
        # running builds, how many each worker runs, and the (worker, builder) pairs busy
        self.building: set[Build] = set()
        self._build_tasks: dict[Build, asyncio.Task[None]] = {}
        self._load: dict[str, int] = {}
        self._busy: set[tuple[str, str]] = set()
        # requests a pass is claiming, set once their build is in `building` (or the claim
        # failed): a cancel that comes meanwhile waits for it
        self._starting: dict[int, asyncio.Event] = {}
        # connections asked to shut down (graceful), so each is asked once
        self._shut_down: weakref.WeakSet[WorkerConnection] = weakref.WeakSet()
        # this master's real locks (MasterLock / WorkerLock), shared by every build
        self.locks = LockRegistry()
        # collapsing's view of each pending buildset (see _stamps)
        self._stamps_of: collections.OrderedDict[int, frozenset[tuple[Any, ...]]] = (
            collections.OrderedDict()
        )
        workers.latent.wake = self.maybe_start_builds
        # a clean shutdown of the master is under way (BotMaster.clean_shutdown, drain): no
        # build starts; the running ones go on to their end
        self.hold = False
        # set whenever a build ends or a pass is over (what drain waits on)
        self._settled = asyncio.Event()

    def configure(self, builders: Mapping[str, tuple[int, Any]], config: Any) -> None:
        self.builders = dict(builders)
        self.config = config
        self.maybe_start_builds(list(self.builders))

    def maybe_start_builds(self, builder_names: Sequence[str] | None = None) -> None:
        """Ask for a distribution pass (soon, once; passes never overlap)."""
        self.wakeups += 1
        self._wake.set()

    async def start_service(self) -> None:
        _ = self.spawn(self._listen(), name="events")
        _ = self.spawn(self._run(), name="passes")

    async def stop_service(self) -> None:
        # builds still running are stopped by the cancellation of their tasks: they end RETRY
        # and give their requests back
        tasks = list(self._build_tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _listen(self) -> None:
        async with self._mq.subscribe(*_WAKE_PATTERNS) as events:
            async for _key, _body in events:
                self.maybe_start_builds()

    async def _run(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self.poll_interval):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.distribute()
            except Exception:  # a pass that failed is retried by the next wake-up
                log.exception("distribution_failed")
            self.passes += 1
            self._settled.set()

    async def drain(self) -> None:
        """A clean stop: start no more builds (their requests stay unclaimed, for the other
        masters or a later start), and return once every running build has ended."""
        self.hold = True
        log.info("draining", running=len(self._build_tasks))
        # one more pass is over, so none that started before the flag is still starting one
        self._settled.clear()
        self.maybe_start_builds()
        await self._settled.wait()
        while self._build_tasks:
            self._settled.clear()
            await self._settled.wait()

    # -- one pass ------------------------------------------------------------------------------

    async def distribute(self) -> None:
        if not self.builders or self.config is None or self.hold:
            return
        workers = await self._db.workers.get_workers(masterid=self._masterid())
        await self._shut_down_idle_graceful_workers([w for w in workers if w.graceful])
        paused = {w.name for w in workers if w.paused or w.graceful}
        if not self._any_idle_worker(paused) and not self._any_latent_to_start(paused):
            return  # no build can start: the requests need not be read
        pending = await self._db.buildrequests.get_buildrequests(claimed=False)
        by_builder: dict[int, list[BuildRequest]] = {}
        for request in pending:
            by_builder.setdefault(request.builderid, []).append(request)
        names = [name for name, (builderid, _c) in self.builders.items() if builderid in by_builder]
        if not names:
            return
        names.sort(key=lambda n: min(r.submitted_at for r in by_builder[self.builders[n][0]]))
        prioritize = getattr(self.config, "prioritize_builders", None)
        if prioritize is not None:
            views = [self._view(n, by_builder) for n in names]
            ordered = await _call(prioritize, self, views)
            names = [v.name if isinstance(v, BuilderView) else str(v) for v in ordered or ()]
        for name in names:
            builderid, config = self.builders[name]
            left = await self._fill(name, builderid, config, by_builder.get(builderid, []), paused)
            if left:
                await self._substantiate(name, config, left, paused)

    def _view(self, name: str, by_builder: Mapping[int, list[BuildRequest]]) -> BuilderView:
        builderid, config = self.builders[name]
        return BuilderView(name, config, builderid, list(by_builder.get(builderid, [])))

    async def _shut_down_idle_graceful_workers(self, graceful: Sequence[Worker]) -> None:
        """Graceful shutdown: a worker marked so takes no new build, and once it runs none the
        master asks it to shut down (``shutdown``; it exits)."""
        connections = self._workers.listener.connections
        for w in graceful:
            conn = connections.get(w.name)
            if conn is None or self._load.get(w.name, 0) or conn in self._shut_down:
                continue
            self._shut_down.add(conn)
            log.info("worker_graceful_shutdown", worker=w.name)
            try:
                await conn.shutdown()
            except Exception as exc:  # it may be gone already
                log.info("worker_shutdown_unanswered", worker=w.name, why=str(exc))

    def _any_latent_to_start(self, paused: set[str]) -> bool:
        latent = self._workers.latent
        return any(
            latent.can_substantiate(name) and name not in paused
            for _id, config in self.builders.values()
            for name in config.workernames
        )

    async def _substantiate(
        self, name: str, config: Any, requests: list[BuildRequest], paused: set[str]
    ) -> None:
        """Start latent workers of builder ``name`` for the ``requests`` no connected worker
        took: one per request, less those already starting for it."""
        latent = self._workers.latent
        wanted = len(requests) - latent.substantiating_for(name)
        if wanted <= 0:
            return
        requests = sorted(requests, key=lambda r: (-r.priority, r.submitted_at, r.id))
        for workername in config.workernames:
            if wanted <= 0:
                return
            if workername in paused or not latent.can_substantiate(workername):
                continue
            request = requests[len(requests) - wanted]
            properties = Properties.from_dict(
                await self._db.buildsets.get_buildset_properties(request.buildsetid)
            )
            properties.set_property("buildername", name, "Builder")
            properties.set_property("workername", workername, "Worker")
            latent.substantiate(workername, LatentBuild(properties, builder_name=name))
            wanted -= 1

    def _any_idle_worker(self, paused: set[str]) -> bool:
        every = {name for _id, config in self.builders.values() for name in config.workernames}
        return bool(self._idle_workers(None, paused, sorted(every)))

    def _idle_workers(
        self, config: Any, paused: set[str], names: Sequence[str] | None = None
    ) -> list[tuple[WorkerConnection, Any]]:
        connections = self._workers.listener.connections
        configured = {c.name: c.config for c in self._workers.configured().values()}
        idle = []
        for name in config.workernames if names is None else names:
            conn = connections.get(name)
            worker = configured.get(name)
            if conn is None or worker is None or not conn.ready or name in paused:
                continue
            if conn.peer.closed:  # lost, but its handler has not removed it yet
                continue
            if not self._workers.latent.usable(name):  # a latent one starting or stopping
                continue
            limit = getattr(worker, "max_builds", None)
            if limit is not None and self._load.get(name, 0) >= int(limit):
                continue
            if config is not None and (name, config.name) in self._busy:
                continue  # one build of a builder per worker at a time
            idle.append((conn, worker))
        return idle

    async def _fill(
        self,
        name: str,
        builderid: int,
        config: Any,
        requests: list[BuildRequest],
        paused: set[str],
    ) -> list[BuildRequest]:
        """Start builds of ``name`` while it has requests and idle workers; returns the requests
        left waiting for a worker."""
        requests = sorted(requests, key=lambda r: (-r.priority, r.submitted_at, r.id))
        builder = BuilderView(name, config, builderid, requests)
        while requests:
            idle = self._idle_workers(config, paused)
            if not idle:
                return requests
            request = requests[0]
            if config.next_build is not None:
                chosen = await _call(config.next_build, builder, [RequestView(r) for r in requests])
                if chosen is None:
                    return []
                request = chosen.request if isinstance(chosen, RequestView) else chosen
            if config.can_start_build is not None:
                idle = [
                    (conn, worker)
                    for conn, worker in idle
                    if await _call(
                        config.can_start_build,
                        builder,
                        _wfb(conn, worker),
                        RequestView(request),
                    )
                ]
                if not idle:
                    requests.remove(request)  # no worker may take it now: try the next one
                    continue
            conn, worker = await self._choose_worker(builder, idle, request)
            if conn is None:
                return []
            batch = [request, *await self._collapsible(config, request, requests)]
            for r in batch:
                requests.remove(r)
            brids = [r.id for r in batch]
            started = asyncio.Event()
            self._starting.update(dict.fromkeys(brids, started))
            try:
                if not await self._updates.claim_buildrequests(brids, masterid=self._masterid()):
                    log.info("buildrequest_claimed_elsewhere", builder=name, brid=request.id)
                    continue
                self._start(
                    name=name,
                    builderid=builderid,
                    config=config,
                    requests=batch,
                    conn=conn,
                    worker=worker,
                )
            finally:
                for brid in brids:
                    self._starting.pop(brid, None)
                started.set()
        return requests

    async def _choose_worker(
        self,
        builder: BuilderView,
        idle: list[tuple[WorkerConnection, Any]],
        request: BuildRequest,
    ) -> tuple[WorkerConnection | None, Any]:
        chooser = builder.config.next_worker or getattr(self.config, "select_next_worker", None)
        if chooser is None:
            return random.choice(idle)
        views = [_wfb(conn, worker) for conn, worker in idle]
        chosen = await _call(chooser, builder, views, RequestView(request))
        for view in views:
            if chosen is view or chosen is view.worker or chosen is view.worker.config:
                return view.conn, view.worker.config
        return None, None

    async def _collapsible(
        self, config: Any, request: BuildRequest, others: list[BuildRequest]
    ) -> list[BuildRequest]:
        """The other pending requests that this build can run too, when collapsing is on:
        by default those of the same builder with the same source stamps; a callable
        ``collapseRequests(master, builder, req1, req2)`` gets the requests as API dicts."""
        collapse = config.collapse_requests
        if collapse is None:
            collapse = getattr(self.config, "collapse_requests", None)
        if collapse is None:
            collapse = True
        if collapse is False:
            return []
        mine = await self._stamps(request.buildsetid)
        builder = BuilderView(request.buildername, config, request.builderid, others)
        found = []
        for other in others:
            if other.id == request.id:
                continue
            if callable(collapse):
                first, second = shapes.buildrequest(request), shapes.buildrequest(other)
                if await _call(collapse, self, builder, first, second) is True:
                    found.append(other)
            elif await self._stamps(other.buildsetid) == mine:
                found.append(other)
        return found

    async def _stamps(self, bsid: int) -> frozenset[tuple[Any, ...]]:
        """What collapsing compares of a buildset: its source stamps, read once (a buildset's
        stamps never change) and kept for the next passes, the most recent
        :data:`_STAMPS_KEPT` buildsets' worth."""
        found = self._stamps_of.get(bsid)
        if found is not None:
            self._stamps_of.move_to_end(bsid)
            return found
        stamps = await self._db.sourcestamps.get_sourcestamps(bsid)
        found = frozenset(
            (s.codebase, s.branch, s.revision, s.repository, s.project, s.patch is not None)
            for s in stamps
        )
        self._stamps_of[bsid] = found
        if len(self._stamps_of) > _STAMPS_KEPT:
            self._stamps_of.popitem(last=False)
        return found

    # -- builds --------------------------------------------------------------------------------

    def _start(
        self,
        *,
        name: str,
        builderid: int,
        config: Any,
        requests: list[BuildRequest],
        conn: WorkerConnection,
        worker: Any,
    ) -> None:
        master_config = self.config
        build = Build(
            updates=self._updates,
            db=self._db,
            builder_config=config,
            builderid=builderid,
            requests=requests,
            conn=conn,
            worker_config=worker,
            masterid=self._masterid(),
            global_properties=dict(getattr(master_config, "properties", {}) or {}),
            log_limits=LogLimits(
                max_size=getattr(master_config, "log_max_size", None),
                max_tail_size=getattr(master_config, "log_max_tail_size", None),
                compression=getattr(master_config, "log_compression_method", "zstd"),
                encoding=getattr(master_config, "log_encoding", "utf-8"),
            ),
            locks=self.locks,
            master_basedir=self.master_basedir,
            schedulers=self.schedulers,
            cancel_buildrequest=self.cancel_buildrequest,
            secrets_providers=list(getattr(master_config, "secrets_providers", ()) or ()),
        )
        self.building.add(build)
        self._workers.latent.build_started(conn.name)
        self._load[conn.name] = self._load.get(conn.name, 0) + 1
        self._busy.add((conn.name, name))
        self._build_tasks[build] = self.spawn(
            self._run_build(build, conn.name, name), name=f"build:{name}"
        )

    async def _run_build(self, build: Build, worker: str, builder: str) -> None:
        try:
            results = await build.run()
            if results == Results.RETRY:
                log.info("build_retry", builder=build.name, number=build.number)
        finally:
            self.building.discard(build)
            self._build_tasks.pop(build, None)
            self._load[worker] = max(0, self._load.get(worker, 1) - 1)
            self._busy.discard((worker, builder))
            self._workers.latent.build_finished(worker)
            self._settled.set()
            self.maybe_start_builds()

    def builds_of(self, builder_name: str) -> list[Build]:
        return [b for b in self.building if b.name == builder_name]

    # -- control (what the API's stop, cancel and rebuild do) ----------------------------------

    async def stop_build(self, buildid: int, reason: str) -> bool:
        """Stop a build running on this master: it ends CANCELLED. False if it runs nowhere
        here."""
        for build in list(self.building):
            if build.buildid == buildid:
                await build.stop(reason)
                return True
        return False

    async def cancel_buildrequest(self, brid: int, reason: str) -> bool:
        """Cancel a request: one still waiting is claimed and completed CANCELLED; one being
        built here stops its build. False if it is complete, or built by another master.

        A pass may be claiming the request at the same time: if it wins, its build is
        stopped (the claim it holds meanwhile is waited for)."""
        claimed_elsewhere = False
        while True:
            starting = self._starting.get(brid)
            if starting is not None:  # being claimed by a pass: its build, if any, is coming
                await starting.wait()
            for build in list(self.building):
                if any(r.id == brid for r in build.requests):
                    await build.stop(reason)
                    return True
            if claimed_elsewhere:
                return False
            if await self._updates.claim_buildrequests([brid], masterid=self._masterid()):
                break
            claimed_elsewhere = True  # by a pass of ours, maybe: look once more
        await self._updates.complete_buildrequests([brid], Results.CANCELLED)
        log.info("buildrequest_cancelled", brid=brid, reason=reason)
        return True

    async def rebuild(self, buildid: int) -> tuple[int, dict[int, int]]:
        """A copy of the build's buildset for the build's builder, as Buildbot's
        ``rebuildBuildrequest`` makes it: the same source stamps, properties, external id and
        parent, reason ``rebuild``, default priority, and ``rebuilt_buildid`` naming the
        original build (the first build of the first buildset in a chain of rebuilds).
        Returns (bsid, {builderid: brid}); KeyError if there is no such build."""
        build = await self._db.builds.get_build(buildid)
        if build is None:
            raise KeyError(f"no build {buildid}")
        request = await self._db.buildrequests.get_buildrequest(build.buildrequestid)
        assert request is not None
        buildset = await self._db.buildsets.get_buildset(request.buildsetid)
        assert buildset is not None
        properties = await self._db.buildsets.get_buildset_properties(request.buildsetid)
        rebuilt = buildset.rebuilt_buildid
        if rebuilt is None:
            first = await self._db.builds.get_builds(buildrequestid=request.id)
            rebuilt = first[0].id if first else buildid
        bsid, brids = await self._updates.add_buildset(
            scheduler="rebuild",
            sourcestamps=list(buildset.sourcestamps),
            reason="rebuild",
            properties=properties,
            builderids=[request.builderid],
            external_idstring=buildset.external_idstring,
            parent_buildid=buildset.parent_buildid,
            parent_relationship=buildset.parent_relationship,
            rebuilt_buildid=rebuilt,
        )
        return bsid, dict(brids)

    def statistics(self) -> dict[str, int]:
        return {
            **super().statistics(),
            "wakeups": self.wakeups,
            "passes": self.passes,
            "building": len(self.building),
        }
