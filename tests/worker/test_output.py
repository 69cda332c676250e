"""Line splitting and buffering of command output (docs/worker-protocol.md)."""

from __future__ import annotations

import asyncio
from typing import Any

from buildyard.worker.commands.output import CommandOutput, LineSplitter, Outbox, Settings


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
