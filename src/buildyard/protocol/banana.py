"""Banana, the byte format under Twisted's Perspective Broker, without Twisted.

An element is a header (a number in base-128 digits, least significant first, each byte below
0x80) followed by one type byte (0x80 or above):

=====  ==========  ======================================================================
0x80   list        the header counts the elements that follow
0x81   int         0 <= n < 2**31
0x82   string      the header counts the bytes that follow
0x83   neg         -2**31 <= n < 0; the header holds -n
0x84   float       no header; 8 bytes of IEEE double, big-endian
0x85   longint     n >= 2**31
0x86   longneg     n < -2**31; the header holds -n
0x87   vocab       the header numbers a word of the ``pb`` dialect's vocabulary
=====  ==========  ======================================================================

A connection starts in the ``none`` dialect (no vocab elements); once both ends agreed on
``pb``, strings in :data:`VOCABULARY` travel as vocab numbers.

:class:`Decoder` takes bytes as they arrive and yields every complete top-level element.
Declared lengths above :data:`SIZE_LIMIT`, headers longer than :data:`PREFIX_LIMIT` bytes and
lists nested deeper than ``max_depth`` are :class:`BananaError` before any of their data is
buffered, one top-level element may take at most ``max_message`` bytes on the wire and decode
to at most ``max_nodes`` elements (an empty list is one byte on the wire but some 60 bytes of
Python), so a peer cannot make us hold more than that.
"""

from __future__ import annotations

import struct
from typing import Any

from buildyard.protocol.errors import ProtocolError

LIST, INT, STRING, NEG, FLOAT, LONGINT, LONGNEG, VOCAB = range(0x80, 0x88)

# Twisted's limits: a string or list may declare at most this many bytes/elements ...
SIZE_LIMIT = 640 * 1024
# ... and a header may be at most this many base-128 digits
PREFIX_LIMIT = 64
# Our own: Buildbot's messages nest a dozen levels at most, and one message (a file chunk
# and its envelope) is well under a megabyte: a list that never closes cannot grow past this
MAX_DEPTH = 64
MAX_MESSAGE = 16 * 1024 * 1024
# the elements one message may decode to (strings and numbers count one each, lists one plus
# their elements): a file chunk is a handful, a worker's update of a few thousand lines some
# thousands; the 16 MiB of one-byte empty lists would be ~1 GB of Python objects
MAX_NODES = MAX_MESSAGE // 16
# before a PB peer logged in: its dialect choice, version and login calls are each under a
# kilobyte, and nobody vouches for it yet
PRE_LOGIN_MESSAGE = 64 * 1024
PRE_LOGIN_NODES = 1024

_SMALLEST_INT = -(2**31)
_LARGEST_INT = 2**31 - 1
_LARGEST_LONG = 2 ** (PREFIX_LIMIT * 7) - 1

# The ``pb`` dialect's words and their numbers, as Twisted defines them.
VOCABULARY: dict[bytes, int] = {
    word: number
    for number, word in enumerate(
        (
            b"None",
            b"class",
            b"dereference",
            b"reference",
            b"dictionary",
            b"function",
            b"instance",
            b"list",
            b"module",
            b"persistent",
            b"tuple",
            b"unpersistable",
            b"copy",
            b"cache",
            b"cached",
            b"remote",
            b"local",
            b"lcache",
            b"version",
            b"login",
            b"password",
            b"challenge",
            b"logged_in",
            b"not_logged_in",
            b"cachemessage",
            b"message",
            b"answer",
            b"error",
            b"decref",
            b"decache",
            b"uncache",
        ),
        start=1,
    )
}
_WORDS = {number: word for word, number in VOCABULARY.items()}

_DOUBLE = struct.Struct("!d")


class BananaError(ProtocolError):
    """The peer sent bytes that are not banana, or over one of the limits."""


def _header(n: int, out: bytearray) -> None:
    while True:
        out.append(n & 0x7F)
        n >>= 7
        if not n:
            return


