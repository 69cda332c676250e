"""The PostgreSQL message queue on a real server: two queues on one database stand for two
masters. Order per origin, large messages through the table, local delivery exactly once, and
a LISTEN connection cut by the server (caught up from the table, or the gap counted)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from structlog.testing import capture_logs

from buildyard.master.config.master_config import MasterConfig
from buildyard.master.master import make_mq
from buildyard.master.mq.local import LocalMQ, LocalSubscription
from buildyard.master.mq.postgres import (
    CHANNEL,
    IGNORED_LOGGED,
    NOTIFY_LIMIT,
    TABLE,
    PostgresMQ,
    _dumps,
)

pytestmark = pytest.mark.postgres


class _Running:
    def __init__(self, mq: PostgresMQ) -> None:
        self.mq = mq
        self.tasks = [
            asyncio.create_task(mq.run_listener()),
            asyncio.create_task(mq.run_publisher()),
        ]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


@pytest.fixture
async def pair(postgres_url: str) -> AsyncIterator[tuple[PostgresMQ, PostgresMQ]]:
    one = _Running(PostgresMQ(postgres_url, reconnect_delay=0.2))
    two = _Running(PostgresMQ(postgres_url, reconnect_delay=0.2))
    try:
        async with asyncio.timeout(30):
            await one.mq.ready.wait()
            await two.mq.ready.wait()
        yield one.mq, two.mq
    finally:
        await one.stop()
        await two.stop()


Event = tuple[tuple[str, ...], dict[str, object]]


async def _take(sub: LocalSubscription, count: int) -> list[Event]:
    out: list[Event] = []
    async with asyncio.timeout(30):
        for _ in range(count):
            key, body = await sub.get()
            out.append((key, dict(body)))
    return out


async def test_other_master_sees_every_event_in_order_and_own_once(
    pair: tuple[PostgresMQ, PostgresMQ],
) -> None:
    a, b = pair
    on_b = b.subscribe(("builds", None, None))
    on_a = a.subscribe(("builds", None, None))
    for i in range(300):
        a.produce(("builds", str(i % 3), "step"), {"n": i})
    got = await _take(on_b, 300)
    assert [body["n"] for _, body in got] == list(range(300))
    assert got[4] == (("builds", "1", "step"), {"n": 4})
    # a's own subscription: each event once (locally), its notifications skipped
    mine = await _take(on_a, 300)
    assert [body["n"] for _, body in mine] == list(range(300))
    await a.flush()
    b.produce(("builds", "x", "end"), {"n": -1})  # b's own, to be sure a is past its own
    assert await _take(on_a, 1) == [(("builds", "x", "end"), {"n": -1})]
    assert on_a.pending == 0
    assert b.statistics()["received"] == 300 and b.statistics()["missed"] == 0


async def test_a_local_only_subscription_gets_only_its_masters_events(
    pair: tuple[PostgresMQ, PostgresMQ],
) -> None:
    a, b = pair
    local = b.subscribe(("builds", None, None), local_only=True)
    everything = b.subscribe(("builds", None, None))
    a.produce(("builds", "1", "finished"), {"from": "a"})
    assert await _take(everything, 1) == [(("builds", "1", "finished"), {"from": "a"})]
    b.produce(("builds", "2", "finished"), {"from": "b"})
    # the event a produced came (and went) before b's own: the local-only one skipped it
    assert await _take(local, 1) == [(("builds", "2", "finished"), {"from": "b"})]
    assert local.pending == 0


async def test_a_message_too_large_for_a_notification_is_read_from_the_table(
    pair: tuple[PostgresMQ, PostgresMQ],
) -> None:
    a, b = pair
    sub = b.subscribe(("logs", None, None))
    big = "x" * (NOTIFY_LIMIT * 3)
    a.produce(("logs", "1", "append"), {"n": 1})
    a.produce(("logs", "1", "append"), {"n": 2, "text": big})
    a.produce(("logs", "1", "append"), {"n": 3, "when": "é" * (NOTIFY_LIMIT // 2)})
    got = await _take(sub, 3)
    assert [body["n"] for _, body in got] == [1, 2, 3]
    assert got[1][1]["text"] == big
    assert got[2][1]["when"] == "é" * (NOTIFY_LIMIT // 2)
    # every event is read from the table (the notifications only name them)
    assert b.statistics()["received"] == 3 and b.statistics()["fetched"] == 0


async def _cut(url: str, mq: PostgresMQ) -> None:
    """Terminate ``mq``'s LISTEN connection from the server's side."""
    pid = mq.listen_pid
    assert pid is not None
    conn = await asyncpg.connect(url)
    try:
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await conn.close()


async def _wait_reconnected(mq: PostgresMQ, before: int) -> None:
    for _ in range(600):
        if mq.reconnects > before and mq.listen_pid is not None:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the queue did not reconnect within 30 s")


async def _ends(task: asyncio.Task[None]) -> bool:
    """Whether ``task`` ends (cancelled) within 10 seconds."""
    await asyncio.wait({task}, timeout=10)
    return task.done() and task.cancelled()


async def test_a_stop_that_comes_with_a_notification_ends_the_listener(postgres_url: str) -> None:
    """The master stops its queue by cancelling the listener; a notification handed to it in
    the same turn of the loop must not make it forget the stop (with Python 3.11's
    asyncio.wait_for it returned the notification and listened on, and a master receiving
    events from others hung on SIGTERM)."""
    a = _Running(PostgresMQ(postgres_url, reconnect_delay=0.2))
    b = _Running(PostgresMQ(postgres_url, reconnect_delay=0.2))
    try:
        async with asyncio.timeout(30):
            await a.mq.ready.wait()
            await b.mq.ready.wait()
        listener = a.tasks[0]
        conn = a.mq._listen_conn
        assert conn is not None
        # called right after the queue's own callback has handed the notification over
        await conn.add_listener(CHANNEL, lambda *_: listener.cancel())
        b.mq.produce(("builds", "1", "new"), {"n": 0})
        assert await _ends(listener)
    finally:
        await a.stop()
        await b.stop()


async def test_a_stop_that_comes_with_an_event_to_publish_ends_the_publisher(
    postgres_url: str,
) -> None:
    """The same for the publisher: cancelled in the turn an event wakes it, it ends."""
    a = _Running(PostgresMQ(postgres_url, reconnect_delay=0.2))
    try:
        async with asyncio.timeout(30):
            await a.mq.ready.wait()
            a.mq.produce(("builds", "1", "new"), {"n": 0})
            await a.mq.flush()  # the publisher waits for the next event now
        publisher = a.tasks[1]
        a.mq.produce(("builds", "1", "finished"), {"n": 1})
        publisher.cancel()
        assert await _ends(publisher)
    finally:
        await a.stop()


async def test_a_cut_listener_catches_up_from_the_table(
    postgres_url: str, pair: tuple[PostgresMQ, PostgresMQ]
) -> None:
    a, b = pair
    b.reconnect_delay = 2.0  # long enough to produce while it is away
    sub = b.subscribe(("builds", None, None))
    a.produce(("builds", "1", "new"), {"n": 0})
    assert (await _take(sub, 1))[0][1] == {"n": 0}
    await _cut(postgres_url, b)
    for i in range(1, 6):
        a.produce(("builds", "1", "step"), {"n": i})
    await a.flush()
    await _wait_reconnected(b, 0)
    a.produce(("builds", "1", "finished"), {"n": 6})
    got = await _take(sub, 6)
    assert [body["n"] for _, body in got] == [1, 2, 3, 4, 5, 6]
    assert b.missed == 0


async def test_a_cut_publisher_sends_everything_once_when_back(
    postgres_url: str, pair: tuple[PostgresMQ, PostgresMQ]
) -> None:
    a, b = pair
    sub = b.subscribe(("builds", None, None))
    a.produce(("builds", "1", "new"), {"n": 0})
    assert (await _take(sub, 1))[0][1] == {"n": 0}
    url = postgres_url
    conn = await asyncpg.connect(url)
    try:
        cut = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = $1",
            a.publisher_name,
        )
        assert cut == 1
    finally:
        await conn.close()
    for i in range(1, 201):
        a.produce(("builds", "1", "step"), {"n": i})
    got = await _take(sub, 200)
    assert [body["n"] for _, body in got] == list(range(1, 201))
    await a.flush()
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetchval(f"SELECT count(*) FROM {TABLE} WHERE origin = $1", a.origin)
    finally:
        await conn.close()
    assert rows == 201
    a.produce(("builds", "1", "finished"), {"n": 201})
    assert await _take(sub, 1) == [(("builds", "1", "finished"), {"n": 201})]
    assert sub.pending == 0


async def test_what_the_table_no_longer_holds_is_counted_as_missed(
    postgres_url: str, pair: tuple[PostgresMQ, PostgresMQ]
) -> None:
    a, b = pair
    b.reconnect_delay = 2.0
    sub = b.subscribe(("builds", None, None))
    a.produce(("builds", "1", "new"), {"n": 0})
    assert (await _take(sub, 1))[0][1] == {"n": 0}
    await _cut(postgres_url, b)
    for i in range(1, 4):
        a.produce(("builds", "1", "step"), {"n": i})
    await a.flush()
    conn = await asyncpg.connect(postgres_url)
    try:  # as the retention would: the three produced while b was away are gone
        await conn.execute(f"DELETE FROM {TABLE} WHERE origin = $1 AND seq > 1", a.origin)
    finally:
        await conn.close()
    a.produce(("builds", "1", "finished"), {"n": 4})
    await a.flush()
    got = await _take(sub, 1)
    assert got == [(("builds", "1", "finished"), {"n": 4})]
    assert b.missed == 3


async def test_old_rows_are_trimmed(postgres_url: str) -> None:
    mq = PostgresMQ(postgres_url, retention=1.0)
    running = _Running(mq)
    try:
        async with asyncio.timeout(30):
            await mq.ready.wait()
        mq.produce(("a",), {"n": 1})
        await mq.flush()
        conn = await asyncpg.connect(postgres_url)
        try:
            assert await conn.fetchval(f"SELECT count(*) FROM {TABLE}") == 1
            for _ in range(150):
                if not await conn.fetchval(f"SELECT count(*) FROM {TABLE}"):
                    break
                await asyncio.sleep(0.2)
            else:
                raise AssertionError("the row older than the retention was not deleted")
        finally:
            await conn.close()
    finally:
        await running.stop()


def test_the_master_makes_the_queue_c_mq_asks_for(tmp_path: Path) -> None:
    config = MasterConfig(
        source=tmp_path / "master.cfg",
        db_url="postgresql://u:p@127.0.0.1:5/x",
        mq={"type": "postgres", "retention": 60},
    )
    mq = make_mq(config)
    assert isinstance(mq, PostgresMQ)
    assert mq.retention == 60.0
    assert mq._dsn == "postgresql://u:p@127.0.0.1:5/x"
    simple = make_mq(MasterConfig(source=tmp_path / "master.cfg"))
    assert type(simple) is LocalMQ


async def _wait_ignored(mq: PostgresMQ, count: int) -> None:
    for _ in range(600):
        if mq.ignored >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{mq.ignored} notifications ignored, not {count}, within 30 s")


async def test_a_forged_notification_delivers_nothing_and_real_events_still_come(
    postgres_url: str, pair: tuple[PostgresMQ, PostgresMQ]
) -> None:
    """NOTIFY needs no privilege: a role that may only connect can send a notification that
    looks like a master's. The receivers deliver only what the buildyard_mq table holds."""
    a, b = pair
    control = b.subscribe(("control", None, None, None))
    builds = b.subscribe(("builds", None, None))
    a.produce(("builds", "1", "new"), {"n": 0})
    assert await _take(builds, 1) == [(("builds", "1", "new"), {"n": 0})]
    await a.flush()
    stop = [["control", "builds", "42", "stop"], {"reason": "forged"}]
    forged = [
        # an origin no master has
        {"o": "intruder", "m": [[1, *stop]]},
        # a's origin with the number its next real event will have
        {"o": a.origin, "m": [[a._seq + 1, *stop]]},
        # b's own origin (skipped as its own), and a too-large-message hint for a's next number
        {"o": b.origin, "m": [[b._seq + 1, *stop]]},
        {"o": a.origin, "s": a._seq + 1},
    ]
    conn = await asyncpg.connect(postgres_url)
    try:
        with capture_logs() as logged:
            for message in forged:
                await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, _dumps(message))
            await _wait_ignored(b, 3)
        ignored = [
            e
            for e in logged
            if e["event"] == "mq_notification_ignored" and e["receiver"] == b.origin
        ]
        assert [(e["origin"], e["first"], e["last"]) for e in ignored] == [
            ("intruder", 1, 1),
            (a.origin, 2, 2),
            (a.origin, 2, 2),
        ]
        assert "control" in ignored[0]["payload"]
        # the real event with the number the forgeries named is delivered, from the table
        a.produce(("builds", "1", "finished"), {"n": 1})
        assert await _take(builds, 1) == [(("builds", "1", "finished"), {"n": 1})]
        assert control.pending == 0
        # a row in the table is what counts, not what the notification says it holds
        await conn.execute(
            f"INSERT INTO {TABLE} (origin, seq, routing_key, body) VALUES ($1, 1, $2, $3)",
            "third",
            _dumps(["builds", "7", "new"]),
            _dumps({"from": "table"}),
        )
        third = {"o": "third", "m": [[1, *stop]]}
        await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, _dumps(third))
        assert await _take(builds, 1) == [(("builds", "7", "new"), {"from": "table"})]
        assert control.pending == 0
        assert b.statistics()["missed"] == 0 and b.statistics()["ignored"] == 3
    finally:
        await conn.close()


