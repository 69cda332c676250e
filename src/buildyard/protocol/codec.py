"""msgpack_experimental_v7 framing: one binary WebSocket frame = one msgpack map.

Requests carry ``op`` (not "response") and ``seq_number``; responses carry ``op="response"``,
the request's ``seq_number`` and ``result``, plus ``is_exception: true`` on failure. Every map
key we send is a str: the stock worker unpacks with strict_map_key and drops anything else.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgpack

from buildyard.protocol.errors import ProtocolError

# A frame bigger than this is a fault: file chunks are at most a few hundred KiB.
MAX_FRAME = 16 * 1024 * 1024

Message = dict[str, Any]


def encode(message: Mapping[str, Any]) -> bytes:
    return msgpack.packb(message, use_bin_type=True)  # type: ignore[no-any-return]


def decode(frame: bytes) -> Message:
    """One frame -> one message; ProtocolError naming what is wrong otherwise."""
    if len(frame) > MAX_FRAME:
        raise ProtocolError(f"frame of {len(frame)} bytes is over the {MAX_FRAME}-byte limit")
    try:
        message = msgpack.unpackb(frame, raw=False, strict_map_key=True)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise ProtocolError(f"frame is not one msgpack message: {exc}") from exc
    if not isinstance(message, dict):
        raise ProtocolError(f"message is a {type(message).__name__}, not a map")
    op = message.get("op")
    seq = message.get("seq_number")
    if not isinstance(op, str) or not isinstance(seq, int) or isinstance(seq, bool):
        raise ProtocolError("message lacks a string 'op' or an integer 'seq_number'")
    return message


def response(seq_number: int, result: Any = None, *, error: str | None = None) -> Message:
    if error is not None:
        return {"op": "response", "seq_number": seq_number, "result": error, "is_exception": True}
    return {"op": "response", "seq_number": seq_number, "result": result}
