"""Locks, shown by the overlap of real builds: exclusive and counting, build and step level."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from buildyard.master.model.results import Results
from buildyard.master.steps.locks import LockAccess, LockRegistry, MasterLock, acquire_all
from buildyard.testing.masters import Running, running_master

BODY = """
excl = util.MasterLock("excl")
count = util.MasterLock("count", maxCount=2)
wlock = util.WorkerLock("wl", maxCount=5, maxCountForWorker={{"w1": 1}})

def timed(tag):
    return steps.ShellCommand(
        name="timed",
        command=util.Interpolate(
            'echo "$(date +%%s.%%N) start %(prop:buildername)s" >> {log}; sleep 0.6; '
            'echo "$(date +%%s.%%N) end %(prop:buildername)s" >> {log}'
        ),
        locks=tag,
    )

def builder(name, build_locks=(), step_locks=()):
    return util.BuilderConfig(
        name=name, workernames=["w1"], locks=list(build_locks),
        factory=util.BuildFactory([timed(list(step_locks))]),
    )

c['builders'] = [
    builder("x1", build_locks=[excl.access("exclusive")]),
    builder("x2", build_locks=[excl.access("exclusive")]),
    builder("x3", build_locks=[excl.access("exclusive")]),
    builder("c1", step_locks=[count.access("counting")]),
    builder("c2", step_locks=[count.access("counting")]),
    builder("c3", step_locks=[count.access("counting")]),
    builder("w1", step_locks=[wlock.access("counting")]),
    builder("w2", step_locks=[wlock.access("counting")]),
    builder("free1"),
    builder("free2"),
]
"""


def _most_at_once(log: Path, names: set[str]) -> int:
    events = []
    for line in log.read_text().splitlines():
        when, what, name = line.split()
        if name in names:
            events.append((float(when), 1 if what == "start" else -1))
    running = most = 0
    for _, delta in sorted(events, key=lambda e: (e[0], e[1])):
        running += delta
        most = max(most, running)
    return most


async def _together(running: Running, names: list[str]) -> None:
    results = await asyncio.gather(*(running.build(n) for n in names))
    assert [r.build.results for r in results] == [Results.SUCCESS] * len(names)


async def test_locks_limit_how_many_builds_and_steps_overlap(tmp_path: Path) -> None:
    log = tmp_path / "times.log"
    async with running_master(tmp_path, BODY.format(log=log)) as running:
        await _together(running, ["free1", "free2"])
        await _together(running, ["x1", "x2", "x3"])
        await _together(running, ["c1", "c2", "c3"])
        await _together(running, ["w1", "w2"])
        waited = [
            b.locks_duration_s for b in await running.master.db.builds.get_builds() if b.complete_at
        ]
    # without locks, builds on one worker overlap
    assert _most_at_once(log, {"free1", "free2"}) == 2
    # an exclusive build lock: one at a time, and the waiting was recorded
    assert _most_at_once(log, {"x1", "x2", "x3"}) == 1
    assert sum(waited) >= 1
    # a counting step lock of 2: two at once, never three
    assert _most_at_once(log, {"c1", "c2", "c3"}) == 2
    # a worker lock sized 1 for this worker (5 elsewhere)
    assert _most_at_once(log, {"w1", "w2"}) == 1


async def test_a_waiting_exclusive_request_is_not_starved_by_counting_ones() -> None:
    registry = LockRegistry()
    lock = registry.real(MasterLock("l", maxCount=2), "w")
    counting = LockAccess(MasterLock("l", maxCount=2), "counting")
    exclusive = LockAccess(MasterLock("l", maxCount=2), "exclusive")
    first, writer, late = object(), object(), object()
    held_first = await acquire_all(first, [(lock, counting)])
    writer_task = asyncio.create_task(acquire_all(writer, [(lock, exclusive)]))
    await asyncio.sleep(0)
    late_task = asyncio.create_task(acquire_all(late, [(lock, counting)]))
    await asyncio.sleep(0.01)
    # room for a second counting holder, but the exclusive request came first
    assert not late_task.done()
    lock.release(first, held_first[0][1])
    await asyncio.wait_for(writer_task, 5)
    assert not late_task.done()
    lock.release(writer, exclusive)
    await asyncio.wait_for(late_task, 5)


async def test_locks_taken_in_opposite_orders_do_not_deadlock() -> None:
    registry = LockRegistry()
    a_id, b_id = MasterLock("a"), MasterLock("b")
    a, b = registry.real(a_id, "w"), registry.real(b_id, "w")
    xa, xb = a_id.access("exclusive"), b_id.access("exclusive")
    holder, one, two = object(), object(), object()
    held = await acquire_all(holder, [(a, xa)])
    t1 = asyncio.create_task(acquire_all(one, [(a, xa), (b, xb)]))
    t2 = asyncio.create_task(acquire_all(two, [(b, xb), (a, xa)]))
    await asyncio.sleep(0.01)
    a.release(holder, held[0][1])
    done, _ = await asyncio.wait({t1, t2}, timeout=5, return_when=asyncio.FIRST_COMPLETED)
    assert len(done) == 1
    [winner] = done
    for lock, access in winner.result():
        lock.release(one if winner is t1 else two, access)
    await asyncio.wait_for(asyncio.gather(t1, t2), 5)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((MasterLock("l"), "shared"), "mode must be 'counting' or 'exclusive'"),
        ((MasterLock("l"), "exclusive", 2), "an exclusive lock access has a count of 1"),
    ],
)
def test_bad_lock_accesses_are_config_errors(args: tuple[object, ...], message: str) -> None:
    from buildyard.common.errors import ConfigErrors, collecting_config_errors

    errors = ConfigErrors()
    with collecting_config_errors(errors):
        LockAccess(*args)  # type: ignore[arg-type]
    assert [message in e.message for e in errors.errors] == [True]