async def test_a_full_outbox_drops_the_oldest_and_says_what(postgres_url: str) -> None:
    b = _Running(PostgresMQ(postgres_url, reconnect_delay=0.2))
    a = PostgresMQ(postgres_url, reconnect_delay=0.2, max_outbox=3)
    running_a: _Running | None = None
    try:
        async with asyncio.timeout(30):
            await b.mq.ready.wait()
        sub = b.mq.subscribe(("builds", None, None))
        # a's publisher is not running yet (as with the database down): its outbox fills
        with capture_logs() as logged:
            a.produce(("changes", "1", "new"), {"n": 1})
            a.produce(("builds", "1", "new"), {"n": 2})
            a.produce(("builds", "1", "step"), {"n": 3})
            a.produce(("builds", "1", "step"), {"n": 4})  # drops n=1 (logged at once)
            a.produce(("builds", "1", "finished"), {"n": 5})  # drops n=2 (reported later)
        assert a.statistics()["unpublished"] == 3 and a.statistics()["dropped"] == 2
        full = [e for e in logged if e["event"] == "mq_outbox_full"]
        assert len(full) == 1 and full[0]["kinds"] == {"changes": 1} and full[0]["dropped"] == 1
        with capture_logs() as logged:
            running_a = _Running(a)
            got = await _take(sub, 3)
            await a.flush()
        assert [body["n"] for _, body in got] == [3, 4, 5]
        later = [e for e in logged if e["event"] == "mq_outbox_dropped"]
        assert len(later) == 1 and later[0]["kinds"] == {"builds": 1}
        assert later[0]["dropped_total"] == 2
        # the other master sees the two numbers it never got as missed
        assert b.mq.missed == 2
    finally:
        if running_a is not None:
            await running_a.stop()
        await b.stop()


