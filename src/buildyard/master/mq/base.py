"""The message-queue interface every backend implements (in-process, and PostgreSQL for
several masters).

Routing keys are tuples of strings, like Buildbot's: ``("builds", "12", "finished")``. A pattern
is a tuple of the same length where ``None`` (or ``"*"``) matches any one element.

Ordering: one subscription sees the events that match it in the order they were produced.
Ownership: a subscription belongs to the task that iterates it; closing it (or leaving the
``async with``) drops whatever it had not read yet.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

Key = tuple[str, ...]
Pattern = tuple[str | None, ...]
Body = Mapping[str, Any]


class Subscription(Protocol):
    def __aiter__(self) -> AsyncIterator[tuple[Key, Body]]: ...

    async def __aenter__(self) -> Subscription: ...

    async def __aexit__(self, *exc: object) -> None: ...

    def close(self) -> None: ...


class MessageQueue(Protocol):
    def produce(self, key: Key, body: Body) -> None:
        """Publish one event; never blocks."""
        ...

    def subscribe(self, *patterns: Pattern, local_only: bool = False) -> Subscription:
        """Events matching any of ``patterns``, from now on; with ``local_only``, only the
        events this master produced (where the queue is shared by several masters)."""
        ...

    async def wait_idle(self) -> None:
        """Return once every subscription has taken every event produced so far."""
        ...
