"""Banana and jelly against the bytes Twisted 15+ (here the stock venv's Twisted) produces.

The reference encodings below were made by Twisted's own Broker (``pb.Broker.sendCall(b"answer",
1, broker.serialize(value))`` after agreeing the pb dialect): each is a whole PB answer, so
they cover banana, the pb vocabulary and jelly at once.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from buildyard.protocol import banana
from buildyard.protocol.jelly import CopiedFailure, JellyError, failure, jelly, unjelly

# value -> Twisted's bytes for [answer, 1, jelly(value)]
TWISTED_ANSWERS: list[tuple[object, bytes]] = [
    (None, b"\x03\x80\x1b\x87\x01\x81\x01\x80\x01\x87"),
    (True, b"\x03\x80\x1b\x87\x01\x81\x02\x80\x07\x82boolean\x04\x82true"),
    (False, b"\x03\x80\x1b\x87\x01\x81\x02\x80\x07\x82boolean\x05\x82false"),
    (1, b"\x03\x80\x1b\x87\x01\x81\x01\x81"),
    (-1, b"\x03\x80\x1b\x87\x01\x81\x01\x83"),
    (2**31, b"\x03\x80\x1b\x87\x01\x81\x00\x00\x00\x00\x08\x85"),
    (-(2**31) - 1, b"\x03\x80\x1b\x87\x01\x81\x01\x00\x00\x00\x08\x86"),
    (2**70, b"\x03\x80\x1b\x87\x01\x81" + b"\x00" * 10 + b"\x01\x85"),
    (1.5, b"\x03\x80\x1b\x87\x01\x81\x84?\xf8\x00\x00\x00\x00\x00\x00"),
    (b"abc", b"\x03\x80\x1b\x87\x01\x81\x03\x82abc"),
    ("h\u00e9", b"\x03\x80\x1b\x87\x01\x81\x02\x80\x07\x82unicode\x03\x82h\xc3\xa9"),
    ([1, [2]], b"\x03\x80\x1b\x87\x01\x81\x03\x80\x08\x87\x01\x81\x02\x80\x08\x87\x02\x81"),
    ((1, 2), b"\x03\x80\x1b\x87\x01\x81\x03\x80\x0b\x87\x01\x81\x02\x81"),
    (
        {"a": 1, b"k": None},
        b"\x03\x80\x1b\x87\x01\x81\x03\x80\x05\x87\x02\x80\x02\x80\x07\x82unicode\x01\x82a"
        b"\x01\x81\x02\x80\x01\x82k\x01\x80\x01\x87",
    ),
    ({1, 2}, b"\x03\x80\x1b\x87\x01\x81\x03\x80\x03\x82set\x01\x81\x02\x81"),
]

# Twisted's answer for [l, l] with l = [1]: the second is a dereference of the first
TWISTED_SHARED = (
    b"\x03\x80\x1b\x87\x01\x81\x03\x80\x08\x87\x03\x80\x04\x87\x01\x81\x02\x80\x08\x87\x01"
    b"\x81\x02\x80\x03\x87\x01\x81"
)
# Twisted's error answer (request 7) for a refused login
TWISTED_UNAUTHORIZED = (
    b"\x03\x80\x1c\x87\x07\x81\x02\x80!\x82twisted.spread.pb.CopyableFailure\r\x80\x05\x87\x02"
    b"\x80\x02\x80\x07\x82unicode\x05\x82count\x02\x81\x02\x80\x02\x80\x07\x82unicode\x04\x82"
    b"type$\x82twisted.cred.error.UnauthorizedLogin\x02\x80\x02\x80\x07\x82unicode\x05\x82value"
    b"\x02\x80\x07\x82unicode\x03\x82bad\x02\x80\x02\x80\x07\x82unicode\x0b\x82captureVars\x02"
    b"\x80\x07\x82boolean\x05\x82false\x02\x80\x02\x80\x07\x82unicode\x02\x82tb\x01\x80\x01\x87"
    b"\x02\x80\x02\x80\x07\x82unicode\x07\x82pickled\x01\x81\x02\x80\x02\x80\x07\x82unicode\x07"
    b"\x82_frames\x01\x80\x08\x87\x02\x80\x02\x80\x07\x82unicode\x10\x82unsafeTracebacks\x00\x81"
    b"\x02\x80\x02\x80\x07\x82unicode\x07\x82parents\x07\x80\x08\x87\x02\x80\x07\x82unicode$\x82"
    b"twisted.cred.error.UnauthorizedLogin\x02\x80\x07\x82unicode\x1e\x82twisted.cred.error."
    b"LoginFailed\x02\x80\x07\x82unicode\x1f\x82twisted.cred.error.Unauthorized\x02\x80\x07\x82"
    b"unicode\x12\x82builtins.Exception\x02\x80\x07\x82unicode\x16\x82builtins.BaseException"
    b"\x02\x80\x07\x82unicode\x0f\x82builtins.object\x02\x80\x02\x80\x07\x82unicode\x06\x82"
    b"frames\x01\x80\x08\x87\x02\x80\x02\x80\x07\x82unicode\x05\x82stack\x01\x80\x08\x87\x02"
    b"\x80\x02\x80\x07\x82unicode\t\x82traceback\x02\x80\x07\x82unicode\x16\x82Traceback "
    b"unavailable\n"
)


def _decode_all(data: bytes) -> list[Any]:
    decoder = banana.Decoder()
    decoder.pb = True
    return decoder.feed(data)


@pytest.mark.parametrize(("value", "wire"), TWISTED_ANSWERS, ids=lambda v: repr(v)[:20])
def test_encoding_matches_twisted(value: object, wire: bytes) -> None:
    assert banana.encode([b"answer", 1, jelly(value)]) == wire


@pytest.mark.parametrize(("value", "wire"), TWISTED_ANSWERS, ids=lambda v: repr(v)[:20])
def test_decoding_twisted_bytes_gives_the_value(value: object, wire: bytes) -> None:
    ((kind, request, sexp),) = _decode_all(wire)
    assert (kind, request) == (b"answer", 1)
    got = unjelly(sexp)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize(("value", "wire"), TWISTED_ANSWERS, ids=lambda v: repr(v)[:20])
def test_decoding_byte_by_byte(value: object, wire: bytes) -> None:
    decoder = banana.Decoder()
    decoder.pb = True
    got: list[object] = []
    for i in range(len(wire)):
        got += decoder.feed(wire[i : i + 1])
        if i < len(wire) - 1:
            assert got == []
    assert len(got) == 1 and decoder.buffered == 0


def test_shared_values_and_floats() -> None:
    ((_, _, sexp),) = _decode_all(TWISTED_SHARED)
    value = unjelly(sexp)
    assert value == [[1], [1]]
    # a dereference is a copy: changing one leaves the other
    value[0].append(2)
    assert value[1] == [1]
    for x in (0.0, -2.5, 1e300, math.inf):
        assert _decode_all(banana.encode(x)) == [x]


def test_references_cannot_expand_a_message_exponentially() -> None:
    # reference k is a list of two dereferences of k-1: 60 small levels, 2**60 leaves
    sexp: list[object] = [b"reference", 1, [b"list", b"x" * 1000]]
    for k in range(2, 61):
        sexp = [b"reference", k, [b"list", sexp, [b"dereference", k - 1]]]
    top = [b"list", sexp] + [[b"dereference", 60]] * 3
    with pytest.raises(JellyError, match=r"unjellies to over 33554432"):
        unjelly(top)
    # a chain of dereferences each inside the next is bounded before Python's recursion
    chain: list[object] = [b"reference", 1, [b"list"]]
    for k in range(2, 200):
        chain = [b"list", chain, [b"reference", k, [b"list", [b"dereference", k - 1]]]]
    with pytest.raises(JellyError, match="dereferences nested deeper than 32"):
        unjelly([b"list", chain, [b"dereference", 199]])


def test_twisted_failure_decodes_with_its_type_and_parents() -> None:
    ((kind, request, sexp),) = _decode_all(TWISTED_UNAUTHORIZED)
    assert (kind, request) == (b"error", 7)
    got = unjelly(sexp)
    assert isinstance(got, CopiedFailure)
    assert (got.type, got.value) == ("twisted.cred.error.UnauthorizedLogin", "bad")
    assert "twisted.cred.error.LoginFailed" in got.parents
    # and ours round-trips through the same shape
    ours = failure("twisted.cred.error.UnauthorizedLogin", "no", ("a.B", "builtins.Exception"))
    ((_, _, back),) = _decode_all(banana.encode([b"error", 1, jelly(ours)]))
    assert unjelly(back) == ours


def test_vocab_only_in_the_pb_dialect() -> None:
    assert banana.encode(b"answer", pb=False) == b"\x06\x82answer"
    with pytest.raises(banana.BananaError, match="before the pb dialect"):
        banana.Decoder().feed(b"\x1b\x87")
    d = banana.Decoder()
    d.pb = True
    with pytest.raises(banana.BananaError, match="not a word"):
        d.feed(b"\x7f\x87")


def test_limits() -> None:
    over = banana.SIZE_LIMIT + 1
    header = bytes([over & 0x7F, (over >> 7) & 0x7F, over >> 14])
    with pytest.raises(banana.BananaError, match="string declares 655361 bytes"):
        banana.Decoder().feed(header + b"\x82")
    with pytest.raises(banana.BananaError, match="list declares 655361"):
        banana.Decoder().feed(header + b"\x80")
    with pytest.raises(banana.BananaError, match="header longer than 64"):
        banana.Decoder().feed(b"\x01" * 65)
    with pytest.raises(banana.BananaError, match="nested deeper than 64"):
        banana.Decoder().feed(b"\x01\x80" * 65)
    with pytest.raises(banana.BananaError, match="unknown type byte 0x99"):
        banana.Decoder().feed(b"\x01\x99")
    # a list that never closes cannot grow past max_message
    d = banana.Decoder(max_message=10_000)
    with pytest.raises(banana.BananaError, match="over 10000 bytes"):
        d.feed(b"\x7f\x7f\x01\x80" + (b"\x64\x82" + b"x" * 100) * 200)
    with pytest.raises(banana.BananaError, match=r"string of 655361 bytes is over"):
        banana.encode(b"x" * over)


def test_decoded_elements_are_bounded_not_just_wire_bytes() -> None:
    # one-byte empty lists inside a list that never closes: few bytes, many objects
    d = banana.Decoder(max_nodes=1000)
    d.feed(b"\x68\x07\x80" + b"\x80" * 998)  # a list of 1000, then 998 empty lists
    with pytest.raises(banana.BananaError, match="decodes to over 1000 elements"):
        d.feed(b"\x80" * 10)
    # the budget is per message: many small messages pass, and an element split across
    # reads is counted once
    d = banana.Decoder(max_nodes=3)
    assert d.feed(b"\x02\x80\x01\x81\x01\x82" + b"x") == [[1, b"x"]]
    assert d.feed(b"\x02\x80\x01\x81") == []
    assert d.feed(b"\x03\x82ab") == []
    assert d.feed(b"c") == [[1, b"abc"]]
    # a list may not declare more elements than the budget allows
    d = banana.Decoder()
    d.limit(max_message=banana.PRE_LOGIN_MESSAGE, max_nodes=banana.PRE_LOGIN_NODES)
    with pytest.raises(
        banana.BananaError, match="list declares 5000 elements, over the limit 1024"
    ):
        d.feed(b"\x08\x27\x80")


@pytest.mark.parametrize(
    "sexp",
    [
        [b"instance", b"os.system", [b"dictionary"]],
        [b"class", b"os.system"],
        [b"module", b"os"],
        [b"function", b"os.system"],
        [b"some.Copyable", [b"dictionary"]],
        [b"dereference", 9],
        [b"remote", 1],
        [],
        [1, 2],
        [b"unicode", b"\xff"],
        [b"dictionary", [[b"list"], 1]],
    ],
)
def test_unjelly_refuses_what_buildbot_never_sends(sexp: object) -> None:
    with pytest.raises(JellyError):
        unjelly(sexp)


def test_encoding_nests_as_deep_as_decoding_allows() -> None:
    deepest: list[object] = [1]
    for _ in range(banana.MAX_DEPTH - 1):
        deepest = [deepest]
    wire = banana.encode(deepest)  # 64 lists deep: the decoder's limit
    assert _decode_all(wire) == [deepest]
    with pytest.raises(banana.BananaError, match="nested deeper than 64"):
        banana.encode([deepest])
    with pytest.raises(banana.BananaError, match="nested deeper than 64"):
        _decode_all(b"\x01\x80" + wire)

    # subclasses of the banana types travel as their base types
    class Word(bytes):
        pass

    class Count(int):
        pass

    assert banana.encode((Word(b"answer"), Count(7))) == banana.encode([b"answer", 7])
