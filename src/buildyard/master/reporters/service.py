"""``c['services']``: Buildbot's ``BuildbotService`` and the manager that runs them.

A service in master.cfg is built once per load: its constructor runs ``checkConfig(*args,
**kwargs)`` (where ``config.error`` reports mistakes) and remembers the arguments. When the
master starts it, the manager hands it the master, calls ``reconfigService(*args, **kwargs)``
with those arguments and then ``startService()``. On reconfig a service whose name, class and
arguments are all unchanged is left alone; one whose arguments changed keeps running and gets
``reconfigService`` with the new ones; one whose class changed is stopped and replaced. Any of
the three hooks may be a plain method, ``async def``, or (with the optional ``buildyard[twisted]``
extra, docs/twisted-code.md) return a Twisted Deferred.

Each running service is wrapped in a :class:`HostedService` of the master's service tree, so
its tasks are cancelled with it (:meth:`BuildbotService.spawn`).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import structlog

from buildyard.common.awaitables import deferred_compatible, resolve
from buildyard.common.config_object import ConfigObject
from buildyard.common.errors import config_error
from buildyard.common.service import ConfiguredService, ServiceManager
from buildyard.master.data.resultspec import ResultSpec
from buildyard.master.model.properties import Properties
from buildyard.master.mq.base import MessageQueue

log = structlog.get_logger(__name__)

__all__ = ["BuildbotService", "HostedService", "ReporterEnvironment", "ServicesManager"]


async def maybe_await(value: object) -> Any:
    """``value``, awaited while it is awaitable (a hook may be sync, ``async def``, or return a
    Deferred under the ``buildyard[twisted]`` extra)."""
    return await resolve(value)


class DataReader:
    """What reporters read: ``get(path, spec)`` of the data API, as Buildbot's
    ``master.data.get`` answers: an item dict, or a list of them for a collection; filters,
    order and limit as a :class:`ResultSpec`."""

    def __init__(
        self, get: Callable[[tuple[str, ...], ResultSpec | None], Coroutine[Any, Any, Any]]
    ) -> None:
        self._get = get

    async def get(self, path: Sequence[object], spec: ResultSpec | None = None) -> Any:
        found = await self._get(tuple(str(p) for p in path), spec)
        items = getattr(found, "items", None)
        return list(items) if isinstance(items, list) else found


class StateStore(Protocol):
    """Where services keep small JSON values across restarts (the master's state table)."""

    async def get_object_id(self, name: str, class_name: str) -> int: ...

    async def get_state(self, objectid: int, name: str, default: Any = None) -> Any: ...

    async def set_state(self, objectid: int, name: str, value: Any) -> None: ...


@dataclass(kw_only=True)
class ReporterEnvironment:
    """What the master gives its services: the data API, the queue, the site's title and
    URL, the secret providers, and the master object itself (for users' code that reaches
    through ``self.master`` as in Buildbot). The master updates ``title``, ``buildbot_url``
    and ``secrets_providers`` in place on reconfig."""

    data: DataReader
    mq: MessageQueue
    master: Any = None
    state: StateStore | None = None
    title: str = "Buildbot"
    buildbot_url: str = "http://localhost:8080/"
    secrets_providers: Sequence[Any] = field(default_factory=tuple)
    # the master's secret lookup, which hides every value it gives (None: ``secrets_providers``
    # are asked directly, and nothing is hidden)
    secret: Callable[[str], Awaitable[str | None]] | None = None


def same_class(a: object, b: object) -> bool:
    ta, tb = type(a), type(b)
    return ta is tb or (ta.__module__, ta.__qualname__) == (tb.__module__, tb.__qualname__)


class BuildbotService(ConfigObject):
    """``buildbot.util.service.BuildbotService``: the base of reporters and users' services.

    Subclasses override ``checkConfig`` (validate; runs in the constructor), ``reconfigService``
    (take the arguments; runs before the start and on every reconfig that changed them),
    ``startService`` and ``stopService``; each may be ``async def``. ``name`` is required,
    as a keyword argument or a class attribute. ``self.master`` is the master once started.
    """

    name: str | None = None
    #: keyword arguments whose renderables (``util.Secret``, ...) are rendered before
    #: ``reconfigService`` gets them
    secrets: ClassVar[Sequence[str]] = ()

    def __init__(self, *args: Any, name: str | None = None, **kwargs: Any) -> None:
        if name is not None:
            self.name = name
        self.master: Any = None
        self._env: ReporterEnvironment | None = None
        self._host: HostedService | None = None
        self._config_args = args
        self._config_kwargs = kwargs
        result = self.checkConfig(*args, **kwargs)
        if inspect.isawaitable(result):
            # checkConfig runs while master.cfg loads, outside any event loop
            config_error(f"{type(self).__name__}.checkConfig must not be async")
            if inspect.iscoroutine(result):
                result.close()
        if not isinstance(self.name, str) or not self.name:
            config_error(f"{type(self).__name__}: must pass a name to constructor")

    def _compare_key(self) -> object:
        return (self.name, self._config_arguments)

    def __eq__(self, other: object) -> bool:
        # A class master.cfg defines is a new class object on every load: the same class is
        # the same module and qualified name, so an unchanged service is left running.
        if not isinstance(other, BuildbotService):
            return NotImplemented
        return same_class(self, other) and bool(self._compare_key() == other._compare_key())

    def __hash__(self) -> int:
        return hash((type(self).__module__, type(self).__qualname__, self.name))

    # -- Buildbot's hooks ----------------------------------------------------------------------

    def checkConfig(self, *args: Any, **kwargs: Any) -> Any:
        return None

    def reconfigService(self, *args: Any, **kwargs: Any) -> Any:
        return None

    def startService(self) -> Any:
        return None

    def stopService(self) -> Any:
        return None

    # -- for subclasses ------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, None], *, name: str) -> asyncio.Task[None]:
        """Run ``coro`` as a task that ends (cancelled) when this service stops."""
        if self._host is None:
            coro.close()
            raise RuntimeError(f"service {self.name!r} is not running")
        return self._host.spawn(coro, name=name)

    @property
    def running(self) -> bool:
        return self._host is not None and self._host.running

    @deferred_compatible
    async def renderSecrets(self, *values: Any) -> Any:
        """``values`` with their secrets and renderables rendered (one value: that value;
        several: a tuple), as Buildbot's ``renderSecrets``."""
        from buildyard.master.reporters.details import render_context  # imports this module

        props = Properties()
        if self._env is not None:
            props.build = render_context(self._env, [])
        rendered = [await props.render(v) for v in values]
        return rendered[0] if len(rendered) == 1 else tuple(rendered)

    async def _render_secrets(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        from buildyard.master.reporters.details import render_context  # imports this module

        rendered = dict(kwargs)
        wanted = [k for k in self.secrets if k in kwargs]
        if wanted and self._env is not None:
            props = Properties()
            props.build = render_context(self._env, [])
            for key in wanted:
                rendered[key] = await props.render(kwargs[key])
        return rendered


class HostedService(ConfiguredService[BuildbotService]):
    """One ``c['services']`` entry in the master's service tree."""

    def __init__(self, name: str, config: BuildbotService, env: ReporterEnvironment) -> None:
        super().__init__(name, config)
        self.env = env
        self.instance = config

    async def _configure(self, source: BuildbotService) -> None:
        instance = self.instance
        instance.master, instance._env, instance._host = self.env.master, self.env, self
        kwargs = await instance._render_secrets(source._config_kwargs)
        await maybe_await(instance.reconfigService(*source._config_args, **kwargs))

    async def start_service(self) -> None:
        await self._configure(self.instance)
        await maybe_await(self.instance.startService())

    async def stop(self) -> None:
        # the service's own stopService first, while its tasks still run (a reporter lets the
        # reports in hand finish); then its tasks are cancelled
        if self.running:
            try:
                await maybe_await(self.instance.stopService())
            finally:
                await super().stop()

    def statistics(self) -> dict[str, int]:
        own = getattr(self.instance, "statistics", None)
        found = own() if callable(own) else {}
        return {**super().statistics(), **(found if isinstance(found, dict) else {})}

    async def reconfigure(self, config: BuildbotService) -> None:
        if not same_class(config, self.instance):
            await maybe_await(self.instance.stopService())
            await self._cancel_tasks()
            self.instance = config
            await self.start_service()
        else:
            await self._configure(config)
        self.config = config


class ServicesManager(ServiceManager[BuildbotService]):
    """``master.service_manager``: a child per ``c['services']`` entry, by name."""

    def __init__(self, env: ReporterEnvironment) -> None:
        super().__init__("services", factory=self._make)
        self.env = env

    def _make(self, name: str, config: BuildbotService) -> ConfiguredService[BuildbotService]:
        return HostedService(name, config, self.env)

    def named(self, name: str) -> BuildbotService:
        """The running instance of service ``name`` (Buildbot's ``namedServices[name]``)."""
        child = self.child(name)
        assert isinstance(child, HostedService)
        return child.instance

    @property
    def namedServices(self) -> dict[str, BuildbotService]:
        return {c.name: c.instance for c in self.children if isinstance(c, HostedService)}
