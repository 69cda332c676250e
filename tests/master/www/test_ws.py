"""/ws on a real master over loopback: subscriptions, a real build's events, ping, bad frames
answered without harm to the rest, released subscriptions, and a quick stop with clients on."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from buildyard.master.model.results import Results
from buildyard.master.www import events
from buildyard.testing.masters import Running, running_master
from buildyard.testing.processes import eventually

BODY = """
c['builders'] = [util.BuilderConfig(name="b", workernames=["w1"], factory=util.BuildFactory([
    steps.ShellCommand(name="hi", command="echo hi"),
]))]
c['www'] = {'port': 'tcp:0:interface=127.0.0.1'}
"""

WS = aiohttp.ClientWebSocketResponse


@asynccontextmanager
async def _socket(
    tmp_path: Path, db_url: str = "sqlite:///state.sqlite"
) -> AsyncIterator[tuple[Running, WS]]:
    async with (
        running_master(tmp_path, BODY, db_url=db_url) as running,
        aiohttp.ClientSession() as http,
        http.ws_connect(f"http://127.0.0.1:{running.master.www.port}/ws") as ws,
    ):
        yield running, ws


def _subscriptions(running: Running) -> int:
    return running.master.mq.statistics()["subscriptions"]


async def _receive(ws: WS) -> dict[str, Any]:
    async with asyncio.timeout(10):
        message = await ws.receive()
    assert message.type == aiohttp.WSMsgType.TEXT, message
    decoded = json.loads(message.data)
    assert isinstance(decoded, dict)
    return decoded


async def _command(ws: WS, **frame: Any) -> dict[str, Any]:
    """Send one command and return its answer, which must come before any event."""
    await ws.send_json(frame)
    reply = await _receive(ws)
    assert "code" in reply, reply
    return reply


async def _events_until(ws: WS, *last: str) -> list[dict[str, Any]]:
    """Events (no answer may come in between) until every key of ``last`` has been seen."""
    seen: list[dict[str, Any]] = []
    waiting = set(last)
    async with asyncio.timeout(60):
        while waiting:
            message = await _receive(ws)
            assert set(message) == {"k", "m"}, message
            seen.append(message)
            waiting.discard(message["k"])
    return seen


async def _rest(running: Running, path: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{running.master.www.port}/api/v2/{path}") as resp,
    ):
        body = await resp.json(content_type=None)
        assert resp.status == 200, body
        return dict(body)


async def _buildset(running: Running, brid: int) -> int:
    [request] = (await _rest(running, f"buildrequests/{brid}"))["buildrequests"]
    return int(request["buildsetid"])


async def test_build_events_reach_each_subscription(tmp_path: Path, db_url: str) -> None:
    async with _socket(tmp_path, db_url) as (running, ws):
        base = _subscriptions(running)
        for ident, path in enumerate(["builds/*/*", "builders/*/builds/*/*", "steps/*/*"], 1):
            reply = await _command(ws, cmd="startConsuming", path=path, _id=ident)
            assert reply == {"msg": "OK", "code": 200, "_id": ident}
        assert _subscriptions(running) == base + 3

        result = await running.build("b")
        assert result.build.results == Results.SUCCESS
        build, step = result.build, result.steps[0]
        by_builder = f"builders/{build.builderid}/builds/{build.number}"
        events = await _events_until(
            ws,
            f"builds/{build.id}/finished",
            f"{by_builder}/finished",
            f"steps/{step.id}/finished",
        )
        keys = [e["k"] for e in events]
        # each once, in the order produced, per subscription
        of_build = [k for k in keys if k.startswith("builds/")]
        assert of_build[0] == f"builds/{build.id}/new"
        assert of_build[-1] == f"builds/{build.id}/finished"
        assert set(of_build[1:-1]) <= {f"builds/{build.id}/update"}
        assert keys.index(f"{by_builder}/new") < keys.index(f"{by_builder}/finished")
        assert keys.index(f"steps/{step.id}/new") < keys.index(f"steps/{step.id}/finished")
        # builds/*/* has three segments: builds/1/properties/update is not one of them
        assert all(len(k.split("/")) == 3 for k in keys if not k.startswith("builders/"))

        bodies = {e["k"]: e["m"] for e in events}
        new = bodies[f"builds/{build.id}/new"]
        assert (new["buildid"], new["number"], new["builderid"]) == (
            build.id,
            build.number,
            build.builderid,
        )
        assert new["complete"] is False and new["results"] is None
        # the finished event is the entity the REST API gives
        [rest] = (await _rest(running, f"builds/{build.id}"))["builds"]
        assert bodies[f"builds/{build.id}/finished"] == rest
        assert bodies[f"{by_builder}/finished"] == rest
        assert rest["complete"] is True and rest["results"] == Results.SUCCESS
        [rest_step] = (await _rest(running, f"steps/{step.id}"))["steps"]
        assert bodies[f"steps/{step.id}/finished"] == rest_step


async def test_frames_are_compact_json_as_buildbot_sends_them(tmp_path: Path) -> None:
    async with _socket(tmp_path) as (_running, ws):
        await ws.send_str('{"cmd":"ping","_id":7}')
        async with asyncio.timeout(10):
            assert await ws.receive_str() == '{"msg":"pong","code":200,"_id":7}'


async def test_stop_consuming_stops_the_events_and_the_subscription(tmp_path: Path) -> None:
    async with _socket(tmp_path) as (running, ws):
        base = _subscriptions(running)
        await _command(ws, cmd="startConsuming", path="builds/*/*", _id=1)
        await _command(ws, cmd="startConsuming", path="buildsets/*/complete", _id=2)
        first = await running.build("b")
        bsid = await _buildset(running, first.build.buildrequestid)
        await _events_until(ws, f"builds/{first.build.id}/finished", f"buildsets/{bsid}/complete")

        reply = await _command(ws, cmd="stopConsuming", path="builds/*/*", _id=3)
        assert reply == {"msg": "OK", "code": 200, "_id": 3}
        assert _subscriptions(running) == base + 1
        second = await running.build("b")
        bsid = await _buildset(running, second.build.buildrequestid)
        # the other subscription still works, and it is all that comes
        [event] = await _events_until(ws, f"buildsets/{bsid}/complete")
        assert event["m"]["bsid"] == bsid
        assert await _command(ws, cmd="ping", _id=4) == {"msg": "pong", "code": 200, "_id": 4}

        assert await _command(ws, cmd="stopConsuming", path="builds/*/*", _id=5) == {
            "error": "path was not consumed 'builds/*/*'",
            "code": 400,
            "_id": 5,
        }


async def test_bad_frames_get_errors_and_the_subscription_goes_on(tmp_path: Path) -> None:
    async with _socket(tmp_path) as (running, ws):
        base = _subscriptions(running)
        await _command(ws, cmd="startConsuming", path="builds/*/*", _id=1)
        # the same path again: OK, and still one subscription
        assert await _command(ws, cmd="startConsuming", path="builds/*/*", _id=2) == {
            "msg": "OK",
            "code": 200,
            "_id": 2,
        }
        assert _subscriptions(running) == base + 1

        await ws.send_str("{not json")
        reply = await _receive(ws)
        assert (reply["code"], reply["_id"]) == (400, None) and "error" in reply
        await ws.send_str("[1, 2]")
        assert (await _receive(ws))["code"] == 400
        assert await _command(ws, cmd="startConsuming", path="x/*") == {
            "error": "no '_id' or 'type' in websocket frame",
            "code": 400,
            "_id": None,
        }
        assert await _command(ws, _id=3) == {
            "error": "no 'cmd' in websocket frame",
            "code": 400,
            "_id": None,
        }
        assert await _command(ws, cmd="explode", _id=4) == {
            "error": "no such command type 'explode'",
            "code": 404,
            "_id": 4,
        }
        missing = await _command(ws, cmd="startConsuming", _id=5)
        assert (missing["code"], missing["_id"]) == (400, 5) and "path" in missing["error"]
        extra = await _command(ws, cmd="ping", _id=6, colour="red")
        assert (extra["code"], extra["_id"]) == (400, 6) and "colour" in extra["error"]
        assert await _command(ws, cmd="startConsuming", path=3, _id=7) == {
            "error": "invalid path format '3'",
            "code": 400,
            "_id": 7,
        }
        # a binary frame is read as JSON too, as Buildbot does
        await ws.send_bytes(b'{"cmd": "ping", "_id": 8}')
        assert await _receive(ws) == {"msg": "pong", "code": 200, "_id": 8}
        # a "type" without "_id" passes the first check, not the command's
        typed = await _command(ws, cmd="ping", type="x")
        assert (typed["code"], typed["_id"]) == (400, None)
        assert _subscriptions(running) == base + 1

        result = await running.build("b")
        events = await _events_until(ws, f"builds/{result.build.id}/finished")
        keys = [e["k"] for e in events]
        assert keys[0] == f"builds/{result.build.id}/new"
        assert len(keys) == len(set(keys))  # each once, despite the second startConsuming


async def test_closing_the_socket_releases_its_subscriptions(tmp_path: Path) -> None:
    async with running_master(tmp_path, BODY) as running, aiohttp.ClientSession() as http:
        base = _subscriptions(running)
        ws = await http.ws_connect(f"http://127.0.0.1:{running.master.www.port}/ws")
        await _command(ws, cmd="startConsuming", path="builds/*/*", _id=1)
        await _command(ws, cmd="startConsuming", path="steps/*/*", _id=2)
        assert _subscriptions(running) == base + 2
        await ws.close()
        await eventually(lambda: _subscriptions(running) == base, within=10)


async def test_stopping_the_master_does_not_wait_for_open_sockets(tmp_path: Path) -> None:
    async with aiohttp.ClientSession() as http, running_master(tmp_path, BODY) as running:
        base = _subscriptions(running)
        url = f"http://127.0.0.1:{running.master.www.port}/ws"
        reading, idle = await http.ws_connect(url), await http.ws_connect(url)
        for ws in (reading, idle):
            await _command(ws, cmd="startConsuming", path="builds/*/*", _id=1)
        assert _subscriptions(running) == base + 2
        # one client reads (and so answers the closing frame), the other never does
        closing = asyncio.get_running_loop().create_task(reading.receive())
        started = time.monotonic()
        await running.master.stop()
        took = time.monotonic() - started
        # without the sockets closed, aiohttp waits up to a minute for their handlers
        assert took < 5, f"the master took {took:.1f}s to stop"
        async with asyncio.timeout(5):
            message = await closing
        assert (message.type, message.data) == (aiohttp.WSMsgType.CLOSE, 1001)
        async with asyncio.timeout(5):
            message = await idle.receive()
        assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


async def test_frames_that_would_cost_the_master_dearly_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deep nesting is a bad frame (not a logged crash); a socket follows at most
    MAX_SUBSCRIPTIONS paths; a frame over MAX_WS_FRAME closes the socket (1009)."""
    monkeypatch.setattr(events, "MAX_SUBSCRIPTIONS", 3)
    async with _socket(tmp_path) as (running, ws):
        before = _subscriptions(running)
        with capture_logs() as logged:
            await ws.send_str("[" * 20_000 + "]" * 20_000)  # under MAX_WS_FRAME
            reply = await _receive(ws)
        assert reply["code"] == 400 and "nested too deeply" in reply["error"], reply
        assert [e for e in logged if e["log_level"] in ("error", "critical")] == []
        for n in range(3):
            reply = await _command(ws, cmd="startConsuming", path=f"builds/{n}/*", _id=n)
            assert reply["code"] == 200, reply
        reply = await _command(ws, cmd="startConsuming", path="builds/9/*", _id=9)
        assert reply["code"] == 400 and "too many subscriptions" in reply["error"], reply
        assert _subscriptions(running) == before + 3
        # one subscription freed: one more may be taken
        await _command(ws, cmd="stopConsuming", path="builds/0/*", _id=10)
        reply = await _command(ws, cmd="startConsuming", path="builds/9/*", _id=11)
        assert reply["code"] == 200, reply

        await ws.send_str(json.dumps({"cmd": "ping", "_id": "x" * events.MAX_WS_FRAME}))
        async with asyncio.timeout(10):
            closing = await ws.receive()
        assert closing.type == aiohttp.WSMsgType.CLOSE, closing
        assert closing.data == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
        await eventually(lambda: _subscriptions(running) == before, within=10)


