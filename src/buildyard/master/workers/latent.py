"""The lifecycle of latent workers (``master.workers.latent``): start an instance when a build
needs one, stop it when it is no longer needed.

The distributor asks :meth:`LatentWorkers.substantiate` for a builder whose requests no connected
worker can take; the request stays unclaimed meanwhile. A start calls the worker's
``start_instance`` and then waits, up to the worker's ``missing_timeout``, for the instance's
worker to connect (asking ``check_instance`` every ``check_instance_interval`` seconds); once it
has connected, the distributor's next pass gives it a build like any connected worker. A start
that fails, or whose worker never connects, stops the instance, puts the worker in quarantine
(10 s, doubled at each failure in a row up to an hour) and wakes the distributor, which may give
the request to another worker.

An instance idle for ``build_wait_timeout`` seconds is stopped (0: after each build; negative:
never), and so is every instance when the master stops or when a reconfig removes its worker.
When the master takes a latent worker into its configuration, the instances that an earlier run
of the same master left behind (killed before it could stop them) are found by the master's
identity they carry and stopped (``cleanup_orphans``).

The states, as Buildbot names them: not substantiated, substantiating (``start_instance`` and
the wait for the connection), substantiated, insubstantiating (``stop_instance``).

A worker whose ``machine_name`` names a latent machine (``c['machines']``, see
:mod:`buildyard.master.workers.machines`) has that machine woken before its own start; a machine
that does not start fails the worker's start. The machine is powered off (after its workers
are stopped) once none of its workers has built for the machine's ``build_wait_timeout``, when
no build started on it within its ``missing_timeout``, and when the master stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog

from buildyard.common.awaitables import resolve
from buildyard.common.service import Service
from buildyard.master.data.updates import Updates
from buildyard.master.model.properties import Properties
from buildyard.master.workers.config import (
    AbstractLatentWorker,
    LatentMasterInfo,
    LatentWorkerCannotSubstantiate,
    LatentWorkerFailedToSubstantiate,
)
from buildyard.master.workers.listener import WorkerListener
from buildyard.master.workers.machines import Machine, MachineRuntime, SecretLookup

log = structlog.get_logger(__name__)

__all__ = [
    "LatentBuild",
    "LatentWorkerCannotSubstantiate",
    "LatentWorkerFailedToSubstantiate",
    "LatentWorkers",
    "State",
]

#: an instance started for a request that another worker took meanwhile is kept at least this
#: long after it connected (with build_wait_timeout 0 it would otherwise stop before the
#: distributor's next pass could give it the build)
FIRST_BUILD_GRACE = 60.0


class State(enum.Enum):
    NOT_SUBSTANTIATED = "not substantiated"
    SUBSTANTIATING = "substantiating"
    SUBSTANTIATED = "substantiated"
    INSUBSTANTIATING = "insubstantiating"


class LatentBuild:
    """What ``start_instance(build)`` gets: the properties of the build request the instance is
    started for, to render the worker's renderable arguments."""

    def __init__(self, properties: Properties, *, builder_name: str | None = None) -> None:
        self.properties = properties
        self.builder_name = builder_name

    async def render(self, value: Any) -> Any:
        return await self.properties.render(value)

    def getProperty(self, name: str, default: Any = None) -> Any:  # noqa: N802 - Buildbot's
        return self.properties.get_property(name, default)

    def getProperties(self) -> Properties:  # noqa: N802 - Buildbot's
        return self.properties


async def call_user(result: Any) -> Any:
    """The value of a user method's result: a plain value, a coroutine, or a Twisted Deferred
    (fired or not; see :func:`buildyard.common.awaitables.resolve`)."""
    return await resolve(result)


class _Latent:
    def __init__(self, config: AbstractLatentWorker) -> None:
        self.config = config
        #: the configuration object that started the running instance (its stop_instance
        #: knows the instance), kept across a reconfig until the instance stops
        self.owner: AbstractLatentWorker | None = None
        self.state = State.NOT_SUBSTANTIATED
        self.builds = 0
        self.quarantine_until = 0.0
        self.quarantine_timeout = config.quarantine_initial_timeout
        self.connected = asyncio.Event()
        self.cleaned = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.idle_timer: asyncio.Task[None] | None = None
        self.builder_name: str | None = None
        self.removed = False


