"""The in-process message queue: one queue per subscription, fan-out on produce.

Queues are unbounded on purpose: ``produce`` is called from the single write path right after a
commit and must not block or drop. ``statistics()`` shows the deepest backlog so a slow consumer
is visible.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from buildyard.master.mq.base import Body, Key, Pattern
from buildyard.master.mq.keys import matches

# put on a closed subscription's queue to wake its consumer
_CLOSED: tuple[Key, Body] = ((), {})


class SubscriptionClosed(Exception):
    pass


class LocalSubscription:
    def __init__(
        self, mq: LocalMQ, patterns: tuple[Pattern, ...], *, local_only: bool = False
    ) -> None:
        self._mq = mq
        self.patterns = patterns
        # only this master's events, where the queue also carries other masters' (postgres)
        self.local_only = local_only
        self._queue: asyncio.Queue[tuple[Key, Body]] = asyncio.Queue()
        # events handed out whose consumer has not come back for the next one yet
        self._in_hand = 0
        self.closed = False

    def _offer(self, key: Key, body: Body) -> None:
        if not self.closed and any(matches(p, key) for p in self.patterns):
            self._queue.put_nowait((key, body))

    @property
    def pending(self) -> int:
        return 0 if self.closed else self._queue.qsize() + self._in_hand

    async def __aiter__(self) -> AsyncIterator[tuple[Key, Body]]:
        try:
            while not self.closed:
                self._in_hand = 0
                self._mq._notify()
                item = await self._queue.get()
                if item is _CLOSED:
                    return
                self._in_hand = 1
                yield item
        finally:
            self._in_hand = 0
            self.close()

    async def get(self) -> tuple[Key, Body]:
        """The next event (for tests and one-shot waits)."""
        item = await self._queue.get()
        self._mq._notify()
        if item is _CLOSED:
            raise SubscriptionClosed("the subscription was closed")
        return item

    async def __aenter__(self) -> LocalSubscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._mq._remove(self)
            # wake a consumer blocked on the queue; what it had not read is dropped
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(_CLOSED)
            self._mq._notify()


def _slot(pattern: Pattern) -> tuple[int, str | None]:
    """Where a pattern is filed: its length and its first word (None when that is a wildcard,
    or for the empty pattern)."""
    head = pattern[0] if pattern else None
    return len(pattern), (None if head == "*" else head)


class LocalMQ:
    def __init__(self) -> None:
        self._subscriptions: set[LocalSubscription] = set()
        # the subscriptions whose patterns could match a key, by the key's length and first
        # word (Buildbot's keys start with the resource: "builds", "logs"...), so that an event
        # is offered to the few that may want it, not to every subscription
        self._index: dict[tuple[int, str | None], dict[LocalSubscription, None]] = {}
        # set whenever some subscription's backlog shrinks; wait_idle re-checks then
        self._changed = asyncio.Event()
        self.produced = 0

    def produce(self, key: Key, body: Body) -> None:
        self.produced += 1
        self._fan_out(key, body, remote=False)

    def _fan_out(self, key: Key, body: Body, *, remote: bool) -> None:
        size = len(key)
        named = self._index.get((size, key[0])) if key else None
        wild = self._index.get((size, None))
        if named and wild:
            candidates = [*named, *(sub for sub in wild if sub not in named)]
        elif named or wild:
            candidates = list(named or wild or ())
        else:
            return
        for sub in candidates:
            if not (remote and sub.local_only):
                sub._offer(key, body)

    def subscribe(self, *patterns: Pattern, local_only: bool = False) -> LocalSubscription:
        sub = LocalSubscription(self, patterns, local_only=local_only)
        self._subscriptions.add(sub)
        for pattern in patterns:
            self._index.setdefault(_slot(pattern), {})[sub] = None
        return sub

    def _remove(self, sub: LocalSubscription) -> None:
        self._subscriptions.discard(sub)
        for pattern in sub.patterns:
            slot = _slot(pattern)
            subs = self._index.get(slot)
            if subs is not None:
                subs.pop(sub, None)
                if not subs:
                    del self._index[slot]

    def _notify(self) -> None:
        self._changed.set()

    async def wait_idle(self) -> None:
        while any(s.pending for s in self._subscriptions):
            self._changed.clear()
            await self._changed.wait()

    def statistics(self) -> dict[str, int]:
        return {
            "subscriptions": len(self._subscriptions),
            "produced": self.produced,
            "max_backlog": max((s.pending for s in self._subscriptions), default=0),
        }
