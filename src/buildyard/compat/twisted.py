"""The optional ``buildyard[twisted]`` extra: users' Twisted-style code on buildyard's loop.

The only module of buildyard that imports Twisted (an import-linter contract keeps it so), and
it is imported only when master.cfg (or a module it imports) imports a Twisted module, or when
a hook hands us a Deferred. What it does (docs/twisted-code.md):

* :func:`activate` installs Twisted's asyncio reactor on the event loop the master runs (the
  running loop, or a new one the ``start`` command then runs), before anything else imports
  ``twisted.internet.reactor``; so ``reactor.callLater``, ``task.deferLater`` and everything
  else that uses the reactor run on our loop. Twisted's log (``twisted.python.log.msg``, unhandled
  errors in Deferreds) goes to buildyard's log.
* :func:`wait` awaits a Deferred a user's hook returned (``Deferred.asFuture`` on the loop).
* :func:`bridge` hands a coroutine of ours to users' ``@inlineCallbacks`` code: it runs as an
  asyncio task, and the caller gets a :class:`BridgedDeferred`, which inlineCallbacks can yield
  and asyncio code can await.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Awaitable
from typing import Any, ClassVar

import structlog

from buildyard.common import awaitables

__all__ = [  # and IRenderable, IProperties (module __getattr__)
    "TwistedExtraMissing",
    "activate",
    "available",
    "bridge",
    "wait",
]

log = structlog.get_logger("twisted")

EXTRA = "buildyard[twisted]"


class _State:
    lock = threading.RLock()
    active = False
    activating = False  # the imports activate() makes come back to it
    bridged: Any = None  # BridgedDeferred, made once Twisted is imported
    interfaces: ClassVar[dict[str, Any]] = {}


_state = _State()


class TwistedExtraMissing(ImportError):
    """master.cfg imports Twisted, and the ``buildyard[twisted]`` extra is not installed."""


def available() -> bool:
    """Whether Twisted can be imported (asked of the import system's finders, other than
    buildyard's own ``buildbot`` finder, without importing it)."""
    for finder in sys.meta_path:
        find = getattr(finder, "find_spec", None)
        if find is None or type(finder).__module__.startswith("buildyard."):
            continue
        try:
            if find("twisted", None) is not None:
                return True
        except ImportError:
            return False
    return False


def missing(module: str) -> TwistedExtraMissing:
    return TwistedExtraMissing(
        f"{module} is Twisted, which buildyard runs only with the optional extra "
        f"{EXTRA}: pip install '{EXTRA}' (Twisted-style code: docs/twisted-code.md)",
        name=module,
    )


def is_active() -> bool:
    return _state.active


def activate(module: str) -> None:
    """Make users' Twisted-style code run on buildyard's event loop (once per process).

    ``module`` is the Twisted module being imported (for the error when Twisted is missing).
    """
    with _state.lock:
        if _state.active or _state.activating:
            return
        if not available():
            raise missing(module)
        _state.activating = True
        try:
            loop = _master_loop()
            _install_reactor(loop)
            _route_log()
            awaitables.use_twisted(bridge, loop)
            _state.active = True
        finally:
            _state.activating = False


def _master_loop() -> asyncio.AbstractEventLoop:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # master.cfg loads before the master's loop runs: make it now
        return asyncio.new_event_loop()


def _install_reactor(loop: asyncio.AbstractEventLoop) -> None:
    if "twisted.internet.reactor" in sys.modules:
        from twisted.internet import reactor

        if getattr(reactor, "_asyncioEventloop", None) is not loop:
            raise RuntimeError(
                f"Twisted's reactor ({type(reactor).__name__}) was installed before buildyard "
                "could install its asyncio reactor on the master's event loop; nothing may "
                "import twisted.internet.reactor before master.cfg loads"
            )
        return
    from twisted.internet import asyncioreactor

    asyncioreactor.install(loop)  # type: ignore[no-untyped-call]


def _route_log() -> None:
    from twisted.logger import LogLevel, formatEvent, globalLogBeginner

    levels = {
        LogLevel.debug: log.debug,
        LogLevel.info: log.info,
        LogLevel.warn: log.warning,
        LogLevel.error: log.error,
        LogLevel.critical: log.critical,
    }

    def observe(event: dict[str, Any]) -> None:
        text = formatEvent(event)
        failure = event.get("log_failure")
        if failure is not None:
            text = f"{text}\n{failure.getTraceback()}" if text else failure.getTraceback()
        emit = levels.get(event.get("log_level"), log.info)
        if event.get("isError") or failure is not None:
            emit = log.error
        emit("twisted_log", message=text, system=event.get("log_system") or "-")

    # a plain callable is an ILogObserver by Twisted's documentation
    globalLogBeginner.beginLoggingTo([observe], redirectStandardIO=False)  # type: ignore[list-item]


async def wait(deferred: Any) -> Any:
    """The result of a Deferred (raises its failure's exception)."""
    task = getattr(deferred, "_buildyard_task", None)
    if task is not None:  # one of ours: await the task itself
        _ = deferred.addErrback(lambda _failure: None)  # the error is raised here instead
        return await task
    return await deferred.asFuture(asyncio.get_running_loop())


def bridge(coro: Awaitable[Any]) -> Any:
    """``coro`` running as an asyncio task (or the task it already is), as a Deferred that
    asyncio code may also await."""
    task = asyncio.ensure_future(coro)
    deferred = _bridged_class().fromFuture(task)
    deferred._buildyard_task = task
    return deferred


def _bridged_class() -> Any:
    if _state.bridged is None:
        from twisted.internet.defer import Deferred

        class BridgedDeferred(Deferred[Any]):
            """A Deferred for a coroutine of ours running as an asyncio task: Twisted-style
            code yields it; asyncio code awaits the task."""

            _buildyard_task: asyncio.Future[Any]

            def __await__(self) -> Any:
                _ = self.addErrback(lambda _failure: None)  # the awaiting code gets the error
                return self._buildyard_task.__await__()

        _state.bridged = BridgedDeferred
    return _state.bridged


def __getattr__(name: str) -> Any:
    """``buildbot.interfaces``' ``IRenderable`` and ``IProperties``, as zope.interface
    interfaces (so ``@implementer(IRenderable)`` works); buildyard itself recognises a
    renderable by its ``getRenderingFor`` method, declared or not."""
    if name not in ("IRenderable", "IProperties"):
        raise AttributeError(name)
    if not _state.interfaces:
        if not available():
            raise missing(f"buildbot.interfaces.{name}")
        # buildyard's own import, not users' Twisted-style code: the import finder that turns
        # the adapter on at a master.cfg's first ``zope`` import must not (see activate())
        with _state.lock:
            was, _state.activating = _state.activating, True
            try:
                from zope.interface import Interface  # type: ignore[import-untyped]
            finally:
                _state.activating = was

        class IRenderable(Interface):  # type: ignore[misc]
            """Something rendered with a build's properties: ``getRenderingFor(props)``,
            returning the value or a Deferred (or an awaitable) for it."""

            def getRenderingFor(iprops: Any) -> Any:
                """The rendering of this object for the properties ``iprops``."""

        class IProperties(Interface):  # type: ignore[misc]
            """A build's properties: ``getProperty``, ``setProperty``, ``render``, ..."""

        _state.interfaces.update(IRenderable=IRenderable, IProperties=IProperties)
    return _state.interfaces[name]