class LatentWorkers(Service):
    """The latent workers of the configuration and their instances."""

    def __init__(self, *, updates: Updates, listener: WorkerListener, master_name: str) -> None:
        super().__init__("_latent")  # "_": no worker name can clash
        self._updates = updates
        self._listener = listener
        self.master_name = master_name
        self.workers: dict[str, _Latent] = {}
        # removed by a reconfig, their instance still stopping
        self._leaving: dict[str, _Latent] = {}
        #: called when a build may start now (set by the distributor)
        self.wake: Callable[[], None] = lambda: None
        #: the latent machines of c['machines'], by name
        self.machines: dict[str, MachineRuntime] = {}
        #: how machine actions find secrets (set by the master)
        self.secret_lookup: SecretLookup | None = None
        listener.attach_hooks.append(self._attached)
        listener.detach_hooks.append(self._detached)

    # -- what the distributor asks --------------------------------------------------------------

    def is_latent(self, name: str) -> bool:
        return name in self.workers

    def usable(self, name: str) -> bool:
        """Whether a connected ``name`` may take a build (a latent one: substantiated)."""
        latent = self.workers.get(name)
        return latent is None or latent.state is State.SUBSTANTIATED

    def can_substantiate(self, name: str) -> bool:
        latent = self.workers.get(name)
        return (
            latent is not None
            and self.running
            and not latent.removed
            and latent.state is State.NOT_SUBSTANTIATED
            and time.monotonic() >= latent.quarantine_until
        )

    def substantiating_for(self, builder_name: str) -> int:
        return sum(
            1
            for w in self.workers.values()
            if w.state is State.SUBSTANTIATING and w.builder_name == builder_name
        )

    def in_quarantine(self, name: str) -> bool:
        latent = self.workers.get(name)
        return latent is not None and time.monotonic() < latent.quarantine_until

    def state(self, name: str) -> State | None:
        latent = self.workers.get(name)
        return None if latent is None else latent.state

    def substantiate(self, name: str, build: LatentBuild) -> None:
        """Start ``name``'s instance for ``build`` (in the background)."""
        latent = self.workers[name]
        assert latent.state is State.NOT_SUBSTANTIATED
        latent.state = State.SUBSTANTIATING
        latent.builder_name = build.builder_name
        latent.connected.clear()
        latent.task = self.spawn(self._substantiate(name, latent, build), name=f"start:{name}")

    def build_started(self, name: str) -> None:
        latent = self.workers.get(name)
        if latent is None:
            return
        latent.builds += 1
        self._cancel_idle_timer(latent)
        machine = self._machine_of(latent.config)
        if machine is not None:
            machine.build_started()

    def build_finished(self, name: str) -> None:
        latent = self.workers.get(name)
        if latent is None:
            return
        latent.builds = max(0, latent.builds - 1)
        if latent.builds == 0 and latent.state is State.SUBSTANTIATED:
            self._start_idle_timer(name, latent, float(latent.config.build_wait_timeout))
        machine = self._machine_of(latent.config)
        if machine is not None:
            machine.build_finished()

    # -- machines -------------------------------------------------------------------------------

    def configure_machines(self, machines: Sequence[object]) -> None:
        """Take c['machines']: new latent machines get their state (stopped), kept ones their
        new configuration, removed ones are powered off."""
        wanted: dict[str, Machine] = {}
        for machine in machines:
            if isinstance(machine, Machine):
                machine.secret_lookup = self.secret_lookup
                if machine.is_latent:
                    wanted[machine.name] = machine
        for name, runtime in list(self.machines.items()):
            if name not in wanted:
                del self.machines[name]
                _ = self.spawn(runtime.stop(), name=f"machine-removed:{name}")
        for name, machine in wanted.items():
            existing = self.machines.get(name)
            if existing is not None:
                existing.config = machine  # type: ignore[assignment]  # latent, checked above
                continue
            self.machines[name] = MachineRuntime(
                machine,  # type: ignore[arg-type]  # latent, checked above
                spawn=self.spawn,
                stop_workers=self._stop_machine_workers,
                building=self._machine_building,
                substantiating=self._machine_substantiating,
            )

    def _machine_of(self, config: AbstractLatentWorker) -> MachineRuntime | None:
        name = config.machine_name
        return None if name is None else self.machines.get(name)

    def _machine_building(self, machine_name: str) -> bool:
        return any(
            w.builds > 0 and w.config.machine_name == machine_name for w in self.workers.values()
        )

    def _machine_substantiating(self, machine_name: str) -> bool:
        return any(
            w.state is State.SUBSTANTIATING and w.config.machine_name == machine_name
            for w in self.workers.values()
        )

    async def _stop_machine_workers(self, machine_name: str) -> None:
        await asyncio.gather(
            *(
                self._stop(name, latent, fast=False)
                for name, latent in self.workers.items()
                if latent.config.machine_name == machine_name
            ),
            return_exceptions=True,
        )

    # -- configuration ------------------------------------------------------------------------

    async def configure(self, workers: Mapping[str, Any]) -> None:
        """Take the latent workers of ``workers``: new ones have their orphans cleaned up;
        removed ones have their instance stopped."""
        wanted = {n: w for n, w in workers.items() if isinstance(w, AbstractLatentWorker)}
        for name, latent in list(self.workers.items()):
            if name not in wanted:
                latent.removed = True
                self.workers.pop(name)
                self._leaving[name] = latent
                log.info("latent_worker_removed", worker=name, state=latent.state.value)
                _ = self.spawn(self._remove(name, latent), name=f"remove:{name}")
        for name, config in wanted.items():
            existing = self.workers.get(name)
            if existing is not None:
                existing.config = config  # the next start uses it; a running instance stays
                continue
            latent = _Latent(config)
            self.workers[name] = latent
            _ = self.spawn(self._cleanup(name, latent), name=f"cleanup:{name}")

    async def _remove(self, name: str, latent: _Latent) -> None:
        await self._stop(name, latent, fast=False)
        if self._leaving.get(name) is latent:
            del self._leaving[name]

    def _master_info(self) -> LatentMasterInfo:
        host = self._listener.host
        return LatentMasterInfo(
            name=self.master_name,
            host="127.0.0.1" if host in (None, "", "0.0.0.0", "::") else str(host),
            msgpack_port=self._listener.port,
            pb_port=self._listener.pb_port,
        )

    async def _cleanup(self, name: str, latent: _Latent) -> None:
        try:
            latent.config.master_info = self._master_info()
            found = await call_user(latent.config.cleanup_orphans())
            if found:
                log.warning("latent_orphans_stopped", worker=name, instances=found)
        except Exception as exc:
            log.warning("latent_orphans_not_checked", worker=name, error=_describe(exc))
        finally:
            latent.cleaned.set()

    # -- start ----------------------------------------------------------------------------------

    async def _substantiate(self, name: str, latent: _Latent, build: LatentBuild) -> None:
        config = latent.config
        timeout = config.missing_timeout
        timeout = config.default_missing_timeout if timeout is None else float(timeout)
        started_at = time.monotonic()
        log.info("latent_worker_substantiating", worker=name, builder=build.builder_name)
        try:
            await latent.cleaned.wait()
            config.master_info = self._master_info()
            latent.owner = config
            async with asyncio.timeout(timeout if timeout > 0 else None):
                machine = self._machine_of(config)
                if machine is not None and not await machine.wake():
                    raise LatentWorkerFailedToSubstantiate(
                        f"its machine {machine.name!r} did not start (see machine_start_failed "
                        "or machine_action_failed in the log)"
                    )
                ok = await call_user(config.start_instance(build))
                if ok is False:
                    raise LatentWorkerFailedToSubstantiate(
                        "start_instance returned False (the worker does not want to start now)"
                    )
                await self._wait_connected(latent, config)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            if isinstance(exc, TimeoutError):
                why = f"the worker did not connect within missing_timeout ({timeout:g} s)"
            else:
                why = _describe(exc)
            await self._failed(name, latent, why)
            return
        latent.state = State.SUBSTANTIATED
        latent.quarantine_timeout = config.quarantine_initial_timeout
        log.info(
            "latent_worker_substantiated",
            worker=name,
            seconds=round(time.monotonic() - started_at, 3),
        )
        wait = float(config.build_wait_timeout)
        if latent.builds == 0:
            self._start_idle_timer(
                name, latent, max(wait, FIRST_BUILD_GRACE) if wait >= 0 else wait
            )
        self.wake()

    async def _wait_connected(self, latent: _Latent, config: AbstractLatentWorker) -> None:
        follower = asyncio.get_running_loop().create_task(_quietly(config.while_starting()))
        try:
            while not latent.connected.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(float(config.check_instance_interval)):
                        await latent.connected.wait()
                if latent.connected.is_set():
                    break
                ok, message = await call_user(config.check_instance())
                if not ok:
                    raise LatentWorkerFailedToSubstantiate(
                        f"the instance ended before its worker connected: {message}"
                    )
        finally:
            follower.cancel()
            # wait for it to end without taking its CancelledError for ours: a cancel of
            # this task while it waits still propagates
            await asyncio.wait([follower])

    async def _failed(self, name: str, latent: _Latent, why: str) -> None:
        log.warning("latent_worker_start_failed", worker=name, reason=why)
        latent.state = State.INSUBSTANTIATING
        await self._call_stop(name, latent, fast=True)
        latent.state = State.NOT_SUBSTANTIATED
        latent.builder_name = None
        # quarantine: no start for a while, longer at each failure in a row
        config = latent.config
        latent.quarantine_until = time.monotonic() + latent.quarantine_timeout
        log.warning("latent_worker_quarantined", worker=name, seconds=latent.quarantine_timeout)
        _ = self.spawn(self._wake_after(latent.quarantine_timeout), name=f"quarantine:{name}")
        latent.quarantine_timeout = min(
            latent.quarantine_timeout * 2, float(config.quarantine_max_timeout)
        )
        if config.notify_on_missing:
            with contextlib.suppress(Exception):
                workerid = await self._updates.find_worker_id(name)
                await self._updates.worker_missing(
                    workerid=workerid,
                    last_connection="Latent worker never connected",
                    notify=config.notify_on_missing,
                )
        self.wake()

    async def _wake_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self.wake()

    # -- connection -----------------------------------------------------------------------------

    def _attached(self, name: str) -> None:
        latent = self.workers.get(name)
        if latent is None:
            return
        if latent.state is State.SUBSTANTIATING:
            latent.connected.set()
        elif latent.state is State.NOT_SUBSTANTIATED:
            # it connected on its own (started outside the master, or build_wait_timeout < 0
            # and it reconnected): usable, and stopped like one the master started
            latent.state = State.SUBSTANTIATED
            latent.owner = latent.config
            if latent.builds == 0:
                self._start_idle_timer(name, latent, float(latent.config.build_wait_timeout))

    def _detached(self, name: str) -> None:
        latent = self.workers.get(name)
        if latent is None or latent.state is not State.SUBSTANTIATED:
            return
        log.info("latent_worker_lost", worker=name)
        self._cancel_idle_timer(latent)
        latent.state = State.INSUBSTANTIATING
        _ = self.spawn(self._stop(name, latent, fast=True), name=f"lost:{name}")

    # -- stop -------------------------------------------------------------------------------------

    def _start_idle_timer(self, name: str, latent: _Latent, seconds: float) -> None:
        self._cancel_idle_timer(latent)
        if seconds < 0:
            return  # never stopped by the master
        latent.idle_timer = self.spawn(self._idle(name, latent, seconds), name=f"idle:{name}")

    @staticmethod
    def _cancel_idle_timer(latent: _Latent) -> None:
        if latent.idle_timer is not None:
            latent.idle_timer.cancel()
            latent.idle_timer = None

    async def _idle(self, name: str, latent: _Latent, seconds: float) -> None:
        await asyncio.sleep(seconds)
        latent.idle_timer = None
        if latent.builds or latent.state is not State.SUBSTANTIATED:
            return
        log.info("latent_worker_idle", worker=name, seconds=seconds)
        await self._stop(name, latent, fast=False)

    async def _stop(self, name: str, latent: _Latent, *, fast: bool) -> None:
        """Insubstantiate: a start under way is cancelled, the instance stopped."""
        self._cancel_idle_timer(latent)
        task = latent.task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if latent.owner is None and latent.state is State.NOT_SUBSTANTIATED:
            return
        latent.state = State.INSUBSTANTIATING
        # the worker leaves first, so that no build starts on an instance being stopped
        conn = self._listener.connections.get(name)
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.abort()
        await self._call_stop(name, latent, fast=fast)
        latent.state = State.NOT_SUBSTANTIATED
        latent.builder_name = None
        self.wake()

    async def _call_stop(self, name: str, latent: _Latent, *, fast: bool) -> None:
        owner = latent.owner
        if owner is None:
            return
        try:
            await call_user(owner.stop_instance(fast))
            log.info("latent_worker_insubstantiated", worker=name, fast=fast)
        except Exception as exc:
            log.error("latent_worker_stop_failed", worker=name, error=_describe(exc))
        # not when cancelled: the master's stop tries again
        latent.owner = None

    async def stop_service(self) -> None:
        """Every instance stops with the master."""
        await asyncio.gather(
            *(
                self._stop(name, latent, fast=False)
                for name, latent in [*self.workers.items(), *self._leaving.items()]
            ),
            return_exceptions=True,
        )
        # then the hosts they ran on
        await asyncio.gather(*(m.stop() for m in self.machines.values()), return_exceptions=True)

    def statistics(self) -> dict[str, int]:
        return {
            **super().statistics(),
            "substantiated": sum(
                1 for w in self.workers.values() if w.state is State.SUBSTANTIATED
            ),
        }


async def _quietly(coro: Any) -> None:
    try:
        await call_user(coro)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.info("latent_startup_follow_ended", error=_describe(exc))


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
