"""BuildMaster: the composition root. It builds every service, wires them, and owns the tree.

The tree (reachable as attributes, as in Buildbot)::

    master
    ├── db                 Database connector (engine + repositories)
    ├── mq                 message queue (in-process, or shared through PostgreSQL)
    ├── data               data API: .updates (the only writer) and .api (reads)
    ├── caches
    ├── metrics
    ├── housekeeping       heartbeat and expiry of silent masters
    ├── workers            WorkerManager: a child per configured worker
    ├── change_svc         ChangeManager: a child per change source
    ├── botmaster          BotMaster: a child per builder, and .brd, the distributor
    ├── scheduler_manager  SchedulerManager: a child per scheduler
    ├── control            acts on other masters' control messages (stop, cancel, kill)
    ├── service_manager    ServicesManager: a child per c['services'] entry (reporters, ...)
    └── www                the web server

Start-up follows Buildbot's order (docs/database.md, "Masters"): find this master's id, clean up
after its previous run if that one died, expire silent masters, apply the configuration, then
check in as active and keep checking in.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import os
import secrets
import signal
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from buildyard.common import limits
from buildyard.common.clock import Clock, SystemClock
from buildyard.common.errors import ConfigErrors
from buildyard.common.logging import add_redaction
from buildyard.common.service import Service
from buildyard.master.changes.base import ChangeSourceContext
from buildyard.master.changes.manager import ChangeManager
from buildyard.master.config.loader import load_master_config
from buildyard.master.config.master_config import MasterConfig
from buildyard.master.data.api import DataAPI
from buildyard.master.data.housekeeping import Housekeeping
from buildyard.master.data.queries import Queries
from buildyard.master.data.resources import forceschedulers
from buildyard.master.data.resultspec import ResultSpec
from buildyard.master.data.updates import Updates
from buildyard.master.db import migrate
from buildyard.master.db.config_rows import ConfigRows
from buildyard.master.db.connector import Database
from buildyard.master.db.engine import normalize_url
from buildyard.master.db.errors import DbError
from buildyard.master.distributor.botmaster import BotMaster
from buildyard.master.mq.local import LocalMQ
from buildyard.master.reporters.service import (
    BuildbotService,
    DataReader,
    ReporterEnvironment,
    ServicesManager,
)
from buildyard.master.schedulers.base import SchedulerContext
from buildyard.master.schedulers.forced import ForceSchedulerService
from buildyard.master.schedulers.manager import SchedulerManager
from buildyard.master.secrets import providers as secret_providers
from buildyard.master.secrets.redaction import Redactor
from buildyard.master.usermanager import UserManagers
from buildyard.master.workers.config import LocalWorker, render_passwords
from buildyard.master.workers.connection import MAX_LINE_LENGTH
from buildyard.master.workers.listener import PROTOCOL, ListenerChange
from buildyard.master.workers.manager import WorkerManager
from buildyard.master.workers.transfers import JOURNAL, remove_interrupted_uploads
from buildyard.master.www.app import Site, WebChange, WWWService

if TYPE_CHECKING:
    from buildyard.master.mq.postgres import PostgresMQ

log = structlog.get_logger(__name__)


class DatabaseService(Service):
    """Owns the engine: checks the schema at start (creates it in a throwaway ``sqlite://``
    database, which nobody could have upgraded), disposes the pool at stop."""

    def __init__(self, db: Database) -> None:
        super().__init__("db")
        self.db = db

    async def start_service(self) -> None:
        if self.db.throwaway:
            await migrate.upgrade(self.db)
        if not await migrate.is_current(self.db):
            raise DbError(await _not_current(self.db))

    async def stop_service(self) -> None:
        await self.db.close()


async def _not_current(db: Database) -> str:
    """Why ``db`` cannot be started on, and what to run: a Buildbot database is named as one (a
    user moving from Buildbot should not read it as a damaged buildyard database)."""
    # (adopt imports Alembic: only a database that is not current needs it)
    from buildyard.master.db.adopt import refusal

    where = f"the database at {db.url.render_as_string(hide_password=True)}"
    found = await migrate.identify_buildbot(db)
    if found is not None and not found.adoptable:
        # what upgrade-master would refuse it with, and the way on (an older release to
        # upgrade with Buildbot first, a newer one buildyard does not know)
        return f"{where}: {refusal(found)}"
    if found is not None:
        return (
            f"{where} was made by {found.describe()}; run 'buildyard upgrade-master' on this "
            "master's directory to adopt it (buildyard never adopts one by itself)"
        )
    revision = await migrate.current_revision(db)
    state = (
        "has no buildyard schema (it is empty, or not a master's database)"
        if revision is None
        else f"is at buildyard schema revision {revision!r}, not the current "
        f"{migrate.head_revision()!r}"
    )
    return f"{where} {state}; run 'buildyard upgrade-master' on this master's directory"


class DataService(Service):
    def __init__(self, *, db: Database, mq: LocalMQ, clock: Clock, redactor: Redactor) -> None:
        super().__init__("data")
        self.updates = Updates(db=db, mq=mq, clock=clock, redactor=redactor)
        self.api = DataAPI(db=db)


class CacheManager(Service):
    """Object caches (sized by ``c['caches']``); filled by later issues."""

    def __init__(self) -> None:
        super().__init__("caches")
        self.sizes: dict[str, int] = {}


class Metrics(Service):
    """Counters of the master's work, exposed through statistics()."""

    def __init__(self, master: BuildMaster) -> None:
        super().__init__("metrics")
        self._master = master

    def snapshot(self) -> dict[str, dict[str, int]]:
        m = self._master
        return {
            "mq": m.mq.statistics(),
            "housekeeping": m.housekeeping.statistics(),
            "brd": m.botmaster.brd.statistics(),
        }


