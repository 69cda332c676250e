"""Limits on the connections of the master's listeners (the web port and the worker port).

A connection costs an open file for as long as it lasts, and nothing makes a client that
connects and then stays silent (or sends its request a byte a minute) go away by itself.
:class:`ConnectionGuard` bounds what such clients can hold. Each connection of a listener is,
at any time, either *in a request* (a handler runs: a REST call, a live-event stream, an
attached worker) or *pending* (it is still sending its first request head, or idles between
keep-alive requests). A pending connection is closed

- when it has not sent a complete request head ``header_timeout`` seconds after connecting;
- when it has idled ``idle_timeout`` seconds after its last response;
- at once, the longest-pending first, when a listener holds more than ``max_pending`` of them;
- the older half of each listener's pending connections, when the process runs out of open
  files (EMFILE on accept), so the next accept can succeed.

Those closings are logged as counts, once per :data:`LOG_INTERVAL` at most, never one line per
connection; so is a failed accept (:func:`install_accept_error_handler`), which asyncio would
otherwise log with a traceback for every retry.

:func:`raise_open_file_limit` raises the process's soft RLIMIT_NOFILE to its hard limit, as
servers do at start: the default soft limit (often 1024) is far below what the kernel allows.

A listener serves its aiohttp application through :class:`GuardedSite` (instead of
``web.TCPSite``) and puts :meth:`ConnectionGuard.middleware` first in the application's
middlewares: the site sees connections open and close, the middleware sees requests begin and
end. Everything runs in the event loop's callbacks: the guard owns no task.

Imports nothing from buildyard outside this package.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

# the configured limits and the process-wide parts live in .limits (no aiohttp there); their
# names stay importable from here
from buildyard.common.limits import (
    BODY_TIMEOUT,
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_PENDING,
    GUARDS,
    LIMIT_KEYS,
    LOG_INTERVAL,
    ConnectionLimits,
    Throttled,
    install_accept_error_handler,
    raise_open_file_limit,
    read_limits,
)

__all__ = [
    "BODY_TIMEOUT",
    "DEFAULT_HEADER_TIMEOUT",
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_MAX_PENDING",
    "LIMIT_KEYS",
    "LOG_INTERVAL",
    "ConnectionGuard",
    "ConnectionLimits",
    "GuardedSite",
    "ServerLog",
    "Throttled",
    "install_accept_error_handler",
    "raise_open_file_limit",
    "read_limits",
]

log = structlog.get_logger(__name__)

# -- one listener ----------------------------------------------------------------------------------


class _Connection(asyncio.Protocol):
    """Stands between the transport and aiohttp's protocol, and tells the guard what happens."""

    def __init__(self, inner: asyncio.Protocol, guard: ConnectionGuard) -> None:
        self.inner = inner
        self.guard = guard
        self.transport: asyncio.Transport | None = None
        self.requests = 0  # handlers running (pipelining aside: 0 or 1)
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.guard.opened(self)
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.closed(self)
        self.inner.connection_lost(exc)


