"""Events per second through the message queue: in-process, and across two masters through
PostgreSQL (c['mq'] = {'type': 'postgres'}).

Two PostgresMQ instances on one database of a throwaway PostgreSQL server stand for two
masters: one produces ``--events`` build-sized events, the other's subscription receives them
all; the time runs from the first produce to the last receipt. The in-process queue is timed
the same way (one producer, one subscriber), and the shared queue once more with bodies too
large for a notification (read back from the table).

    .venv/bin/python bench/mq.py --events 20000
"""

from __future__ import annotations

import argparse
import asyncio
import time

from buildyard.master.mq.local import LocalMQ
from buildyard.master.mq.postgres import NOTIFY_LIMIT, PostgresMQ
from buildyard.testing.postgres import PostgresServer


def _body(i: int, size: int) -> dict[str, object]:
    return {
        "buildid": i,
        "number": i,
        "builderid": 3,
        "state_string": "building",
        "results": None,
        "padding": "x" * size,
    }


async def _through(producer: LocalMQ, consumer: LocalMQ, events: int, size: int) -> float:
    sub = consumer.subscribe(("builds", None, None))
    started = time.perf_counter()
    for i in range(events):
        producer.produce(("builds", str(i), "update"), _body(i, size))
        if i % 500 == 499:
            await asyncio.sleep(0)  # let the publisher run, as a real master's loop would
    for _ in range(events):
        await sub.get()
    elapsed = time.perf_counter() - started
    sub.close()
    return events / elapsed


async def _shared(url: str, events: int, size: int) -> float:
    a, b = PostgresMQ(url), PostgresMQ(url)
    tasks = [
        asyncio.create_task(t) for mq in (a, b) for t in (mq.run_listener(), mq.run_publisher())
    ]
    try:
        await a.ready.wait()
        await b.ready.wait()
        return await _through(a, b, events, size)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000)
    args = parser.parse_args()
    local = LocalMQ()
    rate = await _through(local, local, args.events, 300)
    print(f"in-process                        {rate:10.0f} events/s")
    server = PostgresServer()
    server.start()
    try:
        url = server.create_database()
        small = await _shared(url, args.events, 300)
        print(f"two masters, PostgreSQL           {small:10.0f} events/s")
        large = await _shared(url, max(1, args.events // 10), NOTIFY_LIMIT + 2000)
        print(f"two masters, {NOTIFY_LIMIT + 2000}-byte bodies       {large:10.0f} events/s")
    finally:
        server.stop()


if __name__ == "__main__":
    asyncio.run(main())
