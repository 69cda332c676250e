"""The in-process message queue: routing, wildcards, order, idleness."""

from __future__ import annotations

import asyncio

from buildyard.master.mq.keys import buildrequest_event, matches
from buildyard.master.mq.local import LocalMQ


def test_matching_needs_equal_length_and_treats_none_and_star_as_wildcards() -> None:
    assert matches(("builds", None, "finished"), ("builds", "12", "finished"))
    assert matches(("builds", "*", "*"), ("builds", "12", "new"))
    assert not matches(("builds", None), ("builds", "12", "finished"))
    assert not matches(("builds", "13", "finished"), ("builds", "12", "finished"))


async def test_subscribers_get_matching_events_in_order() -> None:
    mq = LocalMQ()
    finished = mq.subscribe(("builds", None, "finished"))
    everything = mq.subscribe(("builds", None, None), ("masters", None, None))
    mq.produce(("builds", "1", "new"), {"buildid": 1})
    mq.produce(("builds", "1", "finished"), {"buildid": 1, "results": 0})
    mq.produce(("masters", "3", "started"), {"masterid": 3})
    mq.produce(("workers", "3", "connected"), {"workerid": 3})
    assert await finished.get() == (("builds", "1", "finished"), {"buildid": 1, "results": 0})
    got = [(await everything.get())[0] for _ in range(3)]
    assert got == [("builds", "1", "new"), ("builds", "1", "finished"), ("masters", "3", "started")]
    assert mq.statistics()["produced"] == 4


async def test_each_matching_subscription_gets_an_event_once_whatever_its_first_word() -> None:
    # events are offered by the key's first word and length: patterns that start with a
    # wildcard, or that match through several of their patterns, still get each event once
    mq = LocalMQ()
    any_first = mq.subscribe((None, "7", "new"), ("*", "*", "*"))
    twice = mq.subscribe(("steps", None, None), ("steps", "7", None), (None, "7", "new"))
    short = mq.subscribe(("steps",), ())
    other = mq.subscribe(("logs", None, None))
    mq.produce(("steps", "7", "new"), {"n": 1})
    mq.produce(("logs", "7", "new"), {"n": 2})
    mq.produce(("steps",), {"n": 3})
    mq.produce((), {"n": 4})
    assert [(await any_first.get())[1]["n"] for _ in range(2)] == [1, 2]
    assert [(await twice.get())[1]["n"] for _ in range(2)] == [1, 2]  # steps/7/new once
    assert [(await short.get())[1]["n"] for _ in range(2)] == [3, 4]
    assert (await other.get())[1]["n"] == 2
    assert [s.pending for s in (any_first, twice, short, other)] == [0, 0, 0, 0]
    # once one of them is closed, the others still get theirs
    twice.close()
    mq.produce(("steps", "7", "new"), {"n": 5})
    assert (await any_first.get())[1]["n"] == 5
    assert twice.pending == 0


async def test_closed_subscription_gets_nothing_and_is_forgotten() -> None:
    mq = LocalMQ()
    async with mq.subscribe(("a",)) as sub:
        assert mq.statistics()["subscriptions"] == 1
    mq.produce(("a",), {})
    assert sub.pending == 0
    assert mq.statistics()["subscriptions"] == 0


async def test_wait_idle_returns_when_consumers_have_taken_everything() -> None:
    mq = LocalMQ()
    seen: list[str] = []
    sub = mq.subscribe(("x", None))
    release = asyncio.Event()

    async def consume() -> None:
        async for key, _ in sub:
            await release.wait()
            seen.append(key[1])

    task = asyncio.create_task(consume())
    for i in range(3):
        mq.produce(("x", str(i)), {})
    waiter = asyncio.create_task(mq.wait_idle())
    await asyncio.sleep(0.01)
    assert not waiter.done()  # the consumer holds an event
    release.set()
    await asyncio.wait_for(waiter, 5)
    assert seen == ["0", "1", "2"]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def test_buildrequest_events_use_buildbots_three_key_forms() -> None:
    assert buildrequest_event(7, 2, 5, "new") == (
        ("buildsets", "5", "builders", "2", "buildrequests", "7", "new"),
        ("buildrequests", "7", "new"),
        ("builders", "2", "buildrequests", "7", "new"),
    )


async def test_close_wakes_a_blocked_consumer() -> None:
    mq = LocalMQ()
    sub = mq.subscribe(("a", None))
    seen: list[tuple[str, ...]] = []

    async def consume() -> None:
        async for key, _ in sub:
            seen.append(key)

    task = asyncio.create_task(consume())
    mq.produce(("a", "1"), {})
    await mq.wait_idle()
    sub.close()
    await asyncio.wait_for(task, 5)  # ends instead of waiting forever
    assert seen == [("a", "1")]


async def test_get_counts_as_taking_the_event() -> None:
    mq = LocalMQ()
    sub = mq.subscribe(("a",))
    mq.produce(("a",), {"n": 1})
    assert sub.pending == 1
    assert await sub.get() == (("a",), {"n": 1})
    await asyncio.wait_for(mq.wait_idle(), 5)
