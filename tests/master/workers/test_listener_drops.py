"""The listener drops connections without waiting on the worker: a worker that stopped answering
(keepalive), and every worker when the listener stops. A scripted client that reads nothing
stands for a stopped worker process: it answers no request and no closing handshake."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import structlog

from buildyard.master.data.updates import Updates
from buildyard.master.db.connector import Database
from buildyard.master.mq.local import LocalMQ
from buildyard.master.workers.config import Worker
from buildyard.master.workers.listener import WorkerListener
from buildyard.testing.processes import eventually
from tests.master.workers.test_listener import attach, auth, connected_count, recorded_connected

KEEPALIVE = 0.5


@pytest.fixture
async def listener(database: Database, clock: Any) -> AsyncIterator[WorkerListener]:
    updates = Updates(db=database, mq=LocalMQ(), clock=clock)
    masterid = await updates.find_master_id("m")
    svc = WorkerListener(updates=updates)
    await svc.start()
    await svc.reconfigure(
        masterid=masterid,
        protocols={"msgpack_experimental_v7": {"port": "tcp:0:interface=127.0.0.1"}},
        workers=[Worker("w1", "pw", keepalive_interval=KEEPALIVE)],
        builders=[],
    )
    yield svc
    await svc.stop()


async def test_a_silent_worker_is_dropped_and_recorded_within_the_keepalive_window(
    listener: WorkerListener, database: Database
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"http://127.0.0.1:{listener.port}/", headers=auth("w1", "pw")) as ws,
    ):
        await attach(ws)
        await recorded_connected(database)
        with structlog.testing.capture_logs() as logs:
            silent = time.monotonic()  # from here on the client reads nothing
            # gone from .connections only once recorded disconnected in the database
            await eventually(lambda: "w1" not in listener.connections, within=10)
            took = time.monotonic() - silent
        # a keepalive is sent at most one interval after the last answer, and waited for one
        # interval; the drop does not wait for a closing handshake (10 s) the worker never sends
        assert KEEPALIVE * 0.9 <= took <= 2 * KEEPALIVE + 5, took  # slack for a loaded machine
        assert await connected_count(database) == 0
        (ended,) = [e for e in logs if e["event"] == "worker_connection_ended"]
        assert ended["worker"] == "w1"
        assert ended["reason"] == f"no answer to keepalive within {KEEPALIVE:g} s"
        assert [e["worker"] for e in logs if e["event"] == "worker_disconnected"] == ["w1"]
    assert listener.running


async def test_stopping_the_listener_drops_attached_workers_at_once(
    listener: WorkerListener, database: Database
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"http://127.0.0.1:{listener.port}/", headers=auth("w1", "pw")) as ws,
    ):
        await attach(ws)
        await recorded_connected(database)
        with structlog.testing.capture_logs() as logs:
            began = time.monotonic()
            # aiohttp's cleanup waits for running handlers: 60 s, then 60 s more
            async with asyncio.timeout(10):
                await listener.stop()
            took = time.monotonic() - began
        assert took < KEEPALIVE, took  # not even a keepalive's wait
        assert listener.connections == {}
        assert await connected_count(database) == 0
        assert [e["worker"] for e in logs if e["event"] == "worker_disconnected"] == ["w1"]
        # the worker sees its connection end
        closing = await ws.receive(timeout=5)
        assert closing.type in (
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSMsgType.CLOSED,
            aiohttp.WSMsgType.ERROR,
        )
