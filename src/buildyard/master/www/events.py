"""The data API's events for browsers: ``/ws`` (WebSocket) and ``/sse`` (server-sent events).

docs/rest-api.md, "Live events". A client subscribes to paths, routing-key patterns split on ``/``
with ``*`` for any one segment (``builds/*/*``, ``builders/3/builds/*/*``; a pattern matches
keys of its own length only, as in Buildbot nothing else is translated), and gets each matching
event as ``{"k": "builds/12/finished", "m": {...}}``.

``/ws`` takes JSON frames, each with the client's ``_id``: ``startConsuming`` and
``stopConsuming`` with a ``path``, and ``ping``. Every command is answered with a ``code``
(events never have one); a bad frame is answered with an error and changes nothing else, so the
socket and its other subscriptions go on. Buildbot's UI waits for the 200 of
``startConsuming`` before it reads the matching REST path, so the answer comes only once the
subscription is live.

``/sse/listen[/<path>]`` (or ``/sse[/<path>]``) streams ``event: handshake`` with the stream's
id, then ``event: event`` with ``{"key": [...], "message": {...}}``; ``/sse/add/<id>/<path>``
and ``/sse/remove/<id>/<path>`` change what it follows.

Ownership: each socket or stream's subscriptions are drained by tasks of a TaskGroup that its
request handler owns; when the client goes (or the handler is cancelled) they are cancelled and
their MQ subscriptions closed. When the web server stops, every socket and stream is closed
actively (the server would otherwise wait for their handlers), each within
:data:`CLOSE_TIMEOUT` seconds, after which its connection is dropped.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import datetime
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import WSCloseCode, WSMsgType, web

from buildyard.common.connections import Throttled
from buildyard.master.mq.base import Body, Key, MessageQueue, Pattern, Subscription

log = structlog.get_logger(__name__)

MQ: web.AppKey[MessageQueue] = web.AppKey("mq")
_SOCKETS: web.AppKey[set[web.WebSocketResponse]] = web.AppKey("ws_sockets")
_STREAMS: web.AppKey[dict[str, _Stream]] = web.AppKey("sse_streams")
_REFUSALS: web.AppKey[Throttled] = web.AppKey("stream_refusals")
# [how many sockets and streams are between the cap's check and their registration]
_OPENING: web.AppKey[list[int]] = web.AppKey("streams_opening")

# how long a closing socket waits for the client's close frame, and a stopping server for a
# socket or stream to end before it drops the connection
CLOSE_TIMEOUT = 1.0
# a WebSocket ping this often; a client that does not answer within half of it is dropped
WS_HEARTBEAT = 30.0
# an SSE comment line this often: a client that went away is noticed when the write fails
SSE_KEEPALIVE = 15.0
# an SSE write that cannot go out this long (the client stopped reading) ends the stream
SSE_WRITE_TIMEOUT = 60.0
# the paths one socket or stream may follow at once (each is an MQ subscription and a task;
# Buildbot's UI follows a few dozen), and the largest /ws frame a client may send (commands
# are a few hundred bytes; aiohttp's default would buffer 4 MiB per socket)
MAX_SUBSCRIPTIONS = 1000
# the sockets and streams open at once on one web server (each holds a connection, a file
# descriptor and a task; Buildbot has no limit): a client beyond it gets 503 before any upgrade,
# so a flood of idle sockets cannot take the descriptors the workers and the database need
MAX_STREAMS = 2000
# a refused stream is logged at most once in this many seconds (with the count since)
REFUSAL_LOG_INTERVAL = 60.0
MAX_WS_FRAME = 64 * 1024


def parse_path(path: str) -> Pattern:
    """Buildbot's reading of a subscription path: ``builds/*/new`` -> ("builds", None, "new").

    Nothing is rejected: a path no key can match (``builds//x``) subscribes to nothing."""
    return tuple(None if part == "*" else part for part in path.split("/"))


def _json_default(value: object) -> Any:
    # as Buildbot's encoder: datetimes as UNIX epoch seconds, anything else unknown as null
    if isinstance(value, datetime.datetime):
        return calendar.timegm(value.utctimetuple())
    return None


Send = Callable[[Key, Body], Awaitable[None]]


class _Consumer:
    """One client's subscriptions by path, each drained into ``send`` by a task of ``tasks``
    (the TaskGroup of the request handler that serves the client)."""

    def __init__(self, mq: MessageQueue, send: Send, tasks: asyncio.TaskGroup) -> None:
        self._mq = mq
        self._send = send
        self._group = tasks
        self._followed: dict[str, tuple[Subscription, asyncio.Task[None]]] = {}

    def start(self, path: str, pattern: Pattern) -> bool:
        """Follow ``path`` (again: nothing changes); the subscription is live on return. False
        (nothing done) when the client already follows :data:`MAX_SUBSCRIPTIONS` paths."""
        if path in self._followed:
            return True
        if len(self._followed) >= MAX_SUBSCRIPTIONS:
            return False
        sub = self._mq.subscribe(pattern)
        self._followed[path] = (sub, self._group.create_task(self._pump(path, sub)))
        return True

    def stop(self, path: str) -> bool:
        """Stop following ``path`` (no event is taken for it after this); False if it was not
        followed."""
        followed = self._followed.pop(path, None)
        if followed is None:
            return False
        self._end(*followed)
        return True

    def close(self) -> None:
        """Stop following everything (the TaskGroup's owner waits for the cancelled tasks)."""
        for followed in self._followed.values():
            self._end(*followed)
        self._followed.clear()

    @staticmethod
    def _end(sub: Subscription, task: asyncio.Task[None]) -> None:
        # closed here, not only by the task: a task cancelled before it ever ran would leave
        # its subscription in the MQ, filling up
        sub.close()
        task.cancel()

    async def _pump(self, path: str, sub: Subscription) -> None:
        async with sub:
            async for key, body in sub:
                try:
                    await self._send(key, body)
                except (TypeError, ValueError):
                    # a body JSON cannot hold: that event is lost, not the subscription
                    log.exception("event_not_sent", path=path, key="/".join(key))
                except (ConnectionError, RuntimeError):
                    return  # the client is gone; its handler ends the rest


# -- /ws --------------------------------------------------------------------------------------


def _reply(ident: Any, code: int, **fields: Any) -> dict[str, Any]:
    return {**fields, "code": code, "_id": ident}


# what each command takes besides "cmd" (and "type", which Buildbot ignores)
_ARGUMENTS = {
    "startConsuming": {"path", "_id"},
    "stopConsuming": {"path", "_id"},
    "ping": {"_id"},
}


def _answer(frame: str | bytes, consumer: _Consumer) -> dict[str, Any]:
    """The reply to one client frame (subscriptions changed as it asks)."""
    try:
        message = json.loads(frame)
    except ValueError as exc:  # UnicodeDecodeError too
        return _reply(None, 400, error=f"invalid JSON in websocket frame: {exc}")
    except RecursionError:  # the parser recurses once per level of nesting
        return _reply(None, 400, error="invalid JSON in websocket frame: nested too deeply")
    if not isinstance(message, dict):
        return _reply(None, 400, error="a websocket frame must be a JSON object")
    ident = message.get("_id")
    if ident is None and message.get("type") is None:
        return _reply(None, 400, error="no '_id' or 'type' in websocket frame")
    cmd = message.get("cmd")
    if cmd is None:
        return _reply(None, 400, error="no 'cmd' in websocket frame")
    if not isinstance(cmd, str) or cmd not in _ARGUMENTS:
        return _reply(ident, 404, error=f"no such command type '{cmd}'")
    given = {k for k, v in message.items() if k not in ("cmd", "type")}
    expected = _ARGUMENTS[cmd]
    if given != expected:
        missing, extra = sorted(expected - given), sorted(given - expected)
        problem = "; ".join(
            [*(f"missing {name!r}" for name in missing), *(f"unexpected {x!r}" for x in extra)]
        )
        return _reply(ident, 400, error=f"Invalid method argument '{cmd}: {problem}'")
    if cmd == "ping":
        return _reply(ident, 200, msg="pong")
    path = message["path"]
    if not isinstance(path, str):
        return _reply(ident, 400, error=f"invalid path format '{path}'")
    if cmd == "startConsuming":
        if not consumer.start(path, parse_path(path)):
            return _reply(ident, 400, error=f"too many subscriptions (at most {MAX_SUBSCRIPTIONS})")
    elif not consumer.stop(path):
        return _reply(ident, 400, error=f"path was not consumed '{path}'")
    return _reply(ident, 200, msg="OK")


def _ws_json(message: dict[str, Any]) -> str:
    return json.dumps(message, default=_json_default, separators=(",", ":"))


def _open_streams(app: web.Application) -> int:
    """Sockets and streams open, counting those still being opened (their handshake awaits
    its write: concurrent ones must not all pass the check)."""
    return len(app[_SOCKETS]) + len(app[_STREAMS]) + app[_OPENING][0]


def _refuse_stream(request: web.Request, kind: str) -> web.Response:
    """503 for a socket or stream over :data:`MAX_STREAMS`, logged at most once a minute."""
    request.app[_REFUSALS].note(
        kind=kind, why=f"{MAX_STREAMS} sockets and streams open already", peer=request.remote
    )
    return web.Response(
        status=503,
        text=f"too many open event streams (at most {MAX_STREAMS})",
        headers={"Retry-After": "30"},
    )


async def websocket(request: web.Request) -> web.StreamResponse:
    if _open_streams(request.app) >= MAX_STREAMS:
        return _refuse_stream(request, "ws")
    ws = web.WebSocketResponse(
        heartbeat=WS_HEARTBEAT, timeout=CLOSE_TIMEOUT, max_msg_size=MAX_WS_FRAME
    )
    sockets = request.app[_SOCKETS]
    opening = request.app[_OPENING]
    opening[0] += 1
    try:
        await ws.prepare(request)
        sockets.add(ws)
    finally:
        opening[0] -= 1

    async def send(key: Key, body: Body) -> None:
        await ws.send_str(_ws_json({"k": "/".join(key), "m": body}))

    try:
        async with asyncio.TaskGroup() as tasks:
            consumer = _Consumer(request.app[MQ], send, tasks)
            try:
                async for msg in ws:
                    if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                        continue
                    try:
                        reply = _answer(msg.data, consumer)
                    except Exception as exc:
                        log.exception("ws_command_failed")
                        reply = _reply(None, 500, error=f"Internal Error '{exc}'")
                    await ws.send_str(_ws_json(reply))
            except (ConnectionError, RuntimeError):
                pass  # the client went away while we answered
            finally:
                consumer.close()
    finally:
        sockets.discard(ws)
    return ws


# -- /sse -------------------------------------------------------------------------------------


class _Stream:
    def __init__(self, request: web.Request, response: web.StreamResponse) -> None:
        self._request = request
        self._response = response
        self._lock = asyncio.Lock()
        # set to end the stream (the server stops, or the client is gone)
        self.done = asyncio.Event()
        # set once the handler has let go of the stream
        self.ended = asyncio.Event()
        self.consumer: _Consumer | None = None

    async def send(self, key: Key, body: Body) -> None:
        message = json.dumps({"key": list(key), "message": body}, default=_json_default)
        await self.write("event", message)

    async def write(self, name: str, data: str) -> None:
        await self.raw(f"event: {name}\ndata: {data}\n\n")

    async def raw(self, text: str) -> None:
        try:
            async with asyncio.timeout(SSE_WRITE_TIMEOUT), self._lock:
                await self._response.write(text.encode())
        except TimeoutError:
            # a client that reads nothing: its events would pile up in the MQ without end
            self.done.set()
            self.abort()
            raise ConnectionError(f"the client read nothing for {SSE_WRITE_TIMEOUT:g} s") from None
        except (ConnectionError, RuntimeError):
            self.done.set()
            raise

    def abort(self) -> None:
        """Drop the connection (a write stuck on a client that does not read fails)."""
        if self._request.transport is not None:
            self._request.transport.close()


def _sse_segments(tail: str) -> list[str]:
    parts = tail.split("/") if tail else []
    if parts and parts[-1] == "":
        parts.pop()
    return parts


def _text(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text)


async def sse(request: web.Request) -> web.StreamResponse:
    """``/sse[/listen|add|remove][/...]``, Buildbot's one resource for all three."""
    parts = _sse_segments(request.match_info.get("tail", ""))
    command = "listen"
    if parts and parts[0] in ("listen", "add", "remove"):
        command, parts = parts[0], parts[1:]
    if command == "listen":
        return await _listen(request, "/".join(parts), bool(parts))
    if not parts:
        return _text(400, "need uuid")
    stream = request.app[_STREAMS].get(parts[0])
    if stream is None or stream.consumer is None:
        return _text(400, "unknown uuid")
    path = "/".join(parts[1:])
    if command == "add":
        if not stream.consumer.start(path, parse_path(path) if parts[1:] else ()):
            return _text(400, f"too many subscriptions (at most {MAX_SUBSCRIPTIONS})")
    elif not stream.consumer.stop(path):
        return _text(404, "consumer is not listening to this event")
    return _text(200, "ok")


async def _listen(request: web.Request, path: str, follow: bool) -> web.StreamResponse:
    if _open_streams(request.app) >= MAX_STREAMS:
        return _refuse_stream(request, "sse")
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    ident = str(uuid.uuid4())
    stream = _Stream(request, response)
    streams = request.app[_STREAMS]
    opening = request.app[_OPENING]
    opening[0] += 1
    try:
        await response.prepare(request)
        streams[ident] = stream
    finally:
        opening[0] -= 1
    try:
        async with asyncio.TaskGroup() as tasks:
            stream.consumer = _Consumer(request.app[MQ], stream.send, tasks)
            try:
                if follow:
                    _ = stream.consumer.start(path, parse_path(path))  # the first: never refused
                await stream.write("handshake", ident)
                # the stream lasts until the client goes (a write fails) or the server stops
                while not stream.done.is_set():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(SSE_KEEPALIVE):
                            await stream.done.wait()
                    if not stream.done.is_set():
                        await stream.raw(": keepalive\n\n")
            except (ConnectionError, RuntimeError):
                pass  # the client went away
            finally:
                streams.pop(ident, None)
                stream.consumer.close()
    finally:
        stream.ended.set()
    return response


# -- wiring -----------------------------------------------------------------------------------


async def _close_socket(ws: web.WebSocketResponse) -> None:
    # a timeout makes aiohttp drop the connection (a client that does not read)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(CLOSE_TIMEOUT * 2):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")


async def _end_stream(stream: _Stream) -> None:
    stream.done.set()
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT):
            await stream.ended.wait()
    except TimeoutError:
        stream.abort()


async def _close_all(app: web.Application) -> None:
    """on_shutdown: end every socket and stream, so the server has no handler to wait for."""
    sockets: set[web.WebSocketResponse] = app[_SOCKETS]
    async with asyncio.TaskGroup() as tasks:
        for ws in list(sockets):
            tasks.create_task(_close_socket(ws))
        for stream in list(app[_STREAMS].values()):
            tasks.create_task(_end_stream(stream))


def setup(app: web.Application, mq: MessageQueue) -> None:
    """Serve ``/ws`` and ``/sse`` on ``app`` with the events of ``mq``."""
    app[MQ] = mq
    app[_SOCKETS] = set()
    app[_STREAMS] = {}
    app[_OPENING] = [0]
    app[_REFUSALS] = Throttled("event_stream_refused", interval=REFUSAL_LOG_INTERVAL)
    app.on_shutdown.append(_close_all)
    app.add_routes(
        [web.get("/ws", websocket), web.get("/sse", sse), web.get("/sse/{tail:.*}", sse)]
    )
