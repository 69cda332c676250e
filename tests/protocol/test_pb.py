"""The PB broker, two of ours back to back (the stock worker's Twisted end is in
tests/e2e/test_pb_worker.py and test_worker_commands.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from buildyard.protocol import banana, pb
from buildyard.protocol.errors import ConnectionLost, ProtocolError, RemoteError
from buildyard.protocol.jelly import jelly
from buildyard.protocol.pb import Broker, CallFailed, Referenceable, RemoteReference
from buildyard.testing.processes import eventually


class Counter(Referenceable):
    def __init__(self) -> None:
        self.seen: list[Any] = []

    def remote_add(self, a: int, b: int = 0) -> int:
        return a + b

    async def remote_echo(self, value: Any) -> Any:
        await asyncio.sleep(0)
        return value

    def remote_refuse(self) -> None:
        raise CallFailed("no thanks", "some.Refusal")

    def remote_crash(self) -> None:
        raise KeyError("oops")

    def remote_give(self) -> Referenceable:
        return Counter()

    async def remote_call_back(self, ref: RemoteReference) -> Any:
        return await ref.call("add", 40, b=2)

    def remote_keep(self, value: Any) -> None:
        self.seen.append(value)


async def _pair(
    server_root: Referenceable, client_root: Referenceable | None = None
) -> tuple[Broker, Broker]:
    loop = asyncio.get_running_loop()
    holder: dict[str, Broker] = {}

    def to(name: str) -> Callable[[bytes], None]:
        def write(data: bytes) -> None:
            loop.call_soon(holder[name].feed, data)

        return write

    server = Broker(write=to("client"), root=server_root, name="server")
    client = Broker(write=to("server"), root=client_root, name="client", server=False)
    holder.update(server=server, client=client)
    server.start()
    async with asyncio.timeout(10):
        await server.ready.wait()
        await client.ready.wait()
    return server, client


async def test_calls_answers_errors_and_references_both_ways() -> None:
    async with asyncio.timeout(30):
        await _calls_answers_errors_and_references_both_ways()


async def _calls_answers_errors_and_references_both_ways() -> None:
    root = Counter()
    _server, client = await _pair(root)
    remote = client.root()
    assert await remote.call("add", 1, b=2) == 3
    value = {"s": "h\u00e9", "b": b"\x00", "t": (1, [2.5, None]), "flags": {True, False}}
    assert await remote.call("echo", value) == value
    with pytest.raises(RemoteError, match=r"some\.Refusal: no thanks"):
        await remote.call("refuse")
    with pytest.raises(RemoteError, match=r"builtins\.KeyError"):
        await remote.call("crash")
    with pytest.raises(RemoteError, match="NoSuchMethod: No such method: remote_nope"):
        await remote.call("nope")
    with pytest.raises(RemoteError, match="TypeError"):
        await remote.call("add")
    # an object of theirs, called by us; one of ours passed to them and called back
    other = await remote.call("give")
    assert isinstance(other, RemoteReference)
    assert await other.call("add", 5) == 5
    assert await remote.call("call_back", Counter()) == 42
    # our reference handed back to its owner arrives as the object itself
    await remote.call("keep", other)
    assert isinstance(root.seen[0], Counter)


async def test_decref_frees_the_object() -> None:
    server, client = await _pair(Counter())
    other = await client.root().call("give")
    assert server.statistics()["local_objects"] == 2  # root and the given one
    client._send([b"decref", other.luid])
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert server.statistics()["local_objects"] == 1
    with pytest.raises(RemoteError, match="Invalid Object ID"):
        await other.call("add", 1)


async def test_close_fails_waiting_calls() -> None:
    class Slow(Referenceable):
        async def remote_wait(self) -> None:
            await asyncio.Event().wait()

    server, client = await _pair(Slow())
    call = asyncio.ensure_future(client.root().call("wait"))
    await asyncio.sleep(0.01)
    client.close("gone")
    with pytest.raises(ConnectionLost, match="gone"):
        await call
    server.close("gone")
    with pytest.raises(ConnectionLost):
        await client.root().call("wait")


def test_version_and_dialect_are_checked() -> None:
    broker = Broker(write=lambda _d: None, root=None, name="x")
    broker.start()
    broker.feed(b"\x02\x82pb")
    with pytest.raises(ProtocolError, match="PB version"):
        broker.feed(b"\x02\x80\x13\x87\x05\x81")


async def test_the_answers_to_the_calls_of_one_read_leave_in_one_write() -> None:
    """A Twisted peer keeps Nagle on and wakes up once per segment: the answers to the calls
    that arrived together go back in one write, and in the calls' order."""
    writes: list[bytes] = []
    answered = asyncio.Event()

    def write(data: bytes) -> None:
        writes.append(data)
        if len(writes) == 2:
            answered.set()

    server = Broker(write=write, root=Counter(), name="server")
    server.start()
    server.feed(b"\x02\x82pb" + banana.encode([b"version", 6]))
    await asyncio.sleep(0)  # the handshake's flush
    assert len(writes) == 1
    calls = b"".join(
        banana.encode([b"message", i, b"root", b"add", 1, jelly((i, 1)), jelly({})])
        for i in (1, 2, 3)
    )
    server.feed(calls)
    async with asyncio.timeout(10):
        await answered.wait()
    await asyncio.sleep(0)  # any further write would come now
    assert len(writes) == 2
    decoder = banana.Decoder()
    decoder.pb = True
    assert decoder.feed(writes[1]) == [[b"answer", i, i + 1] for i in (1, 2, 3)]
    assert server.statistics()["sent_answer"] == 3
    assert server.statistics()["received_message"] == 3