class ConnectionGuard:
    """The limits of one listener: see the module. ``name`` names it in the log."""

    def __init__(self, limits: ConnectionLimits, *, name: str) -> None:
        self.limits = limits
        self.name = name
        self._cap = limits.pending_cap()
        # pending connections, the longest-pending first
        self._pending: collections.OrderedDict[_Connection, None] = collections.OrderedDict()
        self._by_transport: dict[asyncio.BaseTransport, _Connection] = {}
        self._closed_counts: collections.Counter[str] = collections.Counter()
        self._closings = Throttled("connections_closed")
        GUARDS.add(self)

    def configure(self, limits: ConnectionLimits) -> None:
        """New limits, for the connections that open or go pending from now on."""
        self.limits = limits
        self._cap = limits.pending_cap()

    def protocol_factory(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], Any]:
        return lambda: _Connection(inner(), self)

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        conn = self._by_transport.get(request.transport) if request.transport else None
        if conn is None:
            return await handler(request)
        self._begin(conn)
        try:
            return await handler(request)
        finally:
            self._end(conn)

    # -- what the connections tell -----------------------------------------------------------

    def opened(self, conn: _Connection) -> None:
        assert conn.transport is not None
        self._by_transport[conn.transport] = conn
        self._make_pending(conn, self.limits.header_timeout)

    def closed(self, conn: _Connection) -> None:
        if conn.transport is not None:
            self._by_transport.pop(conn.transport, None)
        self._pending.pop(conn, None)
        if conn.timer is not None:
            conn.timer.cancel()
            conn.timer = None

    def _begin(self, conn: _Connection) -> None:
        conn.requests += 1
        self._pending.pop(conn, None)
        if conn.timer is not None:
            conn.timer.cancel()
            conn.timer = None

    def _end(self, conn: _Connection) -> None:
        conn.requests -= 1
        if conn.requests == 0 and conn.transport is not None and not conn.transport.is_closing():
            self._make_pending(conn, self.limits.idle_timeout)

    def _make_pending(self, conn: _Connection, timeout: float) -> None:
        self._pending[conn] = None
        self._pending.move_to_end(conn)
        loop = asyncio.get_running_loop()
        conn.timer = loop.call_later(timeout, self._expired, conn)
        while len(self._pending) > self._cap:
            oldest = next(iter(self._pending))
            self._close(oldest, "over_max_pending")

    def _expired(self, conn: _Connection) -> None:
        conn.timer = None
        transport = conn.transport
        if conn not in self._pending or transport is None:
            return
        if transport.get_write_buffer_size() > 0:  # the last response is still on its way
            conn.timer = asyncio.get_running_loop().call_later(
                self.limits.idle_timeout, self._expired, conn
            )
            return
        self._close(conn, "timeout")

    def _close(self, conn: _Connection, why: str) -> None:
        self.closed(conn)
        if conn.transport is not None:
            conn.transport.abort()  # an RST, and the file is free now
        self._closed_counts[why] += 1
        self._closings.note(listener=self.name, why=why, **self.statistics())

    def shed_half(self) -> int:
        """Close the older half (at least one) of the pending connections; returns how many."""
        count = (len(self._pending) + 1) // 2
        for conn in list(self._pending)[:count]:
            self._close(conn, "out_of_files")
        return count

    def statistics(self) -> dict[str, int]:
        return {
            "connections": len(self._by_transport),
            "pending": len(self._pending),
            "max_pending": self._cap,
            **{f"closed_{why}": n for why, n in self._closed_counts.items()},
        }


class GuardedSite(web.BaseSite):
    """``web.TCPSite`` (or, given ``sock``, ``web.SockSite``) whose connections go through
    ``guard``."""

    def __init__(
        self,
        runner: web.BaseRunner,
        *,
        guard: ConnectionGuard,
        host: str | None = None,
        port: int = 0,
        sock: socket.socket | None = None,
        ssl_context: ssl.SSLContext | None = None,
        backlog: int | None = None,
    ) -> None:
        super().__init__(
            runner, ssl_context=ssl_context, **({} if backlog is None else {"backlog": backlog})
        )
        self._host = host
        self._port = port
        self._sock = sock
        self._guard = guard

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context is not None else "http"
        if self._sock is not None:
            address = self._sock.getsockname()
            if isinstance(address, str):  # a unix socket's path
                return f"{scheme}://unix:{address}:"
            return f"{scheme}://{address[0]}:{address[1]}"
        return f"{scheme}://{self._host or '0.0.0.0'}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        factory = self._guard.protocol_factory(server)
        loop = asyncio.get_running_loop()
        if self._sock is not None:
            self._server = await loop.create_server(
                factory, sock=self._sock, backlog=self._backlog, ssl=self._ssl_context
            )
        else:
            self._server = await loop.create_server(
                factory, self._host, self._port, backlog=self._backlog, ssl=self._ssl_context
            )


# -- aiohttp's server log -----------------------------------------------------------------


class ServerLog(logging.Logger):
    """The ``logger`` for aiohttp's request handlers: a malformed request (aiohttp answers 400)
    is one line naming the peer and the fault; anything else keeps its traceback."""

    def __init__(self, listener: str) -> None:
        super().__init__(f"buildyard.http.{listener}")
        self._listener = listener

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        if isinstance(exc_info, HttpProcessingError):
            peer = args[0] if args else None
            log.info(
                "http_request_malformed", listener=self._listener, peer=peer, fault=str(exc_info)
            )
            return
        log.error(
            "http_request_failed",
            listener=self._listener,
            message=str(msg) % args if args else str(msg),
            exc_info=exc_info,
        )

    def debug(self, msg: object, *args: object, **kwargs: Any) -> None:
        pass