def test_a_value_json_cannot_carry_is_sent_as_null_and_its_type_logged_once() -> None:
    class Opaque:
        pass

    with capture_logs() as logged:
        assert _dumps({"a": Opaque(), "b": [Opaque()]}) == '{"a":null,"b":[null]}'
        assert _dumps({"c": Opaque()}) == '{"c":null}'
    said = [e for e in logged if e["event"] == "mq_value_sent_as_null"]
    assert len(said) == 1
    assert said[0]["type"].endswith("Opaque") and said[0]["log_level"] == "warning"


async def test_a_flood_of_forged_notifications_is_counted_but_logged_a_few_times_a_minute(
    postgres_url: str, pair: tuple[PostgresMQ, PostgresMQ]
) -> None:
    a, b = pair
    builds = b.subscribe(("builds", None, None))
    before = b.ignored
    flood = IGNORED_LOGGED * 5
    conn = await asyncpg.connect(postgres_url)
    try:
        with capture_logs() as logged:
            for n in range(1, flood + 1):
                forged = {"o": "flooder", "m": [[n, "builds", "9", "new", {}]]}
                await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, _dumps(forged))
            await _wait_ignored(b, before + flood)
        lines = [
            e
            for e in logged
            if e["event"] == "mq_notification_ignored" and e["receiver"] == b.origin
        ]
        assert 1 <= len(lines) <= IGNORED_LOGGED
        assert b.statistics()["ignored"] == before + flood
        # a real event still comes through
        a.produce(("builds", "2", "new"), {"n": 2})
        assert await _take(builds, 1) == [(("builds", "2", "new"), {"n": 2})]
    finally:
        await conn.close()