async def test_answers_sent_before_close_in_the_same_pass_still_leave() -> None:
    """A read with the last calls and then the end of the stream, in one pass of the loop:
    the answers queued for the pass's flush are written when the broker closes."""
    writes: list[bytes] = []
    server = Broker(write=writes.append, root=Counter(), name="server")
    server.start()
    server.feed(b"\x02\x82pb" + banana.encode([b"version", 6]))
    await asyncio.sleep(0)  # the handshake's flush
    server.feed(banana.encode([b"message", 1, b"root", b"add", 1, jelly((4, 1)), jelly({})]))
    server.close("the peer closed the connection")  # before the loop's next pass
    decoder = banana.Decoder()
    decoder.pb = True
    assert decoder.feed(b"".join(writes[1:])) == [[b"answer", 1, 5]]
    await asyncio.sleep(0)  # the scheduled flush finds nothing more to write
    assert len(writes) == 2


class Recorder(Referenceable):
    def __init__(self) -> None:
        self.order: list[str] = []

    async def remote_slow(self) -> str:
        self.order.append("slow")
        await asyncio.sleep(0)
        return "slow"

    def remote_quick(self) -> str:
        self.order.append("quick")
        return "quick"


def _handshaken(root: Referenceable) -> tuple[Broker, list[bytes]]:
    writes: list[bytes] = []
    broker = Broker(write=writes.append, root=root, name="server")
    broker.start()
    broker.feed(b"\x02\x82pb" + banana.encode([b"version", 6]))
    broker.flush()
    writes.clear()
    return broker, writes


def _call(request_id: int, method: bytes) -> bytes:
    return banana.encode([b"message", request_id, b"root", method, 1, jelly(()), jelly({})])


async def test_a_plain_method_is_answered_as_its_call_is_read() -> None:
    """No task and no wait for the event loop: the answer is ready when feed returns."""
    root = Recorder()
    broker, writes = _handshaken(root)
    broker.feed(_call(1, b"quick"))
    broker.flush()
    decoder = banana.Decoder()
    decoder.pb = True
    assert [m for w in writes for m in decoder.feed(w)] == [[b"answer", 1, [b"unicode", b"quick"]]]
    assert broker.statistics()["running_calls"] == 0


async def test_calls_start_in_arrival_order_behind_a_running_coroutine() -> None:
    """A plain method behind a coroutine method still running waits for its turn."""
    root = Recorder()
    broker, writes = _handshaken(root)
    broker.feed(_call(1, b"slow") + _call(2, b"quick"))
    await eventually(lambda: broker.statistics()["running_calls"] == 0, within=10)
    assert root.order == ["slow", "quick"]
    broker.flush()
    decoder = banana.Decoder()
    decoder.pb = True
    answers = sorted(m[1] for w in writes for m in decoder.feed(w))
    assert answers == [1, 2]


