"""The worker endpoint against a scripted client: authentication, attach, and bad input."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgpack
import pytest
import sqlalchemy as sa
import structlog

from buildyard.master.data.updates import Updates
from buildyard.master.db import schema as t
from buildyard.master.db.connector import Database
from buildyard.master.mq.local import LocalMQ
from buildyard.master.workers.config import Worker
from buildyard.master.workers.listener import WorkerListener
from buildyard.protocol.codec import MAX_FRAME
from buildyard.testing.processes import eventually


def auth(name: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{name}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture
async def listener(database: Database, clock: Any) -> AsyncIterator[WorkerListener]:
    updates = Updates(db=database, mq=LocalMQ(), clock=clock)
    masterid = await updates.find_master_id("m")
    svc = WorkerListener(updates=updates)
    await svc.start()
    await svc.reconfigure(
        masterid=masterid,
        protocols={"msgpack_experimental_v7": {"port": "tcp:0:interface=127.0.0.1"}},
        workers=[Worker("w1", "pw:with:colons")],
        builders=[],
    )
    yield svc
    await svc.stop()


async def connected_count(database: Database) -> int:
    async with database.reading() as c:
        return int(
            (
                await c.execute(sa.select(sa.func.count()).select_from(t.connected_workers))
            ).scalar_one()
        )


async def recorded_connected(database: Database) -> None:
    """Wait for the worker's connected row: the master writes it once the connect sequence is
    done, which it finishes after its last answer reached the scripted worker."""

    async def recorded() -> bool:
        return await connected_count(database) == 1

    await eventually(recorded, within=30)


async def attach(ws: aiohttp.ClientWebSocketResponse) -> None:
    """Answer the master's connect sequence as the stock worker does."""
    seq = itertools.count()
    while True:
        msg = msgpack.unpackb((await ws.receive_bytes()), raw=False)
        op, number = msg["op"], msg["seq_number"]
        result: Any = None
        if op == "get_worker_info":
            result = {"basedir": "/nowhere", "system": "posix", "version": "script", "admin": "a"}
        await ws.send_bytes(
            msgpack.packb({"op": "response", "seq_number": number, "result": result})
        )
        if op == "start_command":
            cid = msg["command_id"]
            pairs = [["files", []], ["rc", 0]] if msg["command_name"] == "listdir" else [["rc", 0]]
            for request in ({"op": "update", "args": pairs}, {"op": "complete", "args": None}):
                frame = {**request, "command_id": cid, "seq_number": next(seq)}
                await ws.send_bytes(msgpack.packb(frame))
                reply = msgpack.unpackb(await ws.receive_bytes(), raw=False)
                assert reply == {
                    "op": "response",
                    "seq_number": frame["seq_number"],
                    "result": None,
                }
            if msg["command_name"] == "mkdir":
                return


@contextlib.asynccontextmanager
async def attached(listener: WorkerListener) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    """A scripted worker "w1" connected to ``listener`` and through its connect sequence."""
    url = f"http://127.0.0.1:{listener.port}/"
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, headers=auth("w1", "pw:with:colons"), max_msg_size=0) as ws,
    ):
        await attach(ws)
        yield ws


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        (auth("w1", "wrong"), 401),
        (auth("nobody", "pw"), 401),
        ({"Authorization": "Basic !!!"}, 400),
        ({"Authorization": "Bearer x"}, 400),
    ],
)
async def test_handshake_refusals(
    listener: WorkerListener, headers: dict[str, str], status: int
) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await session.ws_connect(f"http://127.0.0.1:{listener.port}/", headers=headers)
    assert info.value.status == status


async def test_attach_then_a_garbage_frame_ends_only_that_connection(
    listener: WorkerListener,
    database: Database,
) -> None:
    async with attached(listener) as ws:
        await recorded_connected(database)
        # an update for a command that does not exist: refused, connection kept
        await ws.send_bytes(
            msgpack.packb(
                {"op": "update", "seq_number": 100, "command_id": "77", "args": [["rc", 0]]}
            )
        )
        reply = msgpack.unpackb(await ws.receive_bytes(), raw=False)
        assert reply["is_exception"] is True and "77" in reply["result"]
        await ws.send_str("text frames are ignored")
        with structlog.testing.capture_logs() as logs:
            await ws.send_bytes(b"\xc1 not msgpack")
            closing = await ws.receive()
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == 1002
    faults = [e for e in logs if e["event"] == "worker_protocol_fault"]
    assert faults and faults[0]["worker"] == "w1" and "msgpack" in faults[0]["fault"]

    # the database is written first, then the connection leaves .connections
    async def gone() -> bool:
        return await connected_count(database) == 0 and listener.connections == {}

    await eventually(gone, within=5)
    assert listener.running


async def test_an_oversized_frame_ends_that_connection_with_a_logged_reason(
    listener: WorkerListener,
    database: Database,
) -> None:
    async with attached(listener) as ws:
        with structlog.testing.capture_logs() as logs:
            # the master may reset the connection before the whole frame is sent
            with contextlib.suppress(ConnectionError):
                await ws.send_bytes(b"\x00" * (MAX_FRAME + 1))
            closing = await ws.receive()
            await eventually(lambda: listener.connections == {}, within=10)
        assert closing.type in (
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSMsgType.CLOSED,
            aiohttp.WSMsgType.ERROR,
        )
    faults = [e for e in logs if e["event"] == "worker_protocol_fault"]
    assert faults and faults[0]["worker"] == "w1"
    await eventually(lambda: listener.connections == {}, within=10)


async def test_a_response_to_an_unknown_request_ends_that_connection(
    listener: WorkerListener,
    database: Database,
) -> None:
    async with attached(listener) as ws:
        with structlog.testing.capture_logs() as logs:
            await ws.send_bytes(
                msgpack.packb({"op": "response", "seq_number": 999, "result": None})
            )
            await ws.receive()
            await eventually(lambda: listener.connections == {}, within=10)
        assert ws.close_code == 1002
    (fault,) = [e for e in logs if e["event"] == "worker_protocol_fault"]
    assert fault["worker"] == "w1" and "unknown seq_number 999" in fault["fault"]
    assert await connected_count(database) == 0


async def test_a_silent_old_connection_is_replaced_by_the_new_one(
    listener: WorkerListener,
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("buildyard.master.workers.listener.DUPLICATE_PING_TIMEOUT", 0.5)
    url = f"http://127.0.0.1:{listener.port}/"
    headers = auth("w1", "pw:with:colons")
    async with aiohttp.ClientSession() as session:
        old = await session.ws_connect(url, headers=headers)
        await attach(old)
        first = listener.connections["w1"]
        # the old socket stays open but never answers again; a new one arrives
        new = await session.ws_connect(url, headers=headers)
        await attach(new)
        await eventually(lambda: listener.connections.get("w1") not in (None, first), within=10)

        # the new one is recorded (just after it enters .connections) ...
        async def one_connected() -> bool:
            return await connected_count(database) == 1

        await eventually(one_connected, within=10)
        # ... and the old one's clean-up does not record it as gone
        await asyncio.sleep(0.3)
        assert await connected_count(database) == 1
        await old.close()
        await new.close()
    await eventually(lambda: listener.connections == {}, within=10)
    assert await connected_count(database) == 0
