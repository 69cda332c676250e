"""One end of a msgpack_experimental_v7 connection: numbered requests, matched responses.

:class:`Peer` numbers its own requests from 0, resolves each response to the request it answers,
and hands every incoming request to a handler, concurrently (the protocol lets responses come
out of order). It does not own the socket: the transport calls :meth:`Peer.feed` with each binary
frame and :meth:`Peer.close` when the socket is gone; ``send`` writes one frame.

Requests whose op is in ``immediate`` are answered at once, in :meth:`Peer.feed`, by a plain
function (no task each): a command's ``update`` and ``complete``, which the master handles
without waiting. Everything else runs in a task of its own.

Ownership: the handler tasks belong to the peer's TaskGroup-like task set; :meth:`close` cancels
them and fails every waiting request with ConnectionLost.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog

from buildyard.protocol.codec import Message, decode, encode, response
from buildyard.protocol.errors import ConnectionLost, ProtocolError, RemoteError

log = structlog.get_logger(__name__)

Send = Callable[[bytes], Awaitable[None]]
# returns the response's result; raising RequestFailed answers is_exception with its text
Handler = Callable[[str, Message], Awaitable[Any]]
# answers one request at once: returns its result, raises RequestFailed to refuse it
Immediate = Callable[[Message], Any]


# late replies remembered at most (a peer that never answers is dropped by keepalive anyway)
MAX_ABANDONED = 1024


class RequestFailed(Exception):
    """Raised by a handler: the request gets an is_exception response with this text."""


class Peer:
    def __init__(
        self,
        *,
        send: Send,
        handler: Handler,
        name: str,
        immediate: Mapping[str, Immediate] | None = None,
    ) -> None:
        self._send = send
        self._handler = handler
        self._immediate: Mapping[str, Immediate] = immediate or {}
        self.name = name
        self._next_seq = 0
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        # requests whose caller stopped waiting (cancelled, timed out): a late reply is dropped
        self._abandoned: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed = False
        self.faults = 0

    async def request(self, op: str, **fields: Any) -> Any:
        """Send one request and wait for its result; RemoteError if the peer says it failed."""
        if self.closed:
            raise ConnectionLost(f"connection to {self.name} is closed")
        seq = self._next_seq
        self._next_seq += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[seq] = future
        try:
            await self._send(encode({"op": op, "seq_number": seq, **fields}))
            return await future
        finally:
            self._waiting.pop(seq, None)
            if future.cancelled() or not future.done():  # the caller gave up waiting
                future.cancel()
                if len(self._abandoned) < MAX_ABANDONED:
                    self._abandoned.add(seq)

    async def send_request(self, op: str, **fields: Any) -> asyncio.Future[Any]:
        """Send one request and return, once it is written, the future of its result (a
        RemoteError if the peer says it failed, ConnectionLost if the connection ends first),
        for a caller that sends more before the answer comes (a command's ``update``)."""
        if self.closed:
            raise ConnectionLost(f"connection to {self.name} is closed")
        seq = self._next_seq
        self._next_seq += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[seq] = future

        def answered(_: asyncio.Future[Any]) -> None:
            gone = self._waiting.pop(seq, None) is not None and future.cancelled()
            if gone and len(self._abandoned) < MAX_ABANDONED:
                self._abandoned.add(seq)  # a late reply is dropped

        future.add_done_callback(answered)
        try:
            await self._send(encode({"op": op, "seq_number": seq, **fields}))
        except BaseException:
            future.cancel()
            raise
        return future

    async def feed(self, frame: bytes) -> None:
        """Take one frame from the transport. A malformed frame raises ProtocolError."""
        message = decode(frame)
        seq = message["seq_number"]
        if message["op"] == "response":
            future = self._waiting.get(seq)
            if future is None:
                if seq in self._abandoned:
                    self._abandoned.discard(seq)
                    return
                raise ProtocolError(f"response to unknown seq_number {seq}")
            if not future.done():
                if message.get("is_exception"):
                    future.set_exception(RemoteError(str(message.get("result"))))
                else:
                    future.set_result(message.get("result"))
            return
        op = message["op"]
        answer = self._immediate.get(op)
        if answer is not None:
            try:
                reply = response(seq, answer(message))
            except RequestFailed as exc:
                reply = response(seq, error=str(exc))
            except Exception as exc:
                log.exception("request_handler_failed", peer=self.name, op=op)
                reply = response(seq, error=f"{type(exc).__name__}: {exc}")
            if not self.closed:
                with contextlib.suppress(ConnectionError):
                    await self._send(encode(reply))
            return
        task = asyncio.get_running_loop().create_task(self._answer(op, seq, message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, op: str, seq: int, message: Message) -> None:
        try:
            result = await self._handler(op, message)
            reply = response(seq, result)
        except RequestFailed as exc:
            reply = response(seq, error=str(exc))
        except Exception as exc:
            log.exception("request_handler_failed", peer=self.name, op=op)
            reply = response(seq, error=f"{type(exc).__name__}: {exc}")
        if not self.closed:
            with contextlib.suppress(ConnectionError):
                await self._send(encode(reply))

    def close(self, reason: str = "connection lost") -> None:
        if self.closed:
            return
        self.closed = True
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ConnectionLost(f"{self.name}: {reason}"))
        for task in self._tasks:
            task.cancel()

    def statistics(self) -> dict[str, int]:
        return {"waiting": len(self._waiting), "handling": len(self._tasks)}
