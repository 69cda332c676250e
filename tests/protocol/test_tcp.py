"""buildyard.protocol.tcp: the options of a PB connection's socket, on real sockets."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from buildyard.common.ports import Listen, bind
from buildyard.protocol.tcp import LowLatency


async def _accepted(listen: Listen) -> tuple[LowLatency, asyncio.StreamWriter]:
    """Accept one connection on ``listen`` (a server started on our own bound socket, as the
    PB listener does); its LowLatency, after the client sent a few bytes and we read them."""
    got: asyncio.Future[tuple[LowLatency, asyncio.StreamWriter]] = (
        asyncio.get_running_loop().create_future()
    )

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        low_latency = LowLatency(writer)
        await reader.readexactly(5)
        low_latency.after_read()
        got.set_result((low_latency, writer))

    server = await asyncio.start_server(client, sock=bind(listen))
    try:
        sockname = server.sockets[0].getsockname()
        if isinstance(sockname, tuple):
            _r, w = await asyncio.open_connection(sockname[0], sockname[1])
        else:
            _r, w = await asyncio.open_unix_connection(sockname)
        w.write(b"hello")
        low_latency, writer = await asyncio.wait_for(got, 10)
        w.close()
        return low_latency, writer
    finally:
        server.close()


async def test_a_tcp_connection_gets_nagle_off_and_quick_acks() -> None:
    low_latency, writer = await _accepted(Listen(host="127.0.0.1", port=0))
    sock = writer.get_extra_info("socket")
    # asyncio alone leaves Nagle on here: create_server's sockets have proto 0
    assert sock.proto == 0
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    assert low_latency.nodelay
    assert low_latency.quickacks == (1 if hasattr(socket, "TCP_QUICKACK") else 0)
    writer.transport.abort()
    await asyncio.sleep(0)
    low_latency.after_read()  # after the close: nothing to acknowledge, no error
    assert low_latency.quickacks == (1 if hasattr(socket, "TCP_QUICKACK") else 0)


async def test_a_unix_socket_is_left_alone(tmp_path: Path) -> None:
    low_latency, writer = await _accepted(Listen(host=None, port=0, unix=str(tmp_path / "s")))
    low_latency.after_read()
    assert not low_latency.nodelay and low_latency.quickacks == 0
    writer.transport.abort()
