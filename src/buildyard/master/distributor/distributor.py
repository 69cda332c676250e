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

The unclaimed requests live in an index in memory (:class:`_Index`), so that a pass's work per
started build does not grow with the queue: per builder, a heap in distribution order
(highest priority, then oldest, then lowest id) and, for default collapsing, the requests by
their buildset's source stamps. The index is fed by the requests' own events (``new``,
``unclaimed``, ``claimed``, ``complete``; their bodies carry the whole row, so nothing is read),
loaded in full at the first pass, and read again in full now and then (``resync_interval``,
after a reconfiguration, and when the shared message queue reports a lost connection or lost
events), so that whatever another master did without an event reaching us is seen. The claim
in the database stays the arbiter: a claim that fails re-reads the rows it named.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime
import heapq
import random
import time
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
from buildyard.master.mq.base import MessageQueue
from buildyard.master.steps.locks import LockRegistry
from buildyard.master.workers.connection import WorkerConnection
from buildyard.master.workers.latent import LatentBuild
from buildyard.master.workers.manager import WorkerManager

log = structlog.get_logger(__name__)

# how many buildsets' source stamps collapsing keeps (a few MB at most)
_STAMPS_KEPT = 20_000

# the requests' events that keep the index (see _Index)
_REQUEST_EVENTS = ("new", "unclaimed", "claimed", "complete")

_WAKE_PATTERNS: tuple[tuple[str | None, ...], ...] = (
    ("buildrequests", None, "new"),
    ("buildrequests", None, "unclaimed"),
    ("workers", None, "connected"),
    ("workers", None, "state_updated"),
)


@dataclasses.dataclass(eq=False)
class BuilderView:
    """What master.cfg's callables get as a builder (Buildbot's Builder, read-only).

    ``_pending`` gives the builder's pending requests when a callable asks (reading them all
    is the cost of asking)."""

    name: str
    config: Any
    builderid: int
    _pending: Callable[[], list[BuildRequest]]

    async def getOldestRequestTime(self) -> datetime.datetime | None:
        requests = self._pending()
        if not requests:
            return None
        return _utc(min(r.submitted_at for r in requests))

    async def getNewestRequestTime(self) -> datetime.datetime | None:
        requests = self._pending()
        if not requests:
            return None
        return _utc(max(r.submitted_at for r in requests))


_Order = tuple[int, int, int]
_Stamps = frozenset[tuple[Any, ...]]


def _order(r: BuildRequest) -> _Order:
    """Distribution order: highest priority, then oldest, then lowest id."""
    return (-r.priority, r.submitted_at, r.id)


class _Steps:
    """How many requests (or heap entries) the distributor has looked at: the measure of its
    work that must not grow with the queue (``statistics()['steps']``)."""

    def __init__(self) -> None:
        self.n = 0


