"""A reconfig that moves the PB port: the old server's connections go, the new one's stay; a
reverted change closes what its new server accepted, and a failed apply its socket."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from buildyard.master.data.updates import Updates
from buildyard.master.db.connector import Database
from buildyard.master.mq.local import LocalMQ
from buildyard.master.workers.config import Worker
from buildyard.master.workers.listener import WorkerListener
from buildyard.testing.postgres import free_port
from buildyard.testing.processes import eventually

HELLO = b"\x02\x82pb" + b"\x02\x80\x13\x87\x06\x81"


def _pb(port: int) -> dict[str, dict[str, object]]:
    return {"pb": {"port": f"tcp:{port}:interface=127.0.0.1"}}


@pytest.fixture
async def listener(database: Database, clock: Any) -> AsyncIterator[WorkerListener]:
    updates = Updates(db=database, mq=LocalMQ(), clock=clock)
    masterid = await updates.find_master_id("m")
    svc = WorkerListener(updates=updates)
    await svc.start()
    await svc.reconfigure(
        masterid=masterid, protocols=_pb(free_port()), workers=[Worker("w1", "pw")], builders=[]
    )
    yield svc
    await svc.stop()


async def _client(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(HELLO)
    return reader, writer


async def _closed(reader: asyncio.StreamReader) -> bool:
    with contextlib.suppress(ConnectionError):
        while await reader.read(4096):
            pass
    return True


async def test_a_moved_pb_port_closes_only_the_old_servers_connections(
    listener: WorkerListener,
) -> None:
    old_port = listener.pb_port
    assert old_port is not None
    old_reader, old_writer = await _client(old_port)
    await eventually(lambda: len(listener._pb_writers) == 1, within=30)
    new_port = free_port()
    change = await listener.prepare(_pb(new_port))
    await change.apply()
    _new_reader, new_writer = await _client(new_port)
    await eventually(lambda: len(listener._pb_writers) == 2, within=30)
    await change.finish()
    assert await _closed(old_reader)
    assert listener.pb_port == new_port
    assert len(listener._pb_writers) == 1
    assert new_writer.get_extra_info("sockname") in {
        w.get_extra_info("peername") for w in listener._pb_writers
    }
    old_writer.transport.abort()
    new_writer.transport.abort()


async def test_a_reverted_change_closes_what_its_new_pb_server_accepted(
    listener: WorkerListener,
) -> None:
    old_port = listener.pb_port
    assert old_port is not None
    _old_reader, old_writer = await _client(old_port)
    new_port = free_port()
    change = await listener.prepare(_pb(new_port))
    await change.apply()
    new_reader, new_writer = await _client(new_port)
    await eventually(lambda: len(listener._pb_writers) == 2, within=30)
    await change.revert()
    assert await _closed(new_reader)
    assert listener.pb_port == old_port
    await eventually(lambda: len(listener._pb_writers) == 1, within=30)
    old_writer.transport.abort()
    new_writer.transport.abort()


async def test_a_failed_apply_leaves_no_socket_open(
    listener: WorkerListener, monkeypatch: pytest.MonkeyPatch
) -> None:
    change = await listener.prepare(_pb(free_port()))
    sock = change.pb_sock
    assert sock is not None

    async def fail(*args: Any, **kwargs: Any) -> Any:
        raise OSError("no server today")

    monkeypatch.setattr(asyncio, "start_server", fail)
    with pytest.raises(OSError, match="no server today"):
        await change.apply()
    await change.revert()
    assert sock.fileno() == -1