async def test_sockets_and_streams_over_the_limit_are_refused_and_the_rest_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At most MAX_STREAMS sockets and /sse streams at once: one more is a 503 before any
    upgrade (one log line for many), the open ones keep their events, REST keeps answering,
    and a closed socket frees its place."""
    monkeypatch.setattr(events, "MAX_STREAMS", 2)
    async with aiohttp.ClientSession() as http, running_master(tmp_path, BODY) as running:
        base = f"http://127.0.0.1:{running.master.www.port}"
        first, second = await http.ws_connect(base + "/ws"), await http.ws_connect(base + "/ws")
        reply = await _command(first, cmd="startConsuming", path="builds/*/*", _id=1)
        assert reply["code"] == 200, reply
        with capture_logs() as logged:
            for _ in range(3):
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await http.ws_connect(base + "/ws")
                assert refused.value.status == 503
            async with http.get(base + "/sse/listen") as sse:
                assert sse.status == 503
                assert "at most 2" in await sse.text()
                assert sse.headers["Retry-After"] == "30"
        lines = [e for e in logged if e["event"] == "event_stream_refused"]
        assert len(lines) == 1 and lines[0]["kind"] == "ws", logged
        # the open socket still gets its events, and REST answers
        running.master.mq.produce(("builds", "7", "new"), {"buildid": 7})
        event = await _receive(first)
        assert event == {"k": "builds/7/new", "m": {"buildid": 7}}
        async with http.get(base + "/api/v2/builders") as rest:
            assert rest.status == 200
        # a socket closed: its place is free again
        await second.close()
        third, statuses = None, []
        for _ in range(100):  # the server sees the close a moment later
            try:
                third = await http.ws_connect(base + "/ws")
                break
            except aiohttp.WSServerHandshakeError as exc:
                statuses.append(exc.status)
                await asyncio.sleep(0.1)
        assert third is not None and set(statuses) <= {503}, statuses
        assert (await _command(third, cmd="ping", _id=2))["code"] == 200
        await third.close()
        await first.close()


async def test_a_client_that_stops_reading_is_dropped_and_its_subscription_freed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The MQ's queues are unbounded: the heartbeat's unanswered ping ends a socket whose
    client reads nothing, and with it the subscription."""
    monkeypatch.setattr(events, "WS_HEARTBEAT", 1.0)
    async with running_master(tmp_path, BODY) as running:
        before = _subscriptions(running)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", running.master.www.port))
        _reader, writer = await asyncio.open_connection(sock=sock)
        try:
            command = json.dumps({"cmd": "startConsuming", "path": "builds/*/new", "_id": 1})
            # the upgrade, then one text frame, masked with a zero key (as a client must mask)
            writer.write(
                b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\n"
                b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
                + bytes([0x81, 0x80 | len(command)])
                + b"\0\0\0\0"
                + command.encode()
            )
            await writer.drain()
            await eventually(lambda: _subscriptions(running) == before + 1, within=30)
            body = {"padding": "x" * 65536}
            for n in range(3000):  # bounded, as in the /sse test
                running.master.mq.produce(("builds", str(n), "new"), body)
                await asyncio.sleep(0.01)
                if _subscriptions(running) == before:
                    break
            assert _subscriptions(running) == before
        finally:
            writer.close()