class _Pending:
    """One builder's unclaimed requests: a heap in distribution order and one by age (both
    with lazy deletion: an entry whose request is gone or changed is dropped when it comes to
    the top), and the requests by their source stamps for default collapsing (filled by
    :meth:`BuildRequestDistributor._resolve_stamps`)."""

    def __init__(self, steps: _Steps) -> None:
        self.steps = steps
        self.requests: dict[int, BuildRequest] = {}
        self._by_order: list[_Order] = []
        self._by_age: list[tuple[int, int]] = []
        self.stamps_of: dict[int, _Stamps] = {}
        self.by_stamps: dict[_Stamps, set[int]] = {}
        self.unresolved: set[int] = set()

    def __len__(self) -> int:
        return len(self.requests)

    def add(self, r: BuildRequest) -> None:
        old = self.requests.get(r.id)
        self.requests[r.id] = r
        if old is None or _order(old) != _order(r):
            heapq.heappush(self._by_order, _order(r))
        if old is None or old.submitted_at != r.submitted_at:
            heapq.heappush(self._by_age, (r.submitted_at, r.id))
        if old is None or old.buildsetid != r.buildsetid:
            self._forget_stamps(r.id)
            self.unresolved.add(r.id)
        self._compact()

    def discard(self, brid: int) -> None:
        if self.requests.pop(brid, None) is None:
            return
        self.unresolved.discard(brid)
        self._forget_stamps(brid)
        self._compact()

    def set_stamps(self, brid: int, stamps: _Stamps) -> None:
        if brid not in self.requests:
            return
        self.unresolved.discard(brid)
        self._forget_stamps(brid)
        self.stamps_of[brid] = stamps
        self.by_stamps.setdefault(stamps, set()).add(brid)

    def _forget_stamps(self, brid: int) -> None:
        stamps = self.stamps_of.pop(brid, None)
        if stamps is not None:
            same = self.by_stamps[stamps]
            same.discard(brid)
            if not same:
                del self.by_stamps[stamps]

    def _live(self, entry: _Order) -> BuildRequest | None:
        r = self.requests.get(entry[2])
        return r if r is not None and _order(r) == entry else None

    def first(self, n: int, skip: set[int]) -> list[BuildRequest]:
        """The first ``n`` requests in distribution order, those in ``skip`` left out."""
        found: list[BuildRequest] = []
        held: list[_Order] = []
        seen: set[int] = set()
        heap = self._by_order
        while heap and len(found) < n:
            entry = heapq.heappop(heap)
            self.steps.n += 1
            r = self._live(entry)
            if r is None or entry[2] in seen:
                continue  # gone, changed, or a duplicate entry: dropped for good
            seen.add(entry[2])
            held.append(entry)
            if entry[2] not in skip:
                found.append(r)
        for entry in held:
            heapq.heappush(heap, entry)
        self.steps.n += len(held)
        return found

    def ordered(self, skip: set[int] | None = None) -> list[BuildRequest]:
        """Every request in distribution order (what the user's callables get)."""
        found = [r for r in self.requests.values() if not skip or r.id not in skip]
        found.sort(key=_order)
        self.steps.n += len(self.requests)
        return found

    def oldest(self) -> int:
        heap = self._by_age
        while heap:
            submitted_at, brid = heap[0]
            r = self.requests.get(brid)
            if r is not None and r.submitted_at == submitted_at:
                return submitted_at
            heapq.heappop(heap)
            self.steps.n += 1
        return 0

    def _compact(self) -> None:
        # stale entries never outnumber live ones for long
        limit = 2 * len(self.requests) + 64
        if len(self._by_order) > limit or len(self._by_age) > limit:
            self.steps.n += len(self.requests)
        if len(self._by_order) > limit:
            self._by_order = [_order(r) for r in self.requests.values()]
            heapq.heapify(self._by_order)
        if len(self._by_age) > limit:
            self._by_age = [(r.submitted_at, r.id) for r in self.requests.values()]
            heapq.heapify(self._by_age)


class _Index:
    """Every unclaimed, incomplete request, by builder id."""

    def __init__(self, steps: _Steps) -> None:
        self.steps = steps
        self.by_builder: dict[int, _Pending] = {}
        self._builder_of: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._builder_of)

    def add(self, r: BuildRequest) -> None:
        if self._builder_of.get(r.id, r.builderid) != r.builderid:
            self.discard(r.id)
        self._builder_of[r.id] = r.builderid
        queue = self.by_builder.get(r.builderid)
        if queue is None:
            queue = self.by_builder[r.builderid] = _Pending(self.steps)
        queue.add(r)

    def discard(self, brid: int) -> None:
        builderid = self._builder_of.pop(brid, None)
        if builderid is None:
            return
        queue = self.by_builder[builderid]
        queue.discard(brid)
        if not queue:
            del self.by_builder[builderid]

    def get(self, brid: int) -> BuildRequest | None:
        builderid = self._builder_of.get(brid)
        if builderid is None:
            return None
        return self.by_builder[builderid].requests.get(brid)


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


