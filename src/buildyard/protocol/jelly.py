"""Jelly, the value layer of Twisted's Perspective Broker, for the values Buildbot sends.

Jelly turns values into banana lists headed by a type word:

===================  =====================================================
``None``             ``[b"None"]``
``True``/``False``   ``[b"boolean", b"true"|b"false"]``
str                  ``[b"unicode", utf-8 bytes]``
list, tuple, set     ``[b"list"|b"tuple"|b"set", elements...]``
dict                 ``[b"dictionary", [key, value], ...]``
a shared value       ``[b"reference", n, value]`` then ``[b"dereference", n]``
our object           ``[b"remote", id]`` as the sender sees it; ``[b"local", id]`` back
a copied object      ``[b"<qualified class name>", state]`` (PB's Copyable)
===================  =====================================================

ints, floats and bytes are themselves. The only copied object Buildbot's conversation
carries is a failure (``twisted.spread.pb.CopyableFailure``): it decodes to
:class:`CopiedFailure`, and :func:`failure` builds one to send. Every other class name, and
Jelly's ``instance``/``class``/``function``/``module`` forms, are refused: unjellying them is
how Twisted's PB lets a peer build arbitrary objects.

References to PB objects are resolved by a :class:`References` the broker provides.

A ``dereference`` unjellies a fresh copy of the value its ``reference`` named (Buildbot's
values are plain data: nothing depends on their identity), and one message may unjelly to at
most :data:`MAX_WEIGHT` (an element weighs 1, a string 1 more per byte) through at most
:data:`MAX_DEREFERENCE_DEPTH` nested dereferences: a message that references the same value
over and over would otherwise expand exponentially once copied or stored as JSON.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Protocol

from buildyard.protocol.errors import ProtocolError

COPYABLE_FAILURE = b"twisted.spread.pb.CopyableFailure"
# a message without references weighs at most its wire bytes plus its elements: 16 + 1 MiB
MAX_WEIGHT = 32 * 1024 * 1024
MAX_DEREFERENCE_DEPTH = 32


class JellyError(ProtocolError):
    """A value that cannot be jellied, or a banana list that is not a jellied value."""


@dataclasses.dataclass(frozen=True, slots=True)
class CopiedFailure:
    """A failure from the peer: its exception's qualified class name and message."""

    type: str
    value: str
    # the exception's class and its bases, qualified (``check()`` on the peer matches these)
    parents: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.type}: {self.value}"


class References(Protocol):
    def jelly_local(self, obj: object) -> int | None:
        """The id of ``obj`` if it is one of our PB objects (counted as sent), else None."""

    def jelly_remote(self, obj: object) -> int | None:
        """The peer's id of ``obj`` if it is one of its objects we hold, else None."""

    def unjelly_remote(self, luid: int) -> object:
        """The peer's object ``luid`` (``[b"remote", luid]``)."""

    def unjelly_local(self, luid: int) -> object:
        """Our object ``luid`` handed back (``[b"local", luid]``)."""


def failure(type_name: str, value: str, parents: tuple[str, ...] = ()) -> CopiedFailure:
    return CopiedFailure(type_name, value, parents or (type_name, "builtins.Exception"))


def jelly(obj: Any, refs: References | None = None, *, depth: int = 0) -> Any:
    """``obj`` as a banana-ready structure."""
    if depth > 60:
        raise JellyError("value nested too deeply to send")
    if obj is None:
        return [b"None"]
    if isinstance(obj, bool):
        return [b"boolean", b"true" if obj else b"false"]
    if isinstance(obj, int | float | bytes):
        return obj
    if isinstance(obj, str):
        return [b"unicode", obj.encode("utf-8")]
    if isinstance(obj, list | tuple | set | frozenset):
        head = {list: b"list", tuple: b"tuple"}.get(type(obj), b"set")
        if isinstance(obj, set | frozenset):
            head = b"set"
        return [head, *(jelly(x, refs, depth=depth + 1) for x in obj)]
    if isinstance(obj, Mapping):
        return [
            b"dictionary",
            *(
                [jelly(k, refs, depth=depth + 1), jelly(v, refs, depth=depth + 1)]
                for k, v in obj.items()
            ),
        ]
    if isinstance(obj, CopiedFailure):
        # the state Twisted's CopyableFailure sends, which its CopiedFailure takes as-is
        state = {
            "type": obj.type.encode("utf-8"),
            "value": obj.value,
            "traceback": "Traceback unavailable\n",
            "parents": list(obj.parents),
            "tb": None,
            "frames": [],
            "stack": [],
            "count": 0,
            "captureVars": False,
            "pickled": 1,
            "unsafeTracebacks": 0,
        }
        return [COPYABLE_FAILURE, jelly(state, refs, depth=depth + 1)]
    if refs is not None:
        luid = refs.jelly_local(obj)
        if luid is not None:
            return [b"remote", luid]
        luid = refs.jelly_remote(obj)
        if luid is not None:
            return [b"local", luid]
    raise JellyError(f"cannot send a {type(obj).__name__} over PB")