def encode(obj: Any, *, pb: bool = True) -> bytes:
    """One element as bytes; ``pb``: the dialect's words go as vocab numbers.

    Only lists/tuples, ints, floats and bytes are banana; anything else is a TypeError
    (jelly turns richer values into these first)."""
    out = bytearray()
    _encode(obj, out, VOCABULARY if pb else _NO_WORDS, 0)
    return bytes(out)


_NO_WORDS: dict[bytes, int] = {}


def _encode(item: Any, out: bytearray, words: dict[bytes, int], depth: int) -> None:
    """``item`` appended to ``out``. Recursive: nesting is bounded by :data:`MAX_DEPTH`
    (checked before each level), far below Python's recursion limit. The common shapes
    (bytes, lists, small ints, one-byte headers) take the first branches."""
    kind = type(item)
    if kind is bytes:
        number = words.get(item)
        if number is not None:
            _header(number, out)
            out.append(VOCAB)
            return
        size = len(item)
        if size < 0x80:
            out.append(size)
        elif size > SIZE_LIMIT:
            raise BananaError(f"string of {size} bytes is over {SIZE_LIMIT}")
        else:
            _header(size, out)
        out.append(STRING)
        out += item
    elif kind is list or kind is tuple:
        if depth >= MAX_DEPTH:
            raise BananaError(f"lists nested deeper than {MAX_DEPTH}")
        size = len(item)
        if size < 0x80:
            out.append(size)
        elif size > SIZE_LIMIT:
            raise BananaError(f"list of {size} elements is over {SIZE_LIMIT}")
        else:
            _header(size, out)
        out.append(LIST)
        for element in item:
            # short strings and vocabulary words, most of what jelly makes, inline
            if type(element) is bytes:
                number = words.get(element)
                if number is not None:
                    out.append(number)  # every word's number is below 0x80
                    out.append(VOCAB)
                    continue
                if len(element) < 0x80:
                    out.append(len(element))
                    out.append(STRING)
                    out += element
                    continue
            _encode(element, out, words, depth + 1)
    elif kind is int and 0 <= item < 0x80:
        out.append(item)
        out.append(INT)
    else:
        _encode_other(item, out, words, depth)


def _encode_other(item: Any, out: bytearray, words: dict[bytes, int], depth: int) -> None:
    """The rarer values, and subclasses of the banana types."""
    if isinstance(item, bytes):
        _encode(bytes(item), out, words, depth)
    elif isinstance(item, list | tuple):
        _encode(list(item), out, words, depth)
    elif isinstance(item, bool):
        raise TypeError("banana has no booleans (jelly them)")
    elif isinstance(item, int):
        if item > _LARGEST_LONG or -item > _LARGEST_LONG:
            raise BananaError("int is too large for banana")
        if item < _SMALLEST_INT:
            _header(-item, out)
            out.append(LONGNEG)
        elif item < 0:
            _header(-item, out)
            out.append(NEG)
        elif item <= _LARGEST_INT:
            _header(item, out)
            out.append(INT)
        else:
            _header(item, out)
            out.append(LONGINT)
    elif isinstance(item, float):
        out.append(FLOAT)
        out += _DOUBLE.pack(item)
    else:
        raise TypeError(f"banana cannot carry {type(item).__name__}")