# how long a master waits for the PostgreSQL queue to listen before it gives up starting
MQ_READY_TIMEOUT = 60.0
# how long a stopping master waits for its last events to reach the other masters
MQ_FLUSH_TIMEOUT = 10.0


def _shared_queue(mq: LocalMQ) -> PostgresMQ | None:
    """``mq`` if it is the queue shared through PostgreSQL. Its module (and asyncpg) is
    imported only by :func:`make_mq` for ``c['mq']`` type postgres: without it no such queue
    exists."""
    module = sys.modules.get("buildyard.master.mq.postgres")
    return mq if module is not None and isinstance(mq, module.PostgresMQ) else None


class _MQService(Service):
    """Runs the shared queue's publisher and listener (nothing to run for the in-process one)."""

    def __init__(self, mq: LocalMQ) -> None:
        super().__init__("mq")
        self.mq = mq

    async def start_service(self) -> None:
        mq = _shared_queue(self.mq)
        if mq is None:
            return
        _ = self.spawn(mq.run_publisher(), name="publisher")
        listener = self.spawn(mq.run_listener(), name="listener")
        ready = asyncio.ensure_future(mq.ready.wait())
        try:
            await asyncio.wait(
                {ready, listener}, timeout=MQ_READY_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            ready.cancel()
        if not mq.ready.is_set():
            await self._cancel_tasks()
            raise RuntimeError(
                f"the PostgreSQL message queue did not start listening within "
                f"{MQ_READY_TIMEOUT:g} s (see the mq_connection_lost messages above)"
            )

    async def stop_service(self) -> None:
        mq = _shared_queue(self.mq)
        if mq is not None:
            # the tasks are cancelled by now; nothing more goes out
            unpublished = mq.statistics()["unpublished"]
            if unpublished:
                log.warning("mq_unpublished_at_stop", count=unpublished)

    async def stop(self) -> None:
        # before the tasks are cancelled: let the last events (this master stopping) go out
        mq = _shared_queue(self.mq)
        if self.running and mq is not None:
            try:
                async with asyncio.timeout(MQ_FLUSH_TIMEOUT):
                    await mq.flush()
            except TimeoutError:
                pass
        await super().stop()


def give_back_freed_memory() -> bool:
    """Hand the heap pages that start-up (or a reconfig) freed back to the system.

    glibc's allocator keeps freed pages for later by default; after a start with 10,000
    builders, about 1.5 MiB of them (the rows read, the statements' parameters) stay resident
    otherwise. False where the C library has no ``malloc_trim`` (musl, macOS)."""
    import ctypes  # only here: nothing else of a master needs it

    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return False
    trim(0)
    return True


def make_mq(config: MasterConfig) -> LocalMQ:
    """The queue ``c['mq']`` asks for (the configuration checked that postgres has a
    PostgreSQL database)."""
    if config.mq.get("type") != "postgres":
        return LocalMQ()
    from buildyard.master.mq.postgres import PostgresMQ  # asyncpg: only for this queue

    dsn = normalize_url(config.db_url).set(drivername="postgresql")
    retention = config.mq.get("retention", 600)
    assert isinstance(retention, int | float)
    return PostgresMQ(dsn.render_as_string(hide_password=False), retention=float(retention))


# The steps of applying a configuration, in order (see BuildMaster._apply).
APPLY_STEPS = (
    "housekeeping",
    "workers",
    "projects",
    "builders",
    "worker_builders",
    "worker_listener",
    "schedulers",
    "change_sources",
    "user_managers",
    "services",
    "www",
    "hooks",
)


@dataclasses.dataclass(kw_only=True)
class _Plan:
    """One application of a configuration: the prepared changes of the listeners (None when
    rolling back), and what each step reports."""

    web: WebChange | None
    listener: ListenerChange | None
    results: dict[str, Any] = dataclasses.field(default_factory=dict)


# where the master serves its LocalWorkers when c['protocols'] has no msgpack port: a port
# the system chooses, on loopback only (the same on every reconfig, so it is kept)
_LOCAL_ONLY = {"port": 0, "interface": "127.0.0.1"}


def _protocols(config: MasterConfig) -> Mapping[str, Mapping[str, object]]:
    """``c['protocols']``, with the loopback listener the local workers need when it has no
    msgpack_experimental_v7 entry (they speak that protocol)."""
    protocols = config.protocols
    if PROTOCOL not in protocols and any(isinstance(w, LocalWorker) for w in config.workers):
        return {**protocols, PROTOCOL: _LOCAL_ONLY}
    return protocols


def _site(config: MasterConfig) -> Site:
    return Site(
        title=config.title,
        title_url=config.title_url,
        buildbot_url=config.buildbot_url,
        multi_master=config.multi_master,
    )


class BuildMaster(Service):
    def __init__(
        self,
        basedir: Path,
        *,
        config: MasterConfig,
        clock: Clock | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__("master")
        self.basedir = basedir.resolve()
        self.config = config
        self.clock: Clock = clock or SystemClock()
        # the masters-table name, Buildbot's (the node name, not the FQDN): a master directory
        # moved from Buildbot keeps its row; self.name stays "master", the service tree's root
        self.master_name = name or f"{os.uname().nodename}:{self.basedir}"
        self.masterid: int | None = None
        self.reconfig_count = 0

        self.db = Database(config.db_url, clock=self.clock, basedir=self.basedir)
        self.mq = make_mq(config)
        # the values of the secrets builds used, hidden in everything stored or shown (the
        # data writer, logs, /config, the master's own log); workers cut lines at this length
        self.redactor = Redactor(cut_length=MAX_LINE_LENGTH)
        self._unhook_log: Callable[[], None] | None = None
        data = DataService(db=self.db, mq=self.mq, clock=self.clock, redactor=self.redactor)
        self.data = data
        self.caches = CacheManager()
        self.metrics = Metrics(self)
        self.housekeeping = Housekeeping(
            updates=data.updates,
            clock=self.clock,
            interval=config.housekeeping_interval,
            expire_after=config.housekeeping_expire_after,
            on_reactivated=self._reregister,
            change_horizon=config.change_horizon,
        )
        self.workers = WorkerManager(
            updates=data.updates, basedir=self.basedir, master_name=self.master_name
        )
        self.workers.latent.secret_lookup = self._secret
        self.change_svc = ChangeManager(
            ChangeSourceContext(
                updates=data.updates,
                clock=self.clock,
                masterid=self._masterid,
                basedir=self.basedir,
                secret=self._secret,
                pb_ports=self.workers.listener.pb_ports,
                mq=self.mq,
            )
        )
        self.user_managers = UserManagers(
            db=self.db, updates=data.updates, pb_ports=self.workers.listener.pb_ports
        )
        self.botmaster = BotMaster(
            updates=data.updates,
            db=self.db,
            mq=self.mq,
            workers=self.workers,
            masterid=self._masterid,
            master_basedir=self.basedir,
            schedulers=self._scheduler,
        )
        self.scheduler_manager = SchedulerManager(
            SchedulerContext(
                updates=data.updates,
                mq=self.mq,
                clock=self.clock,
                masterid=self._masterid,
                queries=Queries(db=self.db),
                pb_ports=self.workers.listener.pb_ports,
                basedir=self.basedir,
            )
        )
        self._control = _Control(self)
        self.www = WWWService(
            data=data.api,
            mq=self.mq,
            control_actions=self._control,
            session_secret=self._session_secret,
            clock=self.clock,
            hook_services=_Hooks(self),
            redactor=self.redactor,
            secret=self._secret,
        )
        data.api.register(*forceschedulers.endpoints(self._force_scheduler_data))
        self.service_manager = ServicesManager(
            ReporterEnvironment(
                data=DataReader(self._read),
                mq=self.mq,
                master=self,
                state=data.updates,
                secret=self._secret,
            )
        )
        for svc in (
            DatabaseService(self.db),
            _MQService(self.mq),
            data,
            self.caches,
            self.metrics,
            self.housekeeping,
            self.workers,
            self.change_svc,
            self.user_managers,
            self.botmaster,
            self.scheduler_manager,
            ControlConsumer(self, self._control),
            self.service_manager,
            self.www,
        ):
            self.add_child(svc)
        self._reconfig_lock = asyncio.Lock()
        # set to stop the master as a signal would (a chat bot's "shutdown now", or a clean
        # shutdown that saw its last build end); run() waits for it
        self.stop_requested = asyncio.Event()
        self.botmaster.on_shutdown = lambda: self.request_stop("clean shutdown done")

    async def _secret(self, name: str) -> str | None:
        """Secret ``name`` from the providers of the configuration in use: the one lookup the
        change sources, hooks and reporters get, so every value it gives is hidden from then on
        (the master's log included) as a build's secrets are."""
        value = await secret_providers.lookup(self.config.secrets_providers, name)
        if value is not None:
            self.redactor.add(value, name)
        return value

    async def _render_worker_passwords(self, config: MasterConfig) -> None:
        """Render the worker passwords ``config`` gives as secrets, from ``config``'s own
        secret providers (a reconfig's new ones, which read their files again), before
        anything of ``config`` is applied, as Buildbot renders them each time it takes a
        configuration. The values are hidden from the master's log from then on.
        :class:`ConfigErrors` naming each worker whose password cannot be rendered (at start
        the master does not start, as Buildbot's; a reconfig changes nothing)."""
        providers = tuple(config.secrets_providers)

        async def lookup(name: str) -> str | None:
            value = await secret_providers.lookup(providers, name)
            if value is not None:
                self.redactor.add(value, name)
            return value

        await render_passwords(config.workers, lookup)

    async def _session_secret(self) -> str:
        """The key that signs the web sessions: made once, kept in the database state where
        Buildbot keeps it (so a Buildbot master's sessions stay valid too)."""
        updates = self.data.updates
        objectid = await updates.get_object_id("www", "buildbot.www.service.WWWService")
        found = await updates.atomic_create_or_get_state(
            objectid, "session_secret", secrets.token_hex(32)
        )
        return str(found)

    async def _read(self, path: tuple[str, ...], spec: ResultSpec | None) -> Any:
        """A data API read for the services: an item, or a collection."""
        return await self.data.api.get(path, spec)

    def _scheduler(self, name: str) -> Any:
        """The running scheduler named ``name`` (what a Trigger step fires), or None."""
        return self.scheduler_manager.configured().get(name)

    def _force_scheduler_data(self) -> list[dict[str, Any]]:
        """The ``forcescheduler`` resources of the running force schedulers, by name."""
        running: list[Any] = list(self.scheduler_manager.configured().values())
        found = [s.data() for s in running if callable(getattr(s, "force", None))]
        return sorted(found, key=lambda item: str(item["name"]))

    def _masterid(self) -> int:
        assert self.masterid is not None, "the master has not started"
        return self.masterid

    async def start(self) -> None:
        self.failures = asyncio.Queue()
        if self._unhook_log is None:
            self._unhook_log = add_redaction(self.redactor.redact)
        updates = self.data.updates
        try:
            # the database first: everything after needs this master's id
            await self.child("db").start()
            self.masterid = await updates.find_master_id(self.master_name)
            await updates.master_stopped(name=self.master_name, masterid=self.masterid)
            # the partial files of uploads its previous run was receiving when it died
            await asyncio.to_thread(remove_interrupted_uploads, self.basedir / JOURNAL)
            await updates.expire_masters(
                expire_after=self.config.housekeeping_expire_after, force_housekeeping=True
            )
            await super().start()
            await self._apply(self.config)
            await updates.master_active(name=self.master_name, masterid=self.masterid)
        except BaseException:
            await self.stop()
            raise
        self.housekeeping.begin(masterid=self.masterid, name=self.master_name)
        log.info(
            "master_started",
            master=self.master_name,
            masterid=self.masterid,
            basedir=str(self.basedir),
            db=self.db.backend,
            pid=os.getpid(),
        )

    async def stop(self) -> None:
        """Stop in the order that keeps the database honest (docs/database.md, "Masters").

        The heartbeat goes first, so nothing marks this master active again; then the
        services that do work; then, while the database and the queue are still up, this
        master is marked stopped and what it held is released; the rest stops last.
        """
        errors: list[BaseException] = []
        for svc in (
            self.housekeeping,
            self.www,
            self.scheduler_manager,
            self.botmaster,
            self.service_manager,
            self.change_svc,
            self.workers,
        ):
            try:
                await svc.stop()
            except Exception as exc:  # keep stopping the others
                log.exception("service_stop_failed", service=svc.path)
                errors.append(exc)
        if self.masterid is not None and self.child("db").running:
            try:
                await self.data.updates.master_stopped(
                    name=self.master_name, masterid=self.masterid
                )
            except Exception:
                log.exception("master_stop_bookkeeping_failed", masterid=self.masterid)
        await super().stop()
        await self.db.close()  # also when the start failed before the db service ran
        log.info("master_stopped", master=self.master_name, masterid=self.masterid)
        if self._unhook_log is not None:
            self._unhook_log()
            self._unhook_log = None
        if errors:
            raise ExceptionGroup("services failed to stop", errors)  # type: ignore[type-var]

    def request_stop(self, reason: str) -> None:
        """Ask :meth:`run` to stop the master cleanly, as SIGTERM does."""
        log.info("master_stop_requested", reason=reason)
        self.stop_requested.set()

    async def _apply(
        self, config: MasterConfig, *, running: MasterConfig | None = None
    ) -> dict[str, Any]:
        """Make the running services match ``config``, all or nothing; unchanged children keep
        running.

        What can fail without changing anything is done first: the web server's new
        application, and any new address of the web server or the worker listener, bound.
        Then the :data:`APPLY_STEPS` run in order. If one fails, every step is applied again
        with ``running`` (the configuration that ran before), the new addresses are closed,
        and the builders, workers, schedulers and change sources this attempt created in the
        database are removed; then the error is raised. Without ``running`` (the first
        configuration, at start) nothing is rolled back.
        """
        assert self.masterid is not None
        for warning in config.warnings:
            log.warning("config_warning", message=warning)
        await self._render_worker_passwords(config)
        web = await self.www.prepare(config.www, site=_site(config))
        try:
            listener = await self.workers.listener.prepare(_protocols(config))
        except BaseException:
            await web.revert()
            raise
        before = await self.data.updates.config_rows() if running is not None else None
        plan = _Plan(web=web, listener=listener)
        done: list[str] = []
        try:
            for step in APPLY_STEPS:
                done.append(step)  # first: a step that fails half-way is rolled back too
                await self._apply_step(step, config, plan)
        except BaseException as exc:
            if running is not None and before is not None:
                await self._roll_back(done, running, plan, before, exc)
            else:
                await listener.revert()
                await web.revert()
            raise
        # committed: the new configuration is in force whatever closing the old listeners does
        self.config = config
        for part, change in (("worker_listener", listener), ("www", web)):
            try:
                await change.finish()
            except Exception:
                log.exception("reconfig_finish_failed", part=part)
        await self._apply_local_workers(config)
        return plan.results

    async def _apply_local_workers(self, config: MasterConfig) -> None:
        """Start and stop the LocalWorker processes to match ``config``, once the worker
        listener is on its (new) address; a worker that cannot start is logged, the rest of
        the configuration stays applied."""
        host = self.workers.listener.host
        try:
            await self.workers.local.apply(
                config.workers,
                host="127.0.0.1" if host in (None, "", "0.0.0.0", "::") else str(host),
                port=self.workers.listener.port,
            )
        except Exception:
            log.exception("local_workers_not_started")

    async def _apply_step(self, step: str, config: MasterConfig, plan: _Plan) -> None:
        """One of :data:`APPLY_STEPS`. ``plan`` holds the prepared changes of the listeners
        (None when rolling back: those are reverted instead) and collects the results."""
        assert self.masterid is not None
        masterid = self.masterid
        match step:
            case "housekeeping":
                self.housekeeping.configure(
                    interval=config.housekeeping_interval,
                    expire_after=config.housekeeping_expire_after,
                    change_horizon=config.change_horizon,
                )
            case "workers":
                self.workers.latent.configure_machines(config.machines)
                plan.results["workers"] = await self.workers.apply(
                    {w.name: w for w in config.workers}
                )
            case "projects":
                await self.data.updates.configure_projects(config.projects, config.codebases)
            case "builders":
                plan.results["builders"] = await self.botmaster.apply_builders(
                    masterid=masterid, configs=config.builders, master_config=config
                )
            case "worker_builders":
                await self._configure_workers(config)
            case "worker_listener":
                self.workers.listener.configure(
                    masterid=masterid, workers=config.workers, builders=config.builders
                )
                if plan.listener is not None:
                    await plan.listener.apply()
            case "schedulers":
                plan.results["schedulers"] = await self.scheduler_manager.apply(
                    {
                        getattr(s, "name", f"scheduler-{i}"): s
                        for i, s in enumerate(config.schedulers)
                    }
                )
                # c['validation']: what a force form's free-form properties may be named and
                # set to
                for service in self.scheduler_manager.configured().values():
                    if isinstance(service, ForceSchedulerService):
                        service.validation = config.validation
            case "change_sources":
                plan.results["change_sources"] = await self.change_svc.apply(
                    {
                        getattr(s, "name", f"changesource-{i}"): s
                        for i, s in enumerate(config.change_sources)
                    }
                )
            case "user_managers":
                await self.user_managers.apply(config.user_managers)
            case "services":
                env = self.service_manager.env
                env.title, env.buildbot_url = config.title, config.buildbot_url
                env.secrets_providers = tuple(config.secrets_providers)
                plan.results["services"] = await self.service_manager.apply(
                    {
                        s.name: s
                        for s in config.services
                        if isinstance(s, BuildbotService) and s.name
                    }
                )
            case "www":
                if plan.web is not None:
                    await plan.web.apply()
            case "hooks":
                self.data.updates.revlink_hook = config.revlink
                self.data.updates.codebase_hook = config.codebase_generator
            case _:
                raise ValueError(f"unknown apply step {step!r}")

    async def _roll_back(
        self,
        done: list[str],
        running: MasterConfig,
        plan: _Plan,
        before: ConfigRows,
        exc: BaseException,
    ) -> None:
        """Undo a failed :meth:`_apply` (``done``: the steps it began): every step again with
        ``running``; logged, never raised (the caller raises the failure that started it)."""
        log.error(
            "reconfig_rolling_back",
            failed_step=done[-1],
            error=f"{type(exc).__name__}: {exc}",
            steps=done,
        )
        back = _Plan(web=None, listener=None)
        failed: list[str] = []
        # every step, not only those done: one step's change can undo what an earlier one
        # made (a builder removed takes its workers' configured_workers rows with it), and
        # for the parts that did not change, applying the running config changes nothing
        try:
            for step in APPLY_STEPS:
                try:
                    await self._apply_step(step, running, back)
                except Exception:
                    log.exception("reconfig_rollback_step_failed", step=step)
                    failed.append(step)
        finally:
            # even when the rollback itself is cancelled: the new addresses are closed
            if plan.listener is not None:
                await plan.listener.revert()
            if plan.web is not None:
                await plan.web.revert()
        try:
            created = await self.data.updates.config_rows() - before
            await self.data.updates.forget_config_rows(created)
        except Exception:
            log.exception("reconfig_rollback_step_failed", step="forget_created_rows")
            failed.append("forget_created_rows")
        if failed:
            log.error("reconfig_rolled_back_partly", failed_steps=failed)
        else:
            log.info("reconfig_rolled_back", failed_step=done[-1])

    async def _configure_workers(self, config: MasterConfig) -> None:
        """Record which builders of this master each configured worker serves."""
        assert self.masterid is not None
        builder_ids = {
            name: b.builderid
            for name, b in self.botmaster.builders.items()
            if b.builderid is not None
        }
        # one pass over the builders (not one per worker): thousands of builders stay cheap
        builders_of: dict[str, list[int]] = {w.name: [] for w in config.workers}
        for b in config.builders:
            for name in dict.fromkeys(b.workernames):
                if name in builders_of:
                    builders_of[name].append(builder_ids[b.name])
        await self.data.updates.configure_workers(masterid=self.masterid, builders_of=builders_of)

    async def _reregister(self) -> None:
        """Record again what another master removed when it expired this one: the builders'
        links, the workers configured for them, and the workers connected here."""
        assert self.masterid is not None
        await self.botmaster.apply_builders(
            masterid=self.masterid, configs=self.config.builders, master_config=self.config
        )
        await self._configure_workers(self.config)
        await self.workers.listener.record_connections()

    async def reconfig(self) -> bool:
        """Re-read master.cfg and apply it; a bad config leaves the running one untouched."""
        async with self._reconfig_lock:
            log.info("reconfig_started", source=str(self.config.source))
            try:
                new = load_master_config(self.basedir, self.config.source.name)
            except ConfigErrors as errors:
                for err in errors.errors:
                    log.error("config_error", error=str(err))
                log.error(
                    "reconfig_failed",
                    errors=len(errors.errors),
                    reason="the configuration has errors; the running one is unchanged",
                )
                return False
            if new.db_url != self.config.db_url:
                log.warning("config_warning", message="db_url cannot change on reconfig; ignored")
            if dict(new.mq) != dict(self.config.mq):
                log.warning(
                    "config_warning", message="c['mq'] cannot change on reconfig; restart for it"
                )
            try:
                result = await self._apply(new, running=self.config)
            except Exception as exc:
                # e.g. the new www port is taken: nothing of the new configuration stays
                log.error(
                    "reconfig_failed",
                    reason=f"applying the new configuration: {type(exc).__name__}: {exc}; "
                    "the running configuration is unchanged",
                    exc_info=exc,
                )
                return False
            self.reconfig_count += 1
            b = result["builders"]
            log.info(
                "reconfig_done",
                builders_added=list(b.added),
                builders_removed=list(b.removed),
                builders_updated=list(b.updated),
                builders_unchanged=list(b.unchanged),
            )
            return True

    async def run(self) -> int:
        """Start, run until SIGTERM/SIGINT or :meth:`request_stop` (clean stop) or a failed
        task, then stop.

        SIGUSR1 (``buildyard stop --clean``) starts a clean shutdown: the running builds finish
        while no new one starts here (on a shared database the other masters take the new
        requests), then :meth:`request_stop`; a SIGTERM or SIGINT meanwhile stops at once.
        SIGHUP reconfigures. The handlers are in
        place before start-up, so a signal during start-up still ends in a stop. Returns the
        exit code.
        """
        loop = asyncio.get_running_loop()
        # a process's share: open files up to the hard limit, and no log flood when they run out
        soft, hard = limits.raise_open_file_limit()
        log.info("open_file_limit", soft=soft, hard=hard)
        limits.install_accept_error_handler(loop)
        stop = asyncio.Event()
        stops = (signal.SIGTERM, signal.SIGINT)
        for sig in stops:
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        loop.add_signal_handler(signal.SIGUSR1, self._on_sigusr1)
        try:
            # start-up creates the long-lived objects (a service per builder and worker, ...):
            # no cyclic collection while they are made, then they are frozen out of the
            # collector's way (gc.freeze) so that later collections do not walk them each time
            gc.disable()
            try:
                await self.start()
            finally:
                gc.enable()
            gc.collect()  # what start-up (and loading master.cfg) left as cyclic garbage
            gc.freeze()
            self.db.release_cache_memory()
            give_back_freed_memory()
            assert self.failures is not None
            failure = loop.create_task(self.failures.get())
            stopping = loop.create_task(stop.wait())
            requested = loop.create_task(self.stop_requested.wait())
            try:
                done, _ = await asyncio.wait(
                    {failure, stopping, requested}, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                failure.cancel()
                stopping.cancel()
                requested.cancel()
            code = 1 if failure in done else 0
            await self.stop()
            return code
        finally:
            for sig in (*stops, signal.SIGHUP, signal.SIGUSR1):
                loop.remove_signal_handler(sig)

    def _on_sigusr1(self) -> None:
        """``buildyard stop --clean``: a clean shutdown (no new build; stop once the running
        ones have ended), as Buildbot's SIGUSR1; during start-up, a plain stop."""
        if self.masterid is None or not self.running:
            self.request_stop("SIGUSR1 during start-up")
            return
        self.botmaster.clean_shutdown()

    def _on_sighup(self) -> None:
        if self.masterid is None or not self.running:
            log.warning("reconfig_ignored", reason="the master is still starting")
            return
        _ = self.spawn(self._reconfig_task(), name="reconfig")

    async def _reconfig_task(self) -> None:
        await self.reconfig()
        # what start-up froze may have been replaced (builders, workers, the old config):
        # give it back to the collector, collect, and freeze what lives on
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        self.db.release_cache_memory()
        give_back_freed_memory()


class _Hooks:
    """What the change hooks (www.hooks.HookServices) use of this master."""

    def __init__(self, master: BuildMaster) -> None:
        self.master = master
        self.changes = master.data.updates

    async def secret(self, name: str) -> str | None:
        return await self.master._secret(name)

    def pollers(self) -> dict[str, Any]:
        return {s.name: s for s in self.master.change_svc if callable(getattr(s, "force", None))}


# how long a killed worker has to acknowledge ``shutdown`` before its connection is dropped
KILL_ANSWER_TIMEOUT = 10.0


class ControlConsumer(Service):
    """Acts on the control messages another master sent for this master's builds, requests
    and workers (see :class:`_Control`); each in its own task, so a slow stop delays no other."""

    PATTERNS = (
        ("control", "builds", None, "stop"),
        ("control", "buildrequests", None, "cancel"),
        ("control", "worker", None, "kill"),
    )

    def __init__(self, master: BuildMaster, control: _Control) -> None:
        super().__init__("control")
        self._master = master
        self._control = control

    async def start_service(self) -> None:
        sub = self._master.mq.subscribe(*self.PATTERNS)
        _ = self.spawn(self._consume(sub), name="messages")

    async def _consume(self, sub: Any) -> None:
        async with sub:
            async for key, body in sub:
                try:
                    ident = int(key[2])
                except ValueError:
                    log.warning("control_bad_key", key="/".join(key))
                    continue
                reason = body.get("reason")
                _ = self.spawn(
                    self._act(key[1], ident, reason if isinstance(reason, str) else "no reason"),
                    name=f"{key[1]}:{ident}:{key[3]}",
                )

    async def _act(self, kind: str, ident: int, reason: str) -> None:
        master = self._master
        brd = master.botmaster.brd
        try:
            if kind == "builds":
                done = await brd.stop_build(ident, reason)
            elif kind == "buildrequests":
                request = await master.db.buildrequests.get_buildrequest(ident)
                done = (
                    request is not None
                    and request.claimed_by_masterid == master.masterid
                    and await brd.cancel_buildrequest(ident, reason)
                )
            else:
                worker = await master.db.workers.get_worker(ident)
                done = worker is not None and await self._control.kill_here(worker.name)
        except Exception:
            log.exception("control_failed", kind=kind, id=ident)
            return
        if done:
            log.info("control_done", kind=kind, id=ident, reason=reason)


def _control_key(kind: str, ident: int, action: str) -> tuple[str, ...]:
    """Buildbot's keys of the control messages one master sends the owner of an entity."""
    return ("control", kind, str(ident), action)


class _Control:
    """The control actions of the REST API (www.control.Control), done by this master, or
    by the master that owns the build, request or worker: with a queue shared by the masters
    (``c['mq']`` type postgres), an action on another master's entity is sent to it as a
    control message (``("control", "builds", id, "stop")``, ``("control", "buildrequests", id,
    "cancel")``, ``("control", "worker", id, "kill")``), which its :class:`ControlConsumer`
    acts on; the answer is given once the message is sent, as Buildbot gives it."""

    def __init__(self, master: BuildMaster) -> None:
        self._master = master

    @property
    def _shared(self) -> bool:
        return _shared_queue(self._master.mq) is not None

    def _send(self, kind: str, ident: int, action: str, body: Mapping[str, Any]) -> None:
        log.info("control_sent", kind=kind, id=ident, action=action)
        self._master.mq.produce(_control_key(kind, ident, action), body)

    async def stop_build(self, buildid: int, reason: str) -> bool:
        master = self._master
        if await master.botmaster.brd.stop_build(buildid, reason):
            return True
        build = await master.db.builds.get_build(buildid)
        if build is None or build.complete_at is not None or build.masterid == master.masterid:
            return False
        if not self._shared:
            return False
        self._send("builds", buildid, "stop", {"reason": reason})
        return True

    async def rebuild(self, buildid: int) -> tuple[int, Mapping[int, int]]:
        return await self._master.botmaster.brd.rebuild(buildid)

    async def cancel_buildrequest(self, brid: int, reason: str) -> bool:
        master = self._master
        if await master.botmaster.brd.cancel_buildrequest(brid, reason):
            return True
        request = await master.db.buildrequests.get_buildrequest(brid)
        if request is None or request.complete or not self._shared:
            return False
        owner = request.claimed_by_masterid
        if owner is None or owner == master.masterid:
            return False
        self._send("buildrequests", brid, "cancel", {"reason": reason})
        return True

    async def set_buildrequest_priority(self, brid: int, priority: int) -> bool:
        changed = await self._master.data.updates.set_buildrequest_priority(brid, priority)
        if changed:
            self._master.botmaster.brd.priority_changed(brid, priority)
        else:
            self._master.botmaster.brd.maybe_start_builds()
        return changed

    async def kill_here(self, name: str) -> bool:
        """Tell worker ``name`` to shut down now, if it is connected to this master."""
        conn = self._master.workers.listener.connections.get(name)
        if conn is None:
            return False
        log.info("worker_kill", worker=name)
        try:
            async with asyncio.timeout(KILL_ANSWER_TIMEOUT):
                await conn.shutdown()
        except Exception as exc:  # no answer: drop it (it then reconnects, or not)
            log.info("worker_shutdown_unanswered", worker=name, why=repr(exc))
            await conn.abort()
        return True

    async def worker_action(self, workerid: int, action: str, reason: str | None) -> None:
        """As Buildbot's ``Worker.controlWorker``: pause (with ``reason``) / unpause; stop
        (graceful shutdown: no new build, and the worker is told to shut down once idle); kill
        (told to shut down now, whatever it runs)."""
        master = self._master
        worker = await master.db.workers.get_worker(workerid)
        if worker is None:
            return
        updates = master.data.updates
        if action == "kill":
            if await self.kill_here(worker.name):
                return
            if self._shared and any(m != master.masterid for m in worker.connected_to):
                self._send("worker", workerid, "kill", {"reason": reason or "no reason"})
            return  # not connected anywhere: already shut down, as far as we know
        if action == "stop":
            paused, graceful, pause_reason = worker.paused, True, worker.pause_reason
        else:
            paused, graceful = action == "pause", worker.graceful
            pause_reason = reason if paused else None
        await updates.set_worker_state(
            workerid=workerid, paused=paused, graceful=graceful, pause_reason=pause_reason
        )
        master.botmaster.brd.maybe_start_builds()

    async def enable_scheduler(self, schedulerid: int, enabled: bool) -> None:
        await self._master.data.updates.set_scheduler_enabled(schedulerid, enabled)