def _stamps_key(stamps: Sequence[Any]) -> _Stamps:
    """What default collapsing compares of a buildset's source stamps."""
    return frozenset(
        (s.codebase, s.branch, s.revision, s.repository, s.project, s.patch is not None)
        for s in stamps
    )


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
    # seconds between two full readings of the unclaimed requests (None: poll_interval with
    # c['multiMaster'] and a message queue not shared with the other masters, else 6 times it)
    resync_interval: float | None = None

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
        # the unclaimed requests (None until the first pass reads them), and the events that
        # came while a full reading was under way (replayed on top of it)
        self._index: _Index | None = None
        self._replay: list[tuple[tuple[str, ...], Mapping[str, Any]]] | None = None
        self._resync_due = True
        self._resynced_at = 0.0
        # the workers a pass must leave alone (paused, or shutting down gracefully), as read
        # from the database; None: read them at the next pass. Forgotten on their
        # ``state_updated`` events and at every full reading of the index (another master's
        # change without a shared queue)
        self._held_rows: list[tuple[str, bool, bool]] | None = None
        self._held_version = 0
        self._mq_losses = self._mq_lost()
        self.resyncs = 0
        self.started = 0
        self._steps = _Steps()
        # builder id -> name, and worker name -> the builders it is configured for
        self._names: dict[int, str] = {}
        self._position: dict[str, int] = {}
        self._builders_of: dict[str, list[str]] = {}
        workers.latent.wake = self.maybe_start_builds
        # a clean shutdown of the master is under way (BotMaster.clean_shutdown, drain): no
        # build starts; the running ones go on to their end
        self.hold = False
        # set whenever a build ends or a pass is over (what drain waits on)
        self._settled = asyncio.Event()
        # set when a pass is over (drain waits for the pass under way, if any)
        self._pass_over = asyncio.Event()

    def configure(self, builders: Mapping[str, tuple[int, Any]], config: Any) -> None:
        self.builders = dict(builders)
        self.config = config
        self._names = {builderid: name for name, (builderid, _c) in self.builders.items()}
        self._position = {name: i for i, name in enumerate(self.builders)}
        self._builders_of = {}
        for name, (_id, builder_config) in self.builders.items():
            for workername in builder_config.workernames:
                self._builders_of.setdefault(workername, []).append(name)
        self._resync_due = True  # names and collapsing may have changed: read them again
        self.maybe_start_builds(list(self.builders))

    def request_resync(self) -> None:
        """Read every unclaimed request again at the next pass (asked for soon)."""
        self._resync_due = True
        self.maybe_start_builds()

    def priority_changed(self, brid: int, priority: int) -> None:
        """A request's priority was changed on this master (no event tells it, as in
        Buildbot): the index orders it anew. Other masters see it at their next resync."""
        if self._index is not None:
            request = self._index.get(brid)
            if request is not None:
                self._index.add(dataclasses.replace(request, priority=priority))
        if self._replay is not None:
            self._resync_due = True  # a reading under way may have missed it
        self.maybe_start_builds()

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
        patterns: list[tuple[str | None, ...]] = [
            ("buildrequests", None, e) for e in _REQUEST_EVENTS
        ]
        patterns += [p for p in _WAKE_PATTERNS if p[0] != "buildrequests"]
        async with self._mq.subscribe(*patterns) as events:
            async for key, body in events:
                if key[0] == "buildrequests":
                    self._on_request_event(key, body)
                    if key[-1] not in ("new", "unclaimed"):
                        continue
                elif key[-1] == "state_updated":
                    self._forget_held()
                self.maybe_start_builds()

    def _forget_held(self) -> None:
        """Read the held workers again at the next pass (one being read now is not kept)."""
        self._held_rows = None
        self._held_version += 1

    async def _held_workers(self) -> list[tuple[str, bool, bool]]:
        held = self._held_rows
        if held is None:
            version = self._held_version
            held = await self._db.workers.held_workers(masterid=self._masterid())
            if version == self._held_version:
                self._held_rows = held
        return held

    def _on_request_event(self, key: tuple[str, ...], body: Mapping[str, Any]) -> None:
        if self._replay is not None:
            self._replay.append((key, body))
        if self._index is not None:
            self._apply(self._index, key, body)

    def _apply(self, index: _Index, key: tuple[str, ...], body: Mapping[str, Any]) -> None:
        try:
            brid = int(body["buildrequestid"])
            waiting = (
                key[-1] in ("new", "unclaimed")
                and not body.get("claimed")
                and not body.get("complete")
            )
            if not waiting:
                index.discard(brid)
                return
            builderid = int(body["builderid"])
            index.add(
                BuildRequest(
                    id=brid,
                    buildsetid=int(body["buildsetid"]),
                    builderid=builderid,
                    buildername=self._names.get(builderid, ""),
                    priority=int(body.get("priority") or 0),
                    submitted_at=int(body["submitted_at"]),
                    complete=False,
                    complete_at=None,
                    results=None,
                    waited_for=bool(body.get("waited_for")),
                    claimed=False,
                    claimed_at=None,
                    claimed_by_masterid=None,
                )
            )
        except (KeyError, TypeError, ValueError):  # a body not shaped as ours: read it all
            log.warning("buildrequest_event_unreadable", key=key)
            self._resync_due = True

    def _mq_lost(self) -> tuple[int, int]:
        """The shared queue's count of reconnections and of events it knows it missed: when
        either grows, events may be missing from the index."""
        return (int(getattr(self._mq, "reconnects", 0)), int(getattr(self._mq, "missed", 0)))

    def _resync_every(self) -> float:
        if self.resync_interval is not None:
            return self.resync_interval
        shared = hasattr(self._mq, "origin")  # PostgresMQ: the other masters' events come
        if getattr(self.config, "multi_master", False) and not shared:
            return self.poll_interval
        return 6 * self.poll_interval

    async def _index_now(self) -> _Index:
        """The index, read again in full first when it is due."""
        lost = self._mq_lost()
        if lost != self._mq_losses:
            self._mq_losses = lost
            self._resync_due = True
        index = self._index
        if (
            index is None
            or self._resync_due
            or time.monotonic() - self._resynced_at >= self._resync_every()
        ):
            index = await self._resync()
        return index

    async def _resync(self) -> _Index:
        self._forget_held()
        self._replay = []
        try:
            index = _Index(self._steps)
            for request in await self._db.buildrequests.get_buildrequests(claimed=False):
                index.add(request)
            for key, body in self._replay:
                self._apply(index, key, body)
        finally:
            self._replay = None
        # due until a reading succeeds (one that failed, say as the database connection was
        # lost, is tried again at the next pass)
        self._resync_due = False
        self._index = index
        self._resynced_at = time.monotonic()
        self.resyncs += 1
        for builderid, queue in list(index.by_builder.items()):
            name = self._names.get(builderid)
            if name is not None and self._collapse_of(self.builders[name][1]) is True:
                await self._resolve_stamps(queue)
        return index

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
            self._pass_over.set()
            self._settled.set()

    def _held(self) -> bool:
        """Whether a clean shutdown holds new builds (read again during a pass: it may begin
        while one runs)."""
        return self.hold

    async def drain(self) -> None:
        """A clean stop: start no more builds (their requests stay unclaimed, for the other
        masters or a later start), and return once every running build has ended."""
        self.hold = True
        log.info("draining", running=len(self._build_tasks))
        # one more pass is over, so none that started before the flag is still starting one
        # (a build that ends meanwhile sets _settled, not _pass_over)
        passes = self.passes
        self.maybe_start_builds()
        while self.passes == passes:
            self._pass_over.clear()
            await self._pass_over.wait()
        while self._build_tasks:
            self._settled.clear()
            await self._settled.wait()

    # -- one pass ------------------------------------------------------------------------------

    async def distribute(self) -> None:
        if not self.builders or self.config is None or self.hold:
            return
        index = await self._index_now()
        held = await self._held_workers()
        await self._shut_down_idle_graceful_workers(
            [name for name, _, graceful in held if graceful]
        )
        paused = {name for name, _paused, _graceful in held}
        # the builders some worker could take a build of now (or a latent one could start
        # for), and of those, the ones with requests waiting
        able: set[str] = set()
        for workername in self._usable_workers(paused):
            able.update(self._builders_of.get(workername, ()))
        if not able:
            return  # no build can start
        pending = [self._names[b] for b in index.by_builder if b in self._names]
        if not pending:
            return
        prioritize = getattr(self.config, "prioritize_builders", None)
        # oldest request first; between equals, in the configuration's order
        position = self._position
        pending.sort(key=lambda n: (index.by_builder[self.builders[n][0]].oldest(), position[n]))
        names = pending if prioritize is not None else [n for n in pending if n in able]
        if prioritize is not None:
            views = [self._view(n) for n in names]
            ordered = await _call(prioritize, self, views)
            names = [v.name if isinstance(v, BuilderView) else str(v) for v in ordered or ()]
        for name in names:
            if self._held():
                return  # a clean shutdown began during this pass
            if name not in able or name not in self.builders:
                continue  # no worker for it now: nothing would start
            builderid, config = self.builders[name]
            skip = await self._fill(name, builderid, config, paused)
            if skip is not None:
                await self._substantiate(name, builderid, config, skip, paused)

    def _pending_of(self, builderid: int, skip: set[int] | None = None) -> list[BuildRequest]:
        queue = None if self._index is None else self._index.by_builder.get(builderid)
        return [] if queue is None else queue.ordered(skip)

    def _view(self, name: str) -> BuilderView:
        builderid, config = self.builders[name]
        return BuilderView(name, config, builderid, lambda: self._pending_of(builderid))

    def _usable_workers(self, paused: set[str]) -> list[str]:
        """The workers that could take a build of some builder now (connected, idle enough),
        and the latent ones that could be started."""
        usable = [
            conn.name
            for conn, _worker in self._idle_workers(
                None, paused, list(self._workers.listener.connections)
            )
        ]
        latent = self._workers.latent
        usable += [
            name
            for name in latent.workers
            if name in self._builders_of and name not in paused and latent.can_substantiate(name)
        ]
        return usable

    async def _shut_down_idle_graceful_workers(self, graceful: Sequence[str]) -> None:
        """Graceful shutdown: a worker marked so takes no new build, and once it runs none the
        master asks it to shut down (``shutdown``; it exits)."""
        connections = self._workers.listener.connections
        for name in graceful:
            conn = connections.get(name)
            if conn is None or self._load.get(name, 0) or conn in self._shut_down:
                continue
            self._shut_down.add(conn)
            log.info("worker_graceful_shutdown", worker=name)
            try:
                await conn.shutdown()
            except Exception as exc:  # it may be gone already
                log.info("worker_shutdown_unanswered", worker=name, why=str(exc))

    async def _substantiate(
        self, name: str, builderid: int, config: Any, skip: set[int], paused: set[str]
    ) -> None:
        """Start latent workers of builder ``name`` for the requests no connected worker
        took (those in ``skip`` left out): one per request, less those already starting."""
        latent = self._workers.latent
        queue = None if self._index is None else self._index.by_builder.get(builderid)
        if queue is None:
            return
        count = len(queue) - sum(1 for brid in skip if brid in queue.requests)
        starting = latent.substantiating_for(name)
        wanted = count - starting
        if wanted <= 0:
            return
        if not any(latent.can_substantiate(w) for w in config.workernames):
            return
        # in order, as far as the requests the workers of the list could be started for
        requests = queue.first(min(count, starting + len(config.workernames)), skip)
        for workername in config.workernames:
            if wanted <= 0:
                return
            if workername in paused or not latent.can_substantiate(workername):
                continue
            request = requests[count - wanted]
            properties = Properties.from_dict(
                await self._db.buildsets.get_buildset_properties(request.buildsetid)
            )
            properties.set_property("buildername", name, "Builder")
            properties.set_property("workername", workername, "Worker")
            latent.substantiate(workername, LatentBuild(properties, builder_name=name))
            wanted -= 1

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
        self, name: str, builderid: int, config: Any, paused: set[str]
    ) -> set[int] | None:
        """Start builds of ``name`` while it has requests and idle workers. Returns the
        requests no worker may take now (``canStartBuild``), to leave out when latent workers
        are started for the rest, or None when none should be (``nextBuild`` or the worker
        chooser declined)."""
        skip: set[int] = set()
        builder = BuilderView(name, config, builderid, lambda: self._pending_of(builderid, skip))
        while not self.hold:  # a clean shutdown may begin during the pass
            queue = None if self._index is None else self._index.by_builder.get(builderid)
            if queue is None:
                return skip
            idle = self._idle_workers(config, paused)
            if not idle:
                return skip
            if config.next_build is not None:
                requests = queue.ordered(skip)
                if not requests:
                    return skip
                chosen = await _call(config.next_build, builder, [RequestView(r) for r in requests])
                if chosen is None:
                    return None
                request = chosen.request if isinstance(chosen, RequestView) else chosen
            else:
                first = queue.first(1, skip)
                if not first:
                    return skip
                request = first[0]
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
                    skip.add(request.id)  # no worker may take it now: try the next one
                    continue
            conn, worker = await self._choose_worker(builder, idle, request)
            if conn is None:
                return None
            batch = [request, *await self._collapsible(config, request, skip)]
            for r in batch:
                self._forget(r.id)
            brids = [r.id for r in batch]
            started = asyncio.Event()
            self._starting.update(dict.fromkeys(brids, started))
            try:
                if not await self._updates.claim_buildrequests(brids, masterid=self._masterid()):
                    log.info("buildrequest_claimed_elsewhere", builder=name, brid=request.id)
                    await self._reread(brids)
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
        return None  # held: no latent worker is started either

    def _forget(self, brid: int) -> None:
        if self._index is not None:
            self._index.discard(brid)

    async def _reread(self, brids: Sequence[int]) -> None:
        """A claim failed (another master, or a stale index): what the database says of the
        requests it named goes back into the index."""
        for brid in brids:
            request = await self._db.buildrequests.get_buildrequest(brid)
            fresh = request is not None and not request.claimed and not request.complete
            if fresh and request is not None and self._index is not None:
                self._index.add(request)

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

    def _collapse_of(self, config: Any) -> Any:
        """The builder's collapsing: False, True (same source stamps) or a callable."""
        collapse = config.collapse_requests
        if collapse is None:
            collapse = getattr(self.config, "collapse_requests", None)
        if collapse is None:
            collapse = True
        return collapse

    async def _collapsible(
        self, config: Any, request: BuildRequest, skip: set[int]
    ) -> list[BuildRequest]:
        """The other pending requests that this build can run too, when collapsing is on:
        by default those of the same builder with the same source stamps (found through the
        index, whatever the queue's length); a callable
        ``collapseRequests(master, builder, req1, req2)`` gets the requests as API dicts."""
        collapse = self._collapse_of(config)
        if collapse is False:
            return []
        queue = None if self._index is None else self._index.by_builder.get(request.builderid)
        if queue is None:
            return []
        if callable(collapse):
            others = queue.ordered(skip)
            builder = BuilderView(request.buildername, config, request.builderid, lambda: others)
            found = []
            for other in others:
                if other.id == request.id:
                    continue
                first, second = shapes.buildrequest(request), shapes.buildrequest(other)
                if await _call(collapse, self, builder, first, second) is True:
                    found.append(other)
            return found
        if queue.unresolved:
            await self._resolve_stamps(queue)
        mine = queue.stamps_of.get(request.id)
        if mine is None:  # gone from the index meanwhile
            mine = await self._stamps(request.buildsetid)
        same = queue.by_stamps.get(mine, set())
        found = [
            queue.requests[brid]
            for brid in same
            if brid != request.id and brid not in skip and brid in queue.requests
        ]
        self._steps.n += len(same)
        found.sort(key=_order)
        return found

    async def _resolve_stamps(self, queue: _Pending) -> None:
        """Index by source stamps the requests of ``queue`` not indexed yet: the stamps of
        buildsets seen before come from :meth:`_stamps`' cache, the others are read together."""
        wanted = {queue.requests[brid].buildsetid for brid in queue.unresolved}
        unknown = [bsid for bsid in wanted if bsid not in self._stamps_of]
        if unknown:
            read = await self._db.sourcestamps.get_sourcestamps_of_buildsets(unknown)
            for bsid in unknown:
                self._keep_stamps(bsid, _stamps_key(read.get(bsid, [])))
        for brid in list(queue.unresolved):
            request = queue.requests.get(brid)
            if request is None:
                queue.unresolved.discard(brid)
                continue
            queue.set_stamps(brid, await self._stamps(request.buildsetid))

    async def _stamps(self, bsid: int) -> frozenset[tuple[Any, ...]]:
        """What collapsing compares of a buildset: its source stamps, read once (a buildset's
        stamps never change) and kept for the next passes, the most recent
        :data:`_STAMPS_KEPT` buildsets' worth."""
        found = self._stamps_of.get(bsid)
        if found is not None:
            self._stamps_of.move_to_end(bsid)
            return found
        found = _stamps_key(await self._db.sourcestamps.get_sourcestamps(bsid))
        self._keep_stamps(bsid, found)
        return found

    def _keep_stamps(self, bsid: int, stamps: _Stamps) -> None:
        self._stamps_of[bsid] = stamps
        self._stamps_of.move_to_end(bsid)
        if len(self._stamps_of) > _STAMPS_KEPT:
            self._stamps_of.popitem(last=False)

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
        self.started += 1
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
            "resyncs": self.resyncs,
            "started": self.started,
            "steps": self._steps.n,
            "pending": len(self._index) if self._index is not None else 0,
            "building": len(self.building),
        }
