"""What master.cfg files get for ``from twisted.internet import defer`` and
``from twisted.python import log``, the two Twisted imports real configurations use most.

buildyard runs on asyncio and never imports Twisted; these are small stand-ins written from
Twisted's documented behaviour, so that Twisted-style code in a master.cfg or the modules beside
it loads and, where it is simple, runs:

- ``log.msg(...)`` and ``log.err(...)`` write to the master's log (structlog).
- ``defer.inlineCallbacks`` turns a generator function into a coroutine function: each value it
  yields is awaited when awaitable (a buildyard coroutine, a ``succeed`` result) and sent back,
  an exception is thrown back into the generator, and ``return value`` or
  ``defer.returnValue(value)`` ends it. A custom step's ``run`` written this way is awaited by
  the step like an ``async def run``.
- ``defer.succeed(value)`` / ``defer.fail(exc)`` give an awaitable already resolved;
  ``defer.maybeDeferred(f, ...)`` calls ``f`` and gives an awaitable of its result.

Deferred objects themselves (``Deferred()``, ``addCallback``, ``DeferredList``) are not provided:
code that builds them gets an AttributeError naming the missing Twisted name.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any

import structlog

__all__ = [
    "err",
    "fail",
    "inlineCallbacks",
    "maybeDeferred",
    "msg",
    "returnValue",
    "succeed",
]

_log = structlog.get_logger("buildyard.config")


# -- twisted.python.log --------------------------------------------------------------------------


def msg(*message: object, **kw: object) -> None:
    """Twisted's ``log.msg``: the message parts joined by spaces, at info level."""
    _log.info("config_log", message=" ".join(str(m) for m in message), **_fields(kw))


def err(_stuff: object = None, _why: object = None, **kw: object) -> None:
    """Twisted's ``log.err``: an error (or failure) and why, at error level."""
    _log.error(
        "config_log_error",
        why=None if _why is None else str(_why),
        error=None if _stuff is None else repr(_stuff),
        **_fields(kw),
    )


def _fields(kw: dict[str, object]) -> dict[str, str]:
    return {f"log_{k}": str(v) for k, v in kw.items()}


# -- twisted.internet.defer ----------------------------------------------------------------------


class _Resolved:
    """An awaitable that already has its result (or its exception)."""

    def __init__(self, result: object = None, exc: BaseException | None = None) -> None:
        self._result = result
        self._exc = exc

    def __await__(self) -> Generator[Any, None, Any]:
        return self._resolve().__await__()

    async def _resolve(self) -> object:
        if self._exc is not None:
            raise self._exc
        return self._result


def succeed(result: object) -> _Resolved:
    """Twisted's ``defer.succeed``: an awaitable whose result is ``result``."""
    return _Resolved(result)


def fail(result: BaseException | None = None) -> _Resolved:
    """Twisted's ``defer.fail``: an awaitable that raises ``result``."""
    return _Resolved(exc=result if result is not None else RuntimeError("defer.fail()"))


class _Return(BaseException):
    """Raised by :func:`returnValue`, as Twisted's is, to end an inlineCallbacks generator."""

    def __init__(self, value: object) -> None:
        super().__init__(value)
        self.value = value


def returnValue(value: object) -> None:
    """Twisted's ``defer.returnValue``: end the inlineCallbacks function with ``value``."""
    raise _Return(value)


async def _settle(value: object) -> object:
    return await value if inspect.isawaitable(value) else value


def inlineCallbacks(
    function: Callable[..., Any],
) -> Callable[..., Coroutine[Any, Any, Any]]:
    """Twisted's ``defer.inlineCallbacks``, as a coroutine function (see the module text)."""

    @functools.wraps(function)
    async def run(*args: Any, **kwargs: Any) -> Any:
        try:
            started = function(*args, **kwargs)
        except _Return as returned:
            return returned.value
        if not inspect.isgenerator(started):
            return await _settle(started)
        generator: Generator[Any, Any, Any] = started
        sent: object = None
        thrown: BaseException | None = None
        while True:
            try:
                yielded = generator.throw(thrown) if thrown is not None else generator.send(sent)
            except StopIteration as stopped:
                return stopped.value
            except _Return as returned:
                return returned.value
            try:
                sent, thrown = await _settle(yielded), None
            except Exception as exc:  # handed back to the generator, as Twisted does
                sent, thrown = None, exc

    return run


def maybeDeferred(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Awaitable[Any]:
    """Twisted's ``defer.maybeDeferred``: call ``function``; an awaitable of its result."""
    try:
        result = function(*args, **kwargs)
    except Exception as exc:  # the awaitable raises it, as in Twisted
        return _Resolved(exc=exc)
    if inspect.isawaitable(result):
        return result
    return _Resolved(result)
