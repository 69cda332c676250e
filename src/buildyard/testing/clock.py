"""A clock that moves only when told to."""

from __future__ import annotations

import asyncio


class FakeClock:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._mono = 0.0
        self._changed = asyncio.Event()
        # coroutines inside sleep(): advance only once the ones you expect are waiting
        self.sleepers = 0

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    async def sleep(self, seconds: float) -> None:
        wake = self._mono + seconds
        self.sleepers += 1
        try:
            while self._mono < wake:
                await self._changed.wait()
        finally:
            self.sleepers -= 1

    def advance(self, seconds: float) -> None:
        self._now += seconds
        self._mono += seconds
        self._changed.set()
        self._changed = asyncio.Event()
