"""TCP options for the master's end of a worker connection (PB, or msgpack over WebSocket):
the stock worker (Twisted) keeps Nagle's algorithm on.

A worker conversation is many small messages, each answered. Two kernel defaults then stall it
for tens of milliseconds at a time:

* Nagle on the sender: a small segment waits while an earlier one is unacknowledged. asyncio
  turns it off (``TCP_NODELAY``) only on sockets whose ``proto`` is ``IPPROTO_TCP``, which the
  sockets of ``socket.create_server`` (and so the ones they accept) are not:
  :class:`LowLatency` turns it off on ours.
* delayed ACK on the receiver: Linux acknowledges a segment up to 40 ms late when it has no
  data to send back. The stock worker sends the answer to ``startCommand`` and then, when the
  command ends, its updates; with Nagle on its side the updates wait for our ACK of the answer.
  ``TCP_QUICKACK`` sends a pending ACK at once, but Linux clears it again by itself, so the
  reader re-arms it after every read (:meth:`LowLatency.after_read`).
"""

from __future__ import annotations

import socket
from typing import Any, Protocol

_QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux only


class _HasSocket(Protocol):
    """A stream writer or a transport: what holds the socket."""

    def get_extra_info(self, name: str, default: Any = None) -> Any: ...


class LowLatency:
    """Nagle turned off on one connection's TCP socket, and :meth:`after_read` to call after
    each read, which acknowledges what was read at once where the system can (a no-op
    elsewhere, and on sockets that are not TCP)."""

    def __init__(self, writer: _HasSocket) -> None:
        # set when TCP_NODELAY was set on the socket
        self.nodelay = False
        # reads acknowledged at once (TCP_QUICKACK re-armed after them)
        self.quickacks = 0
        self._sock: Any = None
        sock = writer.get_extra_info("socket")
        if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
            return
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            return
        self.nodelay = True
        if _QUICKACK is not None:
            self._sock = sock

    def after_read(self) -> None:
        if self._sock is None:
            return
        try:
            self._sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        except OSError:
            self._sock = None  # closed meanwhile: nothing left to acknowledge
            return
        self.quickacks += 1
