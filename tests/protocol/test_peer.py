"""Framing and request/response matching of msgpack_experimental_v7."""

from __future__ import annotations

import asyncio
from typing import Any

import msgpack
import pytest

from buildyard.protocol.codec import MAX_FRAME, decode, encode
from buildyard.protocol.errors import ConnectionLost, ProtocolError, RemoteError
from buildyard.protocol.peer import Peer, RequestFailed


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (b"\xc1", "not one msgpack message"),
        (msgpack.packb([1, 2]), "not a map"),
        (msgpack.packb({"op": "x"}), "seq_number"),
        (msgpack.packb({1: "int key", "op": "x", "seq_number": 0}), "not one msgpack message"),
        (b"\x00" * (MAX_FRAME + 1), "over the"),
    ],
)
def test_bad_frames_are_named(frame: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        decode(frame)


def test_bytes_stay_bytes_and_str_stays_str() -> None:
    frame = encode({"op": "update", "seq_number": 3, "data": b"\x00\xff", "text": "é"})
    assert decode(frame) == {"op": "update", "seq_number": 3, "data": b"\x00\xff", "text": "é"}


def pair() -> tuple[Peer, Peer]:
    """Two peers wired back to back; each answers ``echo`` and refuses ``fail``."""
    peers: list[Peer] = []

    async def handler(op: str, message: dict[str, Any]) -> Any:
        if op == "echo":
            await asyncio.sleep(message.get("delay", 0))
            return message["value"]
        if op == "fail":
            raise RequestFailed("refused on purpose")
        raise RequestFailed(f"Command {op} does not exist.")

    def sender(index: int) -> Any:
        async def send(frame: bytes) -> None:
            receiver = peers[1 - index]
            try:
                await receiver.feed(frame)
            except ProtocolError:  # what a transport would log before closing
                receiver.faults += 1

        return send

    peers.extend(Peer(send=sender(i), handler=handler, name=f"p{i}") for i in range(2))
    return peers[0], peers[1]


async def test_concurrent_requests_resolve_to_their_own_answers() -> None:
    a, _b = pair()
    results = await asyncio.gather(
        a.request("echo", value="slow", delay=0.05), a.request("echo", value="fast")
    )
    assert list(results) == ["slow", "fast"]
    with pytest.raises(RemoteError, match="refused on purpose"):
        await a.request("fail")
    with pytest.raises(RemoteError, match="Command nope does not exist"):
        await a.request("nope")


async def test_unknown_response_is_a_fault_and_close_fails_waiters() -> None:
    a, _b = pair()
    with pytest.raises(ProtocolError, match="unknown seq_number 99"):
        await a.feed(encode({"op": "response", "seq_number": 99, "result": None}))

    async def never(frame: bytes) -> None:
        return None

    lonely = Peer(send=never, handler=lambda op, m: asyncio.sleep(0), name="lonely")
    waiting = asyncio.create_task(lonely.request("echo", value=1))
    await asyncio.sleep(0)
    lonely.close("socket gone")
    with pytest.raises(ConnectionLost, match="socket gone"):
        await waiting


async def test_a_late_reply_to_an_abandoned_request_is_dropped() -> None:
    a, _b = pair()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await a.request("echo", value="late", delay=0.2)
    await asyncio.sleep(0.3)  # the reply arrives after the caller gave up
    assert a.faults == 0
    assert await a.request("echo", value="next") == "next"


async def test_immediate_requests_are_answered_within_the_read_that_brought_them() -> None:
    sent: list[dict[str, Any]] = []
    seen: list[Any] = []

    async def send(frame: bytes) -> None:
        sent.append(decode(frame))

    async def handler(op: str, message: dict[str, Any]) -> Any:
        raise AssertionError(f"{op} went to the task handler")

    def update(message: dict[str, Any]) -> None:
        if message.get("args") == "bad":
            raise RequestFailed("bad update")
        seen.append(message["args"])

    peer = Peer(send=send, handler=handler, name="p", immediate={"update": update})
    await peer.feed(encode({"op": "update", "seq_number": 4, "args": 1}))
    await peer.feed(encode({"op": "update", "seq_number": 5, "args": "bad"}))
    # answered before feed returned, in order, and no task was started for them
    assert seen == [1]
    assert sent == [
        {"op": "response", "seq_number": 4, "result": None},
        {"op": "response", "seq_number": 5, "result": "bad update", "is_exception": True},
    ]
    assert peer.statistics() == {"waiting": 0, "handling": 0}


async def test_send_request_returns_once_sent_and_its_future_resolves_later() -> None:
    a, b = pair()
    first = await a.send_request("echo", value="one", delay=0.05)
    second = await a.send_request("echo", value="two")
    assert not first.done()
    async with asyncio.timeout(10):
        assert await second == "two"
        assert await first == "one"
    refused = await a.send_request("fail")
    with pytest.raises(RemoteError, match="refused on purpose"):
        await refused
    await asyncio.sleep(0)
    assert a.statistics()["waiting"] == 0  # answered requests are forgotten
    b.close()
