"""Line splitting and buffering of command output (docs/worker-protocol.md)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from buildyard.protocol.errors import ConnectionLost, RemoteError
from buildyard.worker.commands.output import (
    MAX_UNANSWERED,
    CommandOutput,
    LineSplitter,
    Outbox,
    Settings,
)


def test_complete_lines_only_with_offsets_and_times() -> None:
    s = LineSplitter(Settings())
    assert s.append("abc", now=1.0) is None
    assert s.append("def\ngh\nij", now=2.0) == ["abcdef\ngh\n", [6, 9], [1.0, 2.0]]
    assert s.finish(now=3.0) == ["ij\n", [2], [2.0]]
    assert s.finish() is None


def test_newline_re_replacement_across_chunks() -> None:
    s = LineSplitter(Settings())
    assert s.append("a\r", now=1.0) is None  # a lone \r at the end may be half of \r\n
    assert s.append("\nb\rc\x08\x08d\n", now=1.0) == ["a\nb\nc\nd\n", [1, 3, 5, 7], [1.0] * 4]


def test_long_lines_are_cut() -> None:
    s = LineSplitter(Settings(max_line_length=4))
    assert s.append("abcdefghij\nxy", now=1.0) == ["abcd\nefgh\nij\n", [4, 9, 12], [1.0] * 3]
    out = s.append("zzzzzzz", now=2.0)  # a partial line over the limit leaves in pieces
    assert out == ["xyzz\nzzzz\n", [4, 9], [1.0, 2.0]]
    assert s.finish(now=3.0) == ["z\n", [1], [2.0]]


def test_only_newline_ends_a_line_and_custom_regexes_apply() -> None:
    s = LineSplitter(Settings())
    # form feed, vertical tab and the like stay inside their line, as in the stock worker
    assert s.append("a\x0cb\x0bc\n\n", now=1.0) == ["a\x0cb\x0bc\n\n", [5, 6], [1.0, 1.0]]
    custom = LineSplitter(Settings(newline_re=";"))
    assert custom.append("x;y\n", now=1.0) == ["x\ny\n", [1, 3], [1.0, 1.0]]


def test_a_big_piece_gets_every_line_offset() -> None:
    lines = [f"line {i}" + "x" * (i % 50) for i in range(5000)]
    s = LineSplitter(Settings())
    text, offsets, times = s.append("\n".join(lines) + "\npartial", now=2.0) or ["", [], []]
    assert text.split("\n")[:-1] == lines
    assert offsets == [i for i, char in enumerate(text) if char == "\n"]
    assert times == [2.0] * 5000


async def test_buffering_merges_streams_and_flushes_on_size_and_time() -> None:
    sent: list[tuple[str, dict[str, Any]]] = []

    async def request(op: str, **fields: Any) -> None:
        sent.append((op, fields))

    outbox = Outbox(request, command_id="7")
    out = CommandOutput(outbox, Settings(buffer_size=100, buffer_timeout=0.05))
    out.text("stdout", "a\n")
    out.text("stdout", "b\n")
    out.text("stderr", "c\n")
    await asyncio.sleep(0)
    assert sent == []
    await asyncio.sleep(0.1)
    ((op, fields),) = sent
    assert op == "update"
    assert fields["command_id"] == "7"
    pairs = fields["args"]
    assert [p[0] for p in pairs] == ["stdout", "stderr"]
    assert pairs[0][1][:2] == ["a\nb\n", [1, 3]]
    out.text("stdout", "x" * 200 + "\n")  # over buffer_size: sent at once
    out.update("files", ["f"])  # sent at once
    out.text("header", "done\n")
    out.update("rc", 0)  # the end of the command: sent with complete's update
    out.update("elapsed", 0.5)
    await asyncio.sleep(0)
    assert [op for op, _ in sent] == ["update", "update", "update"]
    await out.complete(None)
    assert [op for op, _ in sent] == ["update", "update", "update", "update", "complete"]
    assert [p[0] for p in sent[-2][1]["args"]] == ["header", "rc", "elapsed"]
    assert sent[-1][1]["args"] is None


class _Master:
    """The connection's ``send_request``: records each request and hands back the future of
    its answer, which the test settles."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.answers: list[asyncio.Future[Any]] = []
        self._more = asyncio.Event()

    async def send(self, op: str, **fields: Any) -> asyncio.Future[Any]:
        self.sent.append(op)
        self.answers.append(asyncio.get_running_loop().create_future())
        self._more.set()
        return self.answers[-1]

    async def request(self, op: str, **fields: Any) -> Any:
        self.sent.append(op)
        self._more.set()
        return "answered"

    async def until_sent(self, count: int) -> None:
        async with asyncio.timeout(10):
            while len(self.sent) < count:
                self._more.clear()
                await self._more.wait()


async def test_the_complete_does_not_wait_for_the_answer_to_the_last_update() -> None:
    # the stock worker's way: the last update and the complete leave together
    master = _Master()
    out = CommandOutput(Outbox(master.request, command_id="1", send=master.send), Settings())
    out.update("rc", 0)
    completing = asyncio.get_running_loop().create_task(out.complete(None))
    await master.until_sent(2)
    assert master.sent == ["update", "complete"]
    assert not completing.done()  # the outbox still waits for both answers
    master.answers[1].set_result(None)
    master.answers[0].set_exception(RemoteError("refused"))  # logged, not fatal
    async with asyncio.timeout(10):
        await completing


async def test_unanswered_updates_are_bounded_and_transfers_wait_for_them() -> None:
    master = _Master()
    outbox = Outbox(master.request, command_id="1", send=master.send)
    for i in range(MAX_UNANSWERED + 3):
        outbox.put("update", args=[["n", i]])
    await master.until_sent(MAX_UNANSWERED)
    for _ in range(10):
        await asyncio.sleep(0)
    assert len(master.sent) == MAX_UNANSWERED  # the oldest answer is waited for
    calling = asyncio.get_running_loop().create_task(outbox.call("update_read_file"))
    for answer in master.answers[:]:
        answer.set_result(None)
    await master.until_sent(MAX_UNANSWERED + 3)
    for answer in master.answers[MAX_UNANSWERED:]:
        answer.set_result(None)
    async with asyncio.timeout(10):
        assert await calling == "answered"
    # the transfer's request went only after every update before it was answered
    assert master.sent == ["update"] * (MAX_UNANSWERED + 3) + ["update_read_file"]
    assert all(answer.done() for answer in master.answers)
    await outbox.close()


async def test_a_lost_connection_fails_what_waits() -> None:
    master = _Master()
    outbox = Outbox(master.request, command_id="1", send=master.send)
    outbox.put("update", args=[["rc", 0]])
    await master.until_sent(1)
    calling = asyncio.get_running_loop().create_task(outbox.call("update_read_file"))
    master.answers[0].set_exception(ConnectionLost("gone"))
    async with asyncio.timeout(10):
        with pytest.raises(ConnectionLost):
            await calling
        await outbox.close()
    assert master.sent == ["update"]
