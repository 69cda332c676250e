"""Binary WebSocket frames written straight to the transport, those of one pass of the event
loop in one write.

A worker conversation is many small messages: per one-step build the master sends
``start_command`` and answers the worker's ``update`` and ``complete``. Each frame written on its
own is one ``send`` system call, and on a loopback connection that call also runs the peer's
receiving side; it was a quarter of the master's CPU per build. :class:`FrameBatch` keeps the
frames sent during one pass of the event loop and writes them together at its end (a
``call_soon``), so the answers to the requests of one read leave in one segment.

Only plain binary frames are batched: when the connection negotiated compression
(``permessage-deflate``), or for a frame bigger than :data:`BATCH_LIMIT` (file transfers' blocks),
what is batched is written first and the frame goes through the WebSocket library's own sender,
with its flow control. Control frames (ping, pong, close) are the library's; they are whole
frames, written between ours. Call :meth:`FrameBatch.flush` before closing the WebSocket, so
that what was sent goes out before the close frame.

Frames are unmasked: this is the server's end (RFC 6455 wants a client's frames masked).
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable
from typing import Protocol

# frames over this many bytes are not batched (their sender applies flow control)
BATCH_LIMIT = 16 * 1024
# above this many bytes waiting in the transport, sending waits through the library's sender
HIGH_WATER = 1024 * 1024

_BINARY = 0x82  # FIN + opcode 2


class _Transport(Protocol):
    def write(self, data: bytes) -> None: ...

    def is_closing(self) -> bool: ...

    def get_write_buffer_size(self) -> int: ...


def header(length: int) -> bytes:
    """The header of one final, unmasked binary frame of ``length`` payload bytes (RFC 6455,
    5.2)."""
    if length < 126:
        return bytes((_BINARY, length))
    if length < 65536:
        return struct.pack("!BBH", _BINARY, 126, length)
    return struct.pack("!BBQ", _BINARY, 127, length)


class FrameBatch:
    """The binary frames of one connection, written once per pass of the event loop.

    ``transport`` is the connection's; ``fallback`` sends one frame through the WebSocket
    library (used for big frames, on compressed connections, and when the transport is
    backed up); ``batching`` is False when the connection negotiated compression.
    """

    def __init__(
        self,
        transport: _Transport | None,
        *,
        fallback: Callable[[bytes], Awaitable[None]],
        batching: bool = True,
        closed: Callable[[], bool] = lambda: False,
    ) -> None:
        self._transport = transport
        # whether the WebSocket has sent its close frame (the library sends one on its own:
        # a missed heartbeat, the peer's close answered): no data frame may follow it
        self._closed = closed
        self._fallback = fallback
        self._batching = batching and transport is not None
        self._out: list[bytes] = []
        # system writes made, and frames that went out in them (for tests and statistics)
        self.writes = 0
        self.frames = 0

    def write(self, data: bytes) -> bool:
        """Queue one frame for the end of this pass; False when it cannot be batched (too big,
        compression, no transport), and the caller must :meth:`send` it instead."""
        if not self._batching or len(data) > BATCH_LIMIT:
            return False
        out = self._out
        out.append(header(len(data)) + data)
        self.frames += 1
        if len(out) == 1:
            asyncio.get_running_loop().call_soon(self.flush)
        return True

    async def send(self, data: bytes) -> None:
        """Send one frame: batched when it can be, else through the library, after what was
        batched (so frames keep their order)."""
        transport = self._transport
        if self._closed() or (transport is not None and transport.is_closing()):
            raise ConnectionResetError("cannot write to a closing transport")
        if transport is not None and transport.get_write_buffer_size() > HIGH_WATER:
            self.flush()
        elif self.write(data):
            return
        self.flush()
        self.frames += 1
        self.writes += 1
        await self._fallback(data)

    def flush(self) -> None:
        """Write what was queued, in one write (nothing once the WebSocket is closed or the
        transport closing)."""
        out, self._out = self._out, []
        transport = self._transport
        if not out or transport is None or transport.is_closing() or self._closed():
            return
        transport.write(out[0] if len(out) == 1 else b"".join(out))
        self.writes += 1