class Progress(Referenceable):
    """Like the master's end of a worker's command: answers its peer does not wait for."""

    lazy_answers = frozenset({"update", "fail"})

    def __init__(self) -> None:
        self.updates: list[Any] = []

    def remote_update(self, *values: Any) -> None:
        self.updates.append(values)

    def remote_fail(self) -> None:
        raise CallFailed("refused", "some.Refusal")

    def remote_ping(self) -> str:
        return "pong"


def _messages(writes: list[bytes]) -> list[list[Any]]:
    decoder = banana.Decoder()
    decoder.pb = True
    return [decoder.feed(w) for w in writes]


async def test_a_lazy_answer_rides_with_the_next_message() -> None:
    """The answers to a stock worker's updates and ``complete`` (lazy_answers) are not
    written on their own at the end of the pass: they wait for the next message we send (its
    next ``startCommand``), and both leave in one write, in the order they were sent."""
    root = Progress()
    broker, writes = _handshaken(root)
    broker.feed(_call(1, b"update") + _call(2, b"update"))
    assert len(root.updates) == 2  # both calls ran as they were read
    for _ in range(3):
        await asyncio.sleep(0)  # passes of the loop: a plain answer would have left by now
    assert writes == []
    assert broker.statistics()["sent_answer"] == 2
    # the next message we send (a call, as startCommand is) takes the waiting ones along
    written = broker.writes
    call = asyncio.ensure_future(broker.root().call("print", "next"))
    await eventually(lambda: bool(writes), within=10)
    for _ in range(3):
        await asyncio.sleep(0)
    assert broker.writes - written == len(writes) == 1
    (messages,) = _messages(writes)
    assert [m[:2] for m in messages] == [[b"answer", 1], [b"answer", 2], [b"message", 1]]
    # an ordinary answer takes them along too, at the end of its pass
    writes.clear()
    broker.feed(_call(3, b"update") + _call(4, b"ping"))
    await eventually(lambda: bool(writes), within=10)
    assert [[m[:2] for m in w] for w in _messages(writes)] == [[[b"answer", 3], [b"answer", 4]]]
    call.cancel()
    broker.close("done")


async def test_a_lazy_answer_alone_still_leaves_and_an_error_leaves_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With nothing else to send, a lazy answer is written after LAZY_DELAY; a failure of
    a lazy method is answered at the end of the pass (the peer logs it)."""
    monkeypatch.setattr(pb, "LAZY_DELAY", 0.01)
    broker, writes = _handshaken(Progress())
    broker.feed(_call(1, b"fail"))
    await asyncio.sleep(0)
    assert [[m[:2] for m in w] for w in _messages(writes)] == [[[b"error", 1]]]
    broker.feed(_call(2, b"update"))
    await eventually(lambda: len(writes) == 2, within=10)
    assert [m[:2] for m in _messages(writes[1:])[0]] == [[b"answer", 2]]


async def test_a_lazy_answer_waiting_is_written_when_the_broker_closes() -> None:
    broker, writes = _handshaken(Progress())
    broker.feed(_call(1, b"update"))
    await asyncio.sleep(0)
    assert writes == []
    broker.close("the peer closed the connection")
    assert [[m[:2] for m in w] for w in _messages(writes)] == [[[b"answer", 1]]]


async def test_a_call_of_ours_is_written_at_once_with_the_answers_waiting() -> None:
    """A call (a startCommand) does not wait for the end of the event loop's pass, where a
    busy master's other work held it back: it is written as it is sent, with the lazy
    answers waiting in front of it."""
    broker, writes = _handshaken(Progress())
    broker.feed(_call(1, b"update"))
    call = asyncio.ensure_future(broker.root().call("print", "next"))
    await asyncio.sleep(0)  # the call's task ran its first step (and sent); nothing else did
    assert [[m[:2] for m in w] for w in _messages(writes)] == [[[b"answer", 1], [b"message", 1]]]
    call.cancel()
    broker.close("done")
