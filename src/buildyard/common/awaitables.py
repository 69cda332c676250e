"""Awaiting what users' hooks return, and handing our coroutines to users' Twisted-style code.

A hook written for Buildbot (a step's ``run()``, a renderable's ``getRenderingFor``, a
service's ``reconfigService`` ...) may return a plain value, a coroutine, or, in code written
for Twisted, a ``Deferred``. :func:`resolve` awaits any of them. Nothing here imports Twisted:
a value is a Deferred only if ``twisted.internet.defer`` is already imported and says so, and
then the one adapter module, :mod:`buildyard.compat.twisted` (the optional
``buildyard[twisted]`` extra), converts it. See docs/twisted-code.md.

The other direction: users' ``@inlineCallbacks`` code yields what our step methods return
(``yield self.runCommand(cmd)``), and inlineCallbacks waits only on Deferreds. The methods that
such code calls are marked :func:`deferred_compatible`: they return their coroutine unchanged,
unless the adapter is active (master.cfg imported Twisted), in which case they return a
Deferred that is awaitable by asyncio code too. While no master.cfg has imported Twisted,
nothing here changes behaviour, whether or not Twisted is installed.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

__all__ = [
    "deferred_compatible",
    "is_deferred",
    "reactor_loop",
    "resolve",
    "started",
    "use_twisted",
]

F = TypeVar("F", bound=Callable[..., Any])

# Set by buildyard.compat.twisted once master.cfg imported Twisted: how a coroutine of ours is
# handed to Twisted-style code, and the event loop Twisted's reactor runs on.
_bridge: Callable[[Awaitable[Any]], Any] | None = None
_loop: asyncio.AbstractEventLoop | None = None


def use_twisted(bridge: Callable[[Awaitable[Any]], Any], loop: asyncio.AbstractEventLoop) -> None:
    """Called by the adapter when it is activated (once per process)."""
    global _bridge, _loop
    _bridge, _loop = bridge, loop


def reactor_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop Twisted's reactor was installed on, which the master must run; None
    while no master.cfg imported Twisted."""
    return _loop


def is_deferred(value: object) -> bool:
    """Whether ``value`` is a Twisted Deferred (never imports Twisted to find out)."""
    defer = sys.modules.get("twisted.internet.defer")
    deferred = getattr(defer, "Deferred", None)
    return isinstance(deferred, type) and isinstance(value, deferred)


async def resolve(value: Any) -> Any:
    """``value`` awaited while it is awaitable: coroutines, futures, and Deferreds (whose
    ``__await__`` only Twisted's own coroutine runner understands, so they go through the
    adapter)."""
    while True:
        if is_deferred(value):
            from buildyard.compat import twisted as adapter

            value = await adapter.wait(value)
        elif inspect.isawaitable(value):
            value = await value
        else:
            return value


def deferred_compatible(method: F) -> F:
    """Mark an ``async def`` that users' code calls: under the Twisted adapter it returns a
    Deferred (awaitable as well), which ``@inlineCallbacks`` code can yield."""

    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        coro = method(*args, **kwargs)
        bridge = _bridge
        return coro if bridge is None else bridge(coro)

    return cast("F", call)


def started(task: asyncio.Future[Any]) -> Any:
    """A task of ours already running, handed to users' code: the task itself, or under the
    adapter a Deferred of it (awaitable as well), which ``@inlineCallbacks`` code can yield."""
    bridge = _bridge
    return task if bridge is None else bridge(task)
