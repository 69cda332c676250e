"""Services: things that start, run background tasks, reconfigure and stop, arranged in a tree.

A :class:`Service` has ordered children. ``start()`` starts the service itself, then its
children in the order they were added (dependency order); ``stop()`` stops the children in
reverse order, then cancels the service's own tasks and stops the service itself.

Every background task belongs to the service that spawned it (:meth:`Service.spawn`): stopping
the service cancels and awaits its tasks, and a task that fails is logged and reported to the
root's ``failures`` so the process can stop instead of running on half-dead.

A :class:`ServiceManager` keeps a set of children named by configuration: ``apply()`` adds the
new names, removes the missing ones, reconfigures those whose configuration changed, and leaves
the unchanged ones running untouched.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Coroutine, Iterator, Mapping
from typing import Any, Generic, TypeVar

import structlog

log = structlog.get_logger(__name__)

# up to this many services added or removed (or reconfigured) by one apply are logged one by one
_LOG_EACH = 50

C = TypeVar("C")

# the tasks of every service that has not spawned one: never added to (spawn makes a set)
_NO_TASKS: set[asyncio.Task[None]] = set()
# the children of every service that has none: never added to (add_child makes a dict)
_NO_CHILDREN: dict[str, Service] = {}


class Service:
    # slots: a master holds one service per builder and per worker (10,000 builders: 10,000
    # services); subclasses that declare no slots of their own have a __dict__ as usual
    __slots__ = ("__weakref__", "_children", "_tasks", "failures", "name", "parent", "running")

    def __init__(self, name: str) -> None:
        self.name = name
        self.parent: Service | None = None
        # made by the first child added: most services (one per builder) have none
        self._children: dict[str, Service] = _NO_CHILDREN
        # made by the first spawn: most services (one per builder) never spawn a task
        self._tasks: set[asyncio.Task[None]] = _NO_TASKS
        self.running = False
        # set on the root: the first exception of any task in the tree
        self.failures: asyncio.Queue[BaseException] | None = None

    # -- tree ----------------------------------------------------------------------------------

    @property
    def children(self) -> tuple[Service, ...]:
        return tuple(self._children.values())

    def child(self, name: str) -> Service:
        return self._children[name]

    def __contains__(self, name: object) -> bool:
        return name in self._children

    def __iter__(self) -> Iterator[Service]:
        return iter(tuple(self._children.values()))

    @property
    def path(self) -> str:
        return f"{self.parent.path}/{self.name}" if self.parent else self.name

    def add_child(self, child: Service) -> Service:
        """Attach ``child``; it starts with this service (:meth:`add_service` if running)."""
        if child.name in self._children:
            raise ValueError(f"{self.path} already has a child named {child.name!r}")
        child.parent = self
        if self._children is _NO_CHILDREN:
            self._children = {}
        self._children[child.name] = child
        return child

    async def add_service(self, child: Service) -> Service:
        """Attach ``child`` and start it now if this service is running."""
        self.add_child(child)
        if self.running:
            await child.start()
        return child

    async def remove_service(self, name: str) -> Service:
        child = self._children.pop(name)
        if child.running:
            await child.stop()
        child.parent = None
        return child

    def _root(self) -> Service:
        node = self
        while node.parent is not None:
            node = node.parent
        return node

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        if self.running:
            return
        await self.start_service()
        self.running = True
        started: list[Service] = []
        try:
            for child in self.children:
                await child.start()
                started.append(child)
        except BaseException:
            for child in reversed(started):
                await child.stop()
            await self._cancel_tasks()
            await self.stop_service()
            self.running = False
            raise
        log.debug("service_started", service=self.path)

    async def stop(self) -> None:
        if not self.running:
            return
        errors: list[Exception] = []
        try:
            for child in reversed(self.children):
                try:
                    await child.stop()
                except Exception as exc:  # the siblings still stop
                    errors.append(exc)
            await self._cancel_tasks()
            await self.stop_service()
        finally:
            self.running = False
        log.debug("service_stopped", service=self.path)
        if errors:
            raise ExceptionGroup(f"{self.path}: children failed to stop", errors)

    async def start_service(self) -> None:
        """Hook: acquire what the service needs before its children start."""

    async def stop_service(self) -> None:
        """Hook: release it, after the children and the tasks have stopped."""

    # -- tasks ---------------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, None], *, name: str) -> asyncio.Task[None]:
        """Run ``coro`` as a task owned by this service; it is cancelled when the service stops."""
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.path}:{name}")
        if self._tasks is _NO_TASKS:
            self._tasks = set()
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        log.error("service_task_failed", service=self.path, task=task.get_name(), exc_info=exc)
        root = self._root()
        if root.failures is not None:
            root.failures.put_nowait(exc)

    async def _cancel_tasks(self) -> None:
        tasks = tuple(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def statistics(self) -> dict[str, int]:
        return {"children": len(self._children), "tasks": len(self._tasks)}


class ConfiguredService(Service, Generic[C]):
    """A service built from one configuration value, updated in place on reconfig."""

    __slots__ = ("config",)

    def __init__(self, name: str, config: C) -> None:
        super().__init__(name)
        self.config = config

    async def reconfigure(self, config: C) -> None:
        """Take ``config`` (which differs from the current one). Default: just keep it."""
        self.config = config


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ReconfigResult:
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()


class ServiceManager(Service, Generic[C]):
    """Children named by configuration; :meth:`apply` makes the running set match a new config."""

    def __init__(self, name: str, *, factory: Callable[[str, C], ConfiguredService[C]]) -> None:
        super().__init__(name)
        self._factory = factory

    def configured(self) -> dict[str, ConfiguredService[C]]:
        return {c.name: c for c in self.children if isinstance(c, ConfiguredService)}

    @property
    def namedServices(self) -> dict[str, Any]:  # noqa: N802 - Buildbot's name
        """The running children by name (Buildbot's ``namedServices``, which users' code reads,
        e.g. ``master.scheduler_manager.namedServices['force']``)."""
        return dict(self.configured())

    async def apply(self, configs: Mapping[str, C]) -> ReconfigResult:
        current = self.configured()
        removed = [n for n in current if n not in configs]
        added: list[str] = []
        updated: list[str] = []
        unchanged: list[str] = []
        # a line per service while they are few; a master with thousands of builders gets one
        # summary line per kind instead of thousands of lines at every start
        new = sum(1 for n in configs if n not in current)
        each = len(removed) + new <= _LOG_EACH
        for name in removed:
            await self.remove_service(name)
            if each:
                log.info("service_removed", service=f"{self.path}/{name}")
        for name, config in configs.items():
            existing = current.get(name)
            if existing is None:
                await self.add_service(self._factory(name, config))
                added.append(name)
                if each:
                    log.info("service_added", service=f"{self.path}/{name}")
            elif existing.config == config:
                unchanged.append(name)
            else:
                await existing.reconfigure(config)
                updated.append(name)
                if len(updated) <= _LOG_EACH:
                    log.info("service_reconfigured", service=f"{self.path}/{name}")
        if not each:
            for event, names in (("services_removed", removed), ("services_added", added)):
                if names:
                    log.info(event, manager=self.path, count=len(names), first=names[:5])
        if len(updated) > _LOG_EACH:
            log.info("services_reconfigured", manager=self.path, count=len(updated))
        return ReconfigResult(
            added=tuple(added),
            removed=tuple(removed),
            updated=tuple(updated),
            unchanged=tuple(unchanged),
        )
