"""Locks: ``util.MasterLock`` and ``util.WorkerLock``, taken by builds and steps.

master.cfg names a lock (``MasterLock("db")``) and how a build or step takes it
(``lock.access("exclusive")`` or ``lock.access("counting", count)``; a bare lock means counting,
1). Each name is one real lock per master; a WorkerLock is one real lock per worker, whose size
is ``maxCountForWorker.get(worker, maxCount)``.

A real lock is fair: requests are served in arrival order, and a counting request queued behind
an exclusive one waits its turn, so exclusive users are not starved. A holder of several locks
takes them all at once (:func:`acquire_all`): while any is unavailable it holds none and waits
in that lock's queue, so two builds taking the same locks in different orders cannot deadlock.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from buildyard.common.config_object import ConfigObject
from buildyard.common.errors import config_error

__all__ = ["LockAccess", "MasterLock", "WorkerLock"]

MODES = ("counting", "exclusive")


class _LockId(ConfigObject):
    name: str
    maxCount: int

    def access(self, mode: str, count: int = 1) -> LockAccess:
        return LockAccess(self, mode, count)

    def defaultAccess(self) -> LockAccess:
        return LockAccess(self, "counting")

    def _check(self, name: object, maxCount: object) -> None:
        kind = type(self).__name__
        if not isinstance(name, str) or not name:
            config_error(f"{kind} needs a name (a non-empty string), not {name!r}")
        if not isinstance(maxCount, int) or isinstance(maxCount, bool) or maxCount < 1:
            config_error(f"{kind}({name!r}): maxCount must be a positive integer, not {maxCount!r}")


class MasterLock(_LockId):
    def __init__(self, name: str, maxCount: int = 1) -> None:
        self._check(name, maxCount)
        self.name = name
        self.maxCount = maxCount


class WorkerLock(_LockId):
    def __init__(
        self, name: str, maxCount: int = 1, maxCountForWorker: Mapping[str, int] | None = None
    ) -> None:
        self._check(name, maxCount)
        self.name = name
        self.maxCount = maxCount
        given: object = maxCountForWorker
        if given is not None and not isinstance(given, Mapping):
            config_error(f"WorkerLock({name!r}): maxCountForWorker must be a dict")
            maxCountForWorker = None
        self.maxCountForWorker = dict(maxCountForWorker or {})

    def count_for(self, worker: str) -> int:
        return int(self.maxCountForWorker.get(worker, self.maxCount))


class LockAccess(ConfigObject):
    def __init__(self, lockid: _LockId, mode: str, count: int = 1) -> None:
        given: object = lockid
        if not isinstance(given, _LockId):
            config_error(f"a lock access needs a MasterLock or WorkerLock, not {lockid!r}")
        if mode not in MODES:
            config_error(f"lock access mode must be 'counting' or 'exclusive', not {mode!r}")
        if not isinstance(count, int) or count < 0:
            config_error(f"lock access count must be a non-negative integer, not {count!r}")
        elif mode == "exclusive" and count != 1:
            config_error("an exclusive lock access has a count of 1")
        self.lockid = lockid
        self.mode = mode
        self.count = count


def accesses(locks: Sequence[Any] | None) -> list[LockAccess]:
    """master.cfg's ``locks=[...]`` as accesses (a bare lock is counting, 1)."""
    found = []
    for item in locks or ():
        if isinstance(item, LockAccess):
            found.append(item)
        elif isinstance(item, _LockId):
            found.append(item.defaultAccess())
    return found


@dataclasses.dataclass(eq=False)
class _Waiter:
    owner: object
    access: LockAccess
    woken: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)


class RealLock:
    """One lock of this master (or of one worker, for a WorkerLock)."""

    def __init__(self, description: str, max_count: int) -> None:
        self.description = description
        self.max_count = max_count
        self.owners: list[tuple[object, LockAccess]] = []
        self.waiting: list[_Waiter] = []

    def __repr__(self) -> str:
        return f"<{self.description}>"

    def _ahead_of(self, owner: object) -> list[_Waiter]:
        for i, w in enumerate(self.waiting):
            if w.owner is owner:
                return self.waiting[:i]
        return list(self.waiting)

    def available(self, owner: object, access: LockAccess) -> bool:
        if access.count == 0:
            return True
        exclusive = any(a.mode == "exclusive" for _, a in self.owners)
        counting = sum(a.count for _, a in self.owners if a.mode == "counting")
        ahead = self._ahead_of(owner)
        if access.mode == "counting":
            return (
                not exclusive
                and counting + sum(w.access.count for w in ahead) + access.count <= self.max_count
                and all(w.access.mode == "counting" for w in ahead)
            )
        return not exclusive and not counting and not ahead

    def claim(self, owner: object, access: LockAccess) -> None:
        assert self.available(owner, access)
        self.waiting = [w for w in self.waiting if w.owner is not owner]
        self.owners.append((owner, access))

    def release(self, owner: object, access: LockAccess) -> None:
        entry = next((e for e in self.owners if e[0] is owner and e[1] is access), None)
        if entry is None:
            return
        self.owners.remove(entry)
        self._wake()

    def enqueue(self, owner: object, access: LockAccess) -> asyncio.Event:
        for w in self.waiting:
            if w.owner is owner:
                w.woken.clear()
                return w.woken
        waiter = _Waiter(owner, access)
        self.waiting.append(waiter)
        return waiter.woken

    def forget(self, owner: object) -> None:
        """``owner`` stopped waiting (cancelled): let the ones behind it move up."""
        before = len(self.waiting)
        self.waiting = [w for w in self.waiting if w.owner is not owner]
        if len(self.waiting) != before:
            self._wake()

    def _wake(self) -> None:
        for w in self.waiting:
            w.woken.set()


class LockRegistry:
    """The real locks of this master, by lock name (and worker, for WorkerLocks)."""

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str, str | None], RealLock] = {}

    def real(self, lockid: _LockId, worker: str) -> RealLock:
        key: tuple[str, str, str | None]
        if isinstance(lockid, WorkerLock):
            key = ("worker", lockid.name, worker)
            size = lockid.count_for(worker)
            description = f"WorkerLock({lockid.name}, {size}) on {worker}"
        else:
            key = ("master", lockid.name, None)
            size = lockid.maxCount
            description = f"MasterLock({lockid.name}, {size})"
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = RealLock(description, size)
        elif lock.max_count != size:  # a reconfig changed its size
            lock.max_count = size
            lock._wake()
        return lock


Held = list[tuple[RealLock, LockAccess]]


async def acquire_all(owner: object, wanted: Sequence[tuple[RealLock, LockAccess]]) -> Held:
    """Take every lock of ``wanted`` at once, waiting fairly; returns what to release."""
    while True:
        blocked = next(((lk, a) for lk, a in wanted if not lk.available(owner, a)), None)
        if blocked is None:
            for lock, access in wanted:
                lock.claim(owner, access)
            return list(wanted)
        lock, access = blocked
        # queue at the one lock that blocks: a place kept in another lock's queue could block
        # someone who waits there for a lock we hold a place for (a deadlock)
        for other, _a in wanted:
            if other is not lock:
                other.forget(owner)
        woken = lock.enqueue(owner, access)
        try:
            await woken.wait()
        except asyncio.CancelledError:
            for lk, _a in wanted:
                lk.forget(owner)
            raise


def release_all(owner: object, held: Held) -> None:
    for lock, access in held:
        lock.release(owner, access)