def unjelly(sexp: Any, refs: References | None = None) -> Any:
    """A banana-decoded structure as the value it stands for; JellyError if it is none."""
    return _Unjellier(refs).unjelly(sexp)


class _Unjellier:
    def __init__(self, refs: References | None) -> None:
        self.refs = refs
        # reference number -> the jellied value, unjellied afresh at each dereference
        self.shared: dict[int, Any] = {}
        self.weight = 0
        self.dereferences = 0

    def unjelly(self, sexp: Any) -> Any:
        self.weight += 1 + len(sexp) if isinstance(sexp, bytes) else 1
        if self.weight > MAX_WEIGHT:
            raise JellyError(f"the message unjellies to over {MAX_WEIGHT} (elements and bytes)")
        if isinstance(sexp, int | float | bytes):
            return sexp
        if not isinstance(sexp, list) or not sexp or not isinstance(sexp[0], bytes):
            raise JellyError(f"not a jellied value: {_short(sexp)}")
        head, body = sexp[0], sexp[1:]
        if head == b"None" and not body:
            return None
        if head == b"boolean" and body in ([b"true"], [b"false"]):
            return body == [b"true"]
        if head == b"unicode" and len(body) == 1 and isinstance(body[0], bytes):
            try:
                return body[0].decode("utf-8")
            except UnicodeDecodeError as exc:
                raise JellyError(f"unicode that is not utf-8: {exc}") from None
        if head == b"list":
            return [self.unjelly(x) for x in body]
        if head == b"tuple":
            return tuple(self.unjelly(x) for x in body)
        if head in (b"set", b"frozenset"):
            items = [self.unjelly(x) for x in body]
            try:
                return set(items) if head == b"set" else frozenset(items)
            except TypeError as exc:
                raise JellyError(f"set of unhashable values: {exc}") from None
        if head == b"dictionary":
            result: dict[Any, Any] = {}
            for pair in body:
                if not isinstance(pair, list) or len(pair) != 2:
                    raise JellyError("dictionary entry is not a [key, value] pair")
                key = self.unjelly(pair[0])
                try:
                    result[key] = self.unjelly(pair[1])
                except TypeError as exc:
                    raise JellyError(f"unhashable dictionary key: {exc}") from None
            return result
        if head in (b"reference", b"dereference") and body and isinstance(body[0], int):
            return self._shared(head, body)
        if head in (b"remote", b"local") and len(body) == 1 and isinstance(body[0], int):
            if self.refs is None:
                raise JellyError("a PB reference where none may be")
            if head == b"remote":
                return self.refs.unjelly_remote(body[0])
            return self.refs.unjelly_local(body[0])
        if head == COPYABLE_FAILURE and len(body) == 1:
            state = self.unjelly(body[0])
            if not isinstance(state, dict):
                raise JellyError("failure state is not a dictionary")
            type_name = state.get("type")
            if isinstance(type_name, bytes):
                type_name = type_name.decode("utf-8", "replace")
            parents = state.get("parents")
            return CopiedFailure(
                str(type_name),
                str(state.get("value")),
                tuple(str(p) for p in parents) if isinstance(parents, list | tuple) else (),
            )
        raise JellyError(f"unsupported jelly type {head[:80]!r}")

    def _shared(self, head: bytes, body: list[Any]) -> Any:
        if head == b"reference" and len(body) == 2:
            value = self.unjelly(body[1])
            self.shared[body[0]] = body[1]
            return value
        if head == b"dereference" and len(body) == 1:
            if body[0] not in self.shared:
                # a value that contains itself: Buildbot's messages never do
                raise JellyError(f"dereference of unknown or unfinished value {body[0]}")
            if self.dereferences >= MAX_DEREFERENCE_DEPTH:
                raise JellyError(f"dereferences nested deeper than {MAX_DEREFERENCE_DEPTH}")
            self.dereferences += 1
            try:
                return self.unjelly(self.shared[body[0]])
            finally:
                self.dereferences -= 1
        raise JellyError(f"unsupported jelly type {head[:80]!r}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