class Decoder:
    """Incremental banana decoder for one connection.

    :meth:`feed` takes the bytes of one read and returns the top-level elements it completed
    (lists as Python lists, strings as bytes, numbers as int/float). ``pb`` is set once the
    ``pb`` dialect was agreed; before that a vocab element is an error, and :meth:`feed`
    returns after one top-level element (the caller sets ``pb`` and calls ``feed(b"")`` for
    the rest).
    """

    def __init__(
        self,
        *,
        size_limit: int = SIZE_LIMIT,
        max_depth: int = MAX_DEPTH,
        max_message: int = MAX_MESSAGE,
        max_nodes: int = MAX_NODES,
    ) -> None:
        self.size_limit = size_limit
        self.max_depth = max_depth
        self.max_message = max_message
        self.max_nodes = max_nodes
        # elements of the top-level element being decoded so far
        self._message_nodes = 0
        # wire bytes of the top-level element being decoded, before this feed's buffer
        self._message_bytes = 0
        self.pb = False
        self._buffer = bytearray()
        # the lists being filled: [declared length, elements so far]
        self._lists: list[tuple[int, list[Any]]] = []

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of an element."""
        return len(self._buffer)

    def limit(self, *, max_message: int, max_nodes: int) -> None:
        """New per-message limits (tighter before a PB peer logged in), from the next feed."""
        self.max_message, self.max_nodes = max_message, max_nodes

    def feed(self, data: bytes) -> list[Any]:  # noqa: PLR0915 (one flat loop, for speed)
        buf: bytes | bytearray
        if self._buffer:
            self._buffer += data
            buf = self._buffer
        else:  # the common case: no partial element left from the last read
            buf = data
        done: list[Any] = []
        pos = 0
        end = len(buf)
        lists = self._lists
        nodes = self._message_nodes
        max_nodes = self.max_nodes
        pb = self.pb
        while pos < end and (pb or not done):
            # before the dialect is agreed, one element at a time: the next may be vocab
            # the header: digits below 0x80 up to the type byte
            start = pos
            if pos + 1 < end and buf[pos] < 0x80 and buf[pos + 1] >= 0x80:
                n = buf[pos]  # a one-digit header, by far the most common
                pos += 1
            else:
                while pos < end and buf[pos] < 0x80:
                    pos += 1
                    if pos - start > PREFIX_LIMIT:
                        raise BananaError(f"header longer than {PREFIX_LIMIT} bytes")
                if pos == end:
                    pos = start
                    break
                n = 0
                for shift, digit in enumerate(buf[start:pos]):
                    n |= digit << (7 * shift)
            kind = buf[pos]
            pos += 1
            item: Any
            if kind == STRING:
                if n > self.size_limit:
                    raise BananaError(
                        f"string declares {n} bytes, over the limit {self.size_limit}"
                    )
                if end - pos < n:
                    pos = start
                    break
                item = bytes(buf[pos : pos + n])
                pos += n
            elif kind == LIST:
                limit = min(self.size_limit, max_nodes)
                if n > limit:
                    raise BananaError(f"list declares {n} elements, over the limit {limit}")
                if len(lists) >= self.max_depth:
                    raise BananaError(f"lists nested deeper than {self.max_depth}")
                if n:
                    nodes += 1
                    if nodes > max_nodes:
                        raise BananaError(f"one message decodes to over {max_nodes} elements")
                    lists.append((n, []))
                    continue
                item = []
            elif kind == VOCAB:
                if not pb:
                    raise BananaError("vocab element before the pb dialect was agreed")
                word = _WORDS.get(n)
                if word is None:
                    raise BananaError(f"vocab number {n} is not a word of the pb dialect")
                item = word
            elif kind in (INT, LONGINT):
                item = n
            elif kind in (NEG, LONGNEG):
                item = -n
            elif kind == FLOAT:
                if end - pos < 8:
                    pos = start
                    break
                (item,) = _DOUBLE.unpack_from(buf, pos)
                pos += 8
            else:
                raise BananaError(f"unknown type byte 0x{kind:02x}")
            nodes += 1
            if nodes > max_nodes:
                raise BananaError(f"one message decodes to over {max_nodes} elements")
            # the element completes its list, which may complete the enclosing one, ...
            while True:
                if not lists:
                    done.append(item)
                    self._message_bytes = -pos
                    nodes = 0
                    break
                length, items = lists[-1]
                items.append(item)
                if len(items) < length:
                    break
                lists.pop()
                item = items
        self._message_nodes = nodes
        if lists and self._message_bytes + pos > self.max_message:
            raise BananaError(f"one message is over {self.max_message} bytes")
        self._message_bytes += pos
        if buf is self._buffer:
            del self._buffer[:pos]
        elif pos < end:
            self._buffer = bytearray(buf[pos:])
        if not lists:
            self._message_bytes = 0
        return done
