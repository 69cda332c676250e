"""Waiting on users' hooks (values, coroutines, Deferreds), and handing coroutines to
``@inlineCallbacks`` code, without installing Twisted's reactor in the test process (the
adapter's activation, which does, runs in real master processes: tests/e2e/test_twisted_code.py).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Generator
from typing import Any

import pytest
from twisted.internet import defer

from buildyard.common import awaitables
from buildyard.common.awaitables import deferred_compatible, is_deferred, resolve
from buildyard.compat import twisted as adapter


async def _answer(value: int) -> int:
    await asyncio.sleep(0)
    return value


async def _fail() -> int:
    await asyncio.sleep(0)
    raise ValueError("from a coroutine")


async def test_resolve_waits_for_a_deferred_fired_later() -> None:
    d: defer.Deferred[int] = defer.Deferred()
    asyncio.get_running_loop().call_later(0.01, d.callback, 5)
    assert await resolve(d) == 5


async def test_resolve_raises_the_exception_of_a_failed_deferred() -> None:
    with pytest.raises(KeyError, match="gone"):
        await resolve(defer.fail(KeyError("gone")))


async def test_resolve_follows_a_coroutine_that_returns_a_deferred() -> None:
    async def hook() -> defer.Deferred[str]:
        return defer.succeed("inner")

    assert await resolve(hook()) == "inner"
    assert await resolve(7) == 7


def test_only_deferreds_are_deferreds() -> None:
    coro = _answer(1)
    assert not is_deferred(coro)
    coro.close()
    assert is_deferred(defer.succeed(None))
    assert not is_deferred(asyncio.Future)


async def test_methods_stay_coroutines_while_master_cfg_has_not_imported_twisted() -> None:
    """Twisted importable (it is, here) changes nothing until the adapter is activated."""

    class Step:
        @deferred_compatible
        async def runCommand(self, value: int) -> int:  # noqa: N802
            return await _answer(value)

    assert awaitables.reactor_loop() is None
    assert not adapter.is_active()
    call = Step().runCommand(3)
    assert inspect.iscoroutine(call)
    assert await call == 3


async def test_a_bridged_coroutine_is_yielded_by_inline_callbacks() -> None:
    seen: list[Any] = []

    @defer.inlineCallbacks
    def run() -> Generator[Any, Any, int]:
        first = yield adapter.bridge(_answer(1))
        seen.append(first)
        try:
            yield adapter.bridge(_fail())
        except ValueError as exc:
            seen.append(str(exc))
        return 2

    assert await resolve(run()) == 2
    assert seen == [1, "from a coroutine"]


async def test_a_bridged_coroutine_is_awaited_by_asyncio_code() -> None:
    assert await adapter.bridge(_answer(4)) == 4
    with pytest.raises(ValueError, match="from a coroutine"):
        await adapter.bridge(_fail())
