"""Claiming something only one master may run (a scheduler, a change source): try, and while
another master holds it, try again every ``interval`` seconds and at once whenever a master
stops or is expired (``masters/<id>/stopped``: what it held was released)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from buildyard.common.clock import Clock
from buildyard.master.mq.base import MessageQueue, Subscription


async def claim_until_held(
    claim: Callable[[], Awaitable[bool]],
    *,
    mq: MessageQueue | None,
    clock: Clock,
    interval: float,
    refused: Callable[[], None],
    held: Callable[[], None],
) -> None:
    """Return once ``claim()`` succeeded; ``refused()`` after each refusal, ``held()`` at once
    after the success (before anything else is awaited: a stop that comes while this returns
    must know the claim is held, to release it). Without ``mq``, only every ``interval``."""
    if mq is None:
        while not await claim():
            refused()
            await clock.sleep(interval)
        held()
        return
    wake = asyncio.Event()

    async def follow(events: Subscription) -> None:
        async for _key, _body in events:
            wake.set()

    async with mq.subscribe(("masters", None, "stopped")) as stopped:
        follower = asyncio.ensure_future(follow(stopped))
        try:
            while True:
                wake.clear()
                if await claim():
                    held()
                    return
                refused()
                waits = [
                    asyncio.ensure_future(clock.sleep(interval)),
                    asyncio.ensure_future(wake.wait()),
                ]
                try:
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for wait in waits:
                        wait.cancel()
                    await asyncio.gather(*waits, return_exceptions=True)
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
