"""Binary WebSocket frames batched per pass of the event loop (buildyard.protocol.frames), on a
real loopback connection."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator

import pytest

from buildyard.protocol.frames import BATCH_LIMIT, FrameBatch, header


def _parse(data: bytes) -> list[bytes]:
    """The payloads of the final, unmasked binary frames in ``data``."""
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        assert data[pos] == 0x82
        second = data[pos + 1]
        length, pos = second & 0x7F, pos + 2
        if length == 126:
            (length,), pos = struct.unpack("!H", data[pos : pos + 2]), pos + 2
        elif length == 127:
            (length,), pos = struct.unpack("!Q", data[pos : pos + 8]), pos + 8
        assert not second & 0x80  # the server's frames are not masked
        assert pos + length <= len(data)  # all in
        out.append(data[pos : pos + length])
        pos += length
    return out


@pytest.fixture
async def connection() -> AsyncIterator[tuple[asyncio.Transport, asyncio.StreamReader]]:
    accepted: asyncio.Future[asyncio.StreamWriter] = asyncio.get_running_loop().create_future()

    async def on_client(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set_result(writer)

    server = await asyncio.start_server(on_client, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, client = await asyncio.open_connection("127.0.0.1", port)
    writer = await asyncio.wait_for(accepted, 10)
    transport = writer.transport
    assert isinstance(transport, asyncio.Transport)
    try:
        yield transport, reader
    finally:
        client.close()
        writer.close()
        server.close()
        await server.wait_closed()


async def _read(reader: asyncio.StreamReader, count: int) -> list[bytes]:
    """The first ``count`` frames the other end wrote."""
    data = b""
    async with asyncio.timeout(10):
        while True:
            data += await reader.read(1 << 20)
            try:
                frames = _parse(data)
            except (AssertionError, struct.error, IndexError):  # a frame not all in yet
                continue
            if len(frames) >= count:
                return frames


async def test_the_frames_of_one_pass_leave_in_one_write(
    connection: tuple[asyncio.Transport, asyncio.StreamReader],
) -> None:
    transport, reader = connection
    sent_through_library: list[bytes] = []

    async def fallback(data: bytes) -> None:
        sent_through_library.append(data)

    frames = FrameBatch(transport, fallback=fallback)
    payloads = [b"a", b"b" * 200, b"c" * 70000]  # the three header sizes
    payloads[2] = payloads[2][:BATCH_LIMIT]
    for payload in payloads:
        await frames.send(payload)
    assert frames.writes == 0  # nothing written yet: at the end of this pass
    assert await _read(reader, 3) == payloads
    assert (frames.frames, frames.writes) == (3, 1)
    assert sent_through_library == []


async def test_a_big_frame_goes_through_the_library_after_what_was_batched(
    connection: tuple[asyncio.Transport, asyncio.StreamReader],
) -> None:
    transport, reader = connection
    big = b"x" * (BATCH_LIMIT + 1)

    async def fallback(data: bytes) -> None:
        transport.write(header(len(data)) + data)  # what the library would write

    frames = FrameBatch(transport, fallback=fallback)
    await frames.send(b"first")
    await frames.send(big)
    await frames.send(b"last")
    assert await _read(reader, 3) == [b"first", big, b"last"]
    assert (frames.frames, frames.writes) == (3, 3)


async def test_without_batching_every_frame_goes_through_the_library() -> None:
    # a connection that negotiated compression: the library compresses each frame
    sent: list[bytes] = []

    async def fallback(data: bytes) -> None:
        sent.append(data)

    frames = FrameBatch(None, fallback=fallback)
    await frames.send(b"one")
    await frames.send(b"two")
    assert sent == [b"one", b"two"]


async def test_nothing_follows_the_websockets_own_close_frame(
    connection: tuple[asyncio.Transport, asyncio.StreamReader],
) -> None:
    # the library sends a close frame on its own (a missed heartbeat, the peer's close
    # answered) while the transport stays open for the peer's answer: frames queued in that
    # pass are dropped, and a later send is refused, rather than written after the close
    transport, reader = connection
    closed = [False]
    close_frame = b"\x88\x02\x03\xe8"  # a close frame, code 1000

    async def fallback(data: bytes) -> None:  # pragma: no cover - nothing big here
        transport.write(header(len(data)) + data)

    frames = FrameBatch(transport, fallback=fallback, closed=lambda: closed[0])
    await frames.send(b"before")
    frames.flush()
    await frames.send(b"queued")
    closed[0] = True
    transport.write(close_frame)  # what the library writes as it closes
    await asyncio.sleep(0)  # the pass ends: the batch's flush runs
    with pytest.raises(ConnectionResetError):
        await frames.send(b"after")
    transport.write(b"\x82\x03end")  # a marker, written straight, to know all has arrived
    data = b""
    async with asyncio.timeout(10):
        while not data.endswith(b"end"):
            data += await reader.read(1 << 20)
    assert data == header(6) + b"before" + close_frame + b"\x82\x03end"
