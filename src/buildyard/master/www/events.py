"""The data API's events for browsers: ``/ws`` (WebSocket) and ``/sse`` (server-sent events).

spec/rest-api.md section 7. A client subscribes to paths, routing-key patterns with ``*`` for
any one segment (``builds/*/*``, ``builders/3/builds/*/*``; a pattern matches keys of its own
length only) and gets each matching event as ``{"k": "builds/12/finished", "m": {...}}``.

``/ws`` takes JSON text frames, each with the client's ``_id``: ``startConsuming`` and
``stopConsuming`` with a ``path``, and ``ping``. Every command is answered with a ``code``
(events never have one); a bad frame is answered with an error and changes nothing else, so the
socket and its other subscriptions go on. Buildbot's UI waits for the 200 of
``startConsuming`` before it reads the matching REST path, so the answer comes only once the
subscription is live.

``/sse/listen[/<path>]`` streams ``event: handshake`` with the stream's id, then ``event: event``
with ``{"key": [...], "message": {...}}``; ``/sse/add/<id>/<path>`` and ``/sse/remove/<id>/<path>``
change what it follows.

Every socket and stream is closed when the web server stops, so stopping never waits on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Iterable
from typing import Any

import structlog
from aiohttp import WSMsgType, web

from buildyard.master.mq.base import Body, Key, MessageQueue, Pattern, Subscription

log = structlog.get_logger(__name__)

MQ: web.AppKey[MessageQueue] = web.AppKey("mq")
# the open sockets and streams, closed when the app shuts down
_OPEN: web.AppKey[set[web.WebSocketResponse]] = web.AppKey("open_sockets")
_STREAMS: web.AppKey[dict[str, _Stream]] = web.AppKey("sse_streams")


def pattern(path: str) -> Pattern:
    """``builds/*/new`` -> ("builds", None, "new"); ValueError for an empty path."""
    parts = [p for p in path.strip("/").split("/")]
    if not path.strip("/") or any(not p for p in parts):
        raise ValueError(f"invalid path {path!r}")
    return tuple(None if p == "*" else p for p in parts)


def event(key: Key, body: Body) -> dict[str, Any]:
    return {"k": "/".join(key), "m": body}


class _Consumer:
    """One client's subscriptions by path, each drained into ``send`` by its own task."""

    def __init__(self, mq: MessageQueue, send: Any) -> None:
        self._mq = mq
        self._send = send
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, path: str) -> None:
        """Follow ``path`` (again: nothing changes); the subscription is live on return."""
        if path in self._tasks:
            return
        sub = self._mq.subscribe(pattern(path))
        self._tasks[path] = asyncio.get_running_loop().create_task(self._pump(sub))

    def stop(self, path: str) -> bool:
        task = self._tasks.pop(path, None)
        if task is None:
            return False
        task.cancel()
        return True

    async def _pump(self, sub: Subscription) -> None:
        async with sub:
            async for key, body in sub:
                try:
                    await self._send(key, body)
                except (ConnectionError, RuntimeError):
                    return  # the client is gone; closing ends the others

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def paths(self) -> Iterable[str]:
        return self._tasks.keys()


# -- /ws --------------------------------------------------------------------------------------


def _reply(ident: Any, code: int, **fields: Any) -> dict[str, Any]:
    return {**fields, "code": code, "_id": ident}


def _answer(frame: str, consumer: _Consumer) -> dict[str, Any]:
    """The reply to one client frame (subscriptions changed as it asks)."""
    try:
        message = json.loads(frame)
    except ValueError as exc:
        return _reply(None, 400, error=f"invalid JSON in websocket frame: {exc}")
    if not isinstance(message, dict):
        return _reply(None, 400, error="a websocket frame must be a JSON object")
    ident = message.get("_id")
    if ident is None and "type" not in message:
        return _reply(None, 400, error="no '_id' or 'type' in websocket frame")
    cmd = message.get("cmd")
    if cmd is None:
        return _reply(ident, 400, error="no 'cmd' in websocket frame")
    if cmd == "ping":
        return _reply(ident, 200, msg="pong")
    if cmd not in ("startConsuming", "stopConsuming"):
        return _reply(ident, 404, error=f"no such command type '{cmd}'")
    path = message.get("path")
    if not isinstance(path, str):
        return _reply(ident, 400, error=f"'{cmd}' needs a 'path' string")
    try:
        if cmd == "startConsuming":
            consumer.start(path)
        elif not consumer.stop(path):
            return _reply(ident, 400, error=f"path was not consumed '{path}'")
    except ValueError as exc:
        return _reply(ident, 400, error=str(exc))
    return _reply(ident, 200, msg="OK")


async def websocket(request: web.Request) -> web.WebSocketResponse:
    # a client that does not answer our closing frame is not waited for long
    ws = web.WebSocketResponse(heartbeat=30, timeout=2)
    await ws.prepare(request)
    request.app[_OPEN].add(ws)

    async def send(key: Key, body: Body) -> None:
        await ws.send_json(event(key, body))

    consumer = _Consumer(request.app[MQ], send)
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                try:
                    reply = _answer(msg.data, consumer)
                except Exception as exc:
                    log.exception("ws_command_failed")
                    reply = _reply(None, 500, error=f"internal error: {exc}")
                await ws.send_json(reply)
            elif msg.type == WSMsgType.BINARY:
                await ws.send_json(_reply(None, 400, error="binary frames are not understood"))
    finally:
        request.app[_OPEN].discard(ws)
        await consumer.close()
    return ws


# -- /sse -------------------------------------------------------------------------------------


# a comment line this often: a client that went away is noticed when it fails
SSE_KEEPALIVE = 15.0


class _Stream:
    def __init__(self, response: web.StreamResponse, mq: MessageQueue) -> None:
        self.response = response
        self.consumer = _Consumer(mq, self.send)
        self._lock = asyncio.Lock()
        # set when the server stops
        self.done = asyncio.Event()

    async def send(self, key: Key, body: Body) -> None:
        await self.write("event", json.dumps({"key": list(key), "message": body}))

    async def write(self, name: str, data: str) -> None:
        await self.raw(f"event: {name}\ndata: {data}\n\n")

    async def raw(self, text: str) -> None:
        async with self._lock:
            await self.response.write(text.encode())


async def sse_listen(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    ident = str(uuid.uuid4())
    stream = _Stream(response, request.app[MQ])
    path = request.match_info.get("path", "")
    if path:
        try:
            stream.consumer.start(path)
        except ValueError as exc:
            await stream.write("error", json.dumps(str(exc)))
            return response
    streams = request.app[_STREAMS]
    streams[ident] = stream
    try:
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
        await stream.consumer.close()
    return response


async def _change(request: web.Request, add: bool) -> web.Response:
    stream = request.app[_STREAMS].get(request.match_info["uuid"])
    if stream is None:
        return web.Response(status=400, text="unknown uuid")
    path = request.match_info["path"]
    try:
        if add:
            stream.consumer.start(path)
        elif not stream.consumer.stop(path):
            return web.Response(status=400, text=f"path was not consumed '{path}'")
    except ValueError as exc:
        return web.Response(status=400, text=str(exc))
    return web.Response(text="ok")


async def sse_add(request: web.Request) -> web.Response:
    return await _change(request, add=True)


async def sse_remove(request: web.Request) -> web.Response:
    return await _change(request, add=False)


# -- wiring -----------------------------------------------------------------------------------


async def _close_all(app: web.Application) -> None:
    for stream in list(app[_STREAMS].values()):
        stream.done.set()
    sockets: set[web.WebSocketResponse] = app[_OPEN]
    await asyncio.gather(
        *(ws.close(code=1001, message=b"server shutting down") for ws in list(sockets)),
        return_exceptions=True,
    )


def setup(app: web.Application, mq: MessageQueue) -> None:
    app[MQ] = mq
    app[_OPEN] = set()
    app[_STREAMS] = {}
    app.on_shutdown.append(_close_all)
    app.add_routes(
        [
            web.get("/ws", websocket),
            web.get("/sse/listen", sse_listen),
            web.get("/sse/listen/{path:.+}", sse_listen),
            web.get("/sse/add/{uuid}/{path:.+}", sse_add),
            web.get("/sse/remove/{uuid}/{path:.+}", sse_remove),
        ]
    )
