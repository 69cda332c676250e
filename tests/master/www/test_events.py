"""/ws and /sse on a real master: subscriptions, a real build's events, bad frames answered
without harm to the rest, and a master that stops at once with clients connected."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp

from buildyard.master.model.results import Results
from buildyard.testing.masters import running_master
from buildyard.testing.postgres import free_port

BODY = """
c['builders'] = [util.BuilderConfig(name="b", workernames=["w1"], factory=util.BuildFactory([
    steps.ShellCommand(name="hi", command="echo hi"),
]))]
c['www'] = {{'port': {port}}}
"""


async def _next_reply(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    """The next answer to a command (events, which have no "code", are skipped)."""
    async with asyncio.timeout(10):
        while True:
            message = await ws.receive_json()
            if "code" in message:
                return dict(message)


async def _events(ws: aiohttp.ClientWebSocketResponse, until: str) -> list[dict[str, Any]]:
    """Events up to the one whose key ends with ``until``."""
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(30):
        while True:
            message = await ws.receive_json()
            if "code" not in message:
                seen.append(message)
                if message["k"].endswith(until):
                    return seen


async def test_ws_subscriptions_events_and_errors(tmp_path: Path) -> None:
    port = free_port()
    async with (
        running_master(tmp_path, BODY.format(port=port)) as running,
        aiohttp.ClientSession() as http,
        http.ws_connect(f"http://127.0.0.1:{port}/ws") as ws,
    ):
        await ws.send_json({"cmd": "startConsuming", "path": "builds/*/*", "_id": 1})
        assert await _next_reply(ws) == {"msg": "OK", "code": 200, "_id": 1}
        # the same path again: OK, and still one subscription (no event twice)
        await ws.send_json({"cmd": "startConsuming", "path": "builds/*/*", "_id": 2})
        assert (await _next_reply(ws))["code"] == 200
        await ws.send_json({"cmd": "ping", "_id": 3})
        assert await _next_reply(ws) == {"msg": "pong", "code": 200, "_id": 3}

        # bad frames get errors; the subscription goes on
        await ws.send_str("{not json")
        assert (await _next_reply(ws))["code"] == 400
        await ws.send_json({"cmd": "startConsuming"})
        assert await _next_reply(ws) == {
            "error": "no '_id' or 'type' in websocket frame",
            "code": 400,
            "_id": None,
        }
        await ws.send_json({"_id": 4})
        assert (await _next_reply(ws)) == {
            "error": "no 'cmd' in websocket frame",
            "code": 400,
            "_id": 4,
        }
        await ws.send_json({"cmd": "explode", "_id": 5})
        assert await _next_reply(ws) == {
            "error": "no such command type 'explode'",
            "code": 404,
            "_id": 5,
        }
        await ws.send_json({"cmd": "stopConsuming", "path": "steps/*/*", "_id": 6})
        assert await _next_reply(ws) == {
            "error": "path was not consumed 'steps/*/*'",
            "code": 400,
            "_id": 6,
        }
        await ws.send_json({"cmd": "startConsuming", "path": "builds//x", "_id": 7})
        assert (await _next_reply(ws))["code"] == 400

        result = await running.build("b")
        assert result.build.results == Results.SUCCESS
        events = await _events(ws, f"builds/{result.build.id}/finished")
        keys = [e["k"] for e in events]
        assert keys[0] == f"builds/{result.build.id}/new"
        assert len(keys) == len(set(keys))  # each once, despite the second startConsuming
        finished = events[-1]["m"]
        assert finished["buildid"] == result.build.id
        assert finished["results"] == Results.SUCCESS and finished["complete"] is True
        # a pattern only matches keys of its own length: no step events here
        assert not any("/steps/" in k for k in keys)

        await ws.send_json({"cmd": "stopConsuming", "path": "builds/*/*", "_id": 8})
        assert await _next_reply(ws) == {"msg": "OK", "code": 200, "_id": 8}
        await running.build("b")
        await ws.send_json({"cmd": "ping", "_id": 9})
        # nothing but the pong: the second build's events are not sent
        assert await ws.receive_json(timeout=10) == {"msg": "pong", "code": 200, "_id": 9}


async def test_sse_listen_add_remove(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}/sse"
    async with (
        running_master(tmp_path, BODY.format(port=port)) as running,
        aiohttp.ClientSession() as http,
    ):
        async with http.get(f"{base}/add/nope/builds/*/*") as resp:
            assert (resp.status, await resp.text()) == (400, "unknown uuid")
        async with http.get(f"{base}/listen/builds/*/new") as stream:
            assert stream.headers["Content-Type"] == "text/event-stream"

            async def next_event() -> tuple[str, str]:
                fields: dict[str, str] = {}
                async with asyncio.timeout(30):
                    while True:
                        line = (await stream.content.readline()).decode().rstrip("\n")
                        if not line and fields:
                            return fields["event"], fields["data"]
                        if line and not line.startswith(":"):
                            name, _, value = line.partition(": ")
                            fields[name] = value

            kind, ident = await next_event()
            assert kind == "handshake"
            async with http.get(f"{base}/add/{ident}/steps/*/finished") as resp:
                assert (resp.status, await resp.text()) == (200, "ok")
            result = await running.build("b")
            got = [await next_event(), await next_event()]
            assert [k for k, _ in got] == ["event", "event"]
            messages = [json.loads(data) for _, data in got]
            assert {tuple(m["key"]) for m in messages} == {
                ("builds", str(result.build.id), "new"),
                ("steps", str(result.steps[0].id), "finished"),
            }
            async with http.get(f"{base}/remove/{ident}/steps/*/finished") as resp:
                assert resp.status == 200
            async with http.get(f"{base}/remove/{ident}/steps/*/finished") as resp:
                assert resp.status == 400


async def test_stopping_the_master_does_not_wait_for_event_clients(tmp_path: Path) -> None:
    port = free_port()
    async with aiohttp.ClientSession() as http:
        async with running_master(tmp_path, BODY.format(port=port)) as running:
            ws = await http.ws_connect(f"http://127.0.0.1:{port}/ws")
            await ws.send_json({"cmd": "startConsuming", "path": "builds/*/*", "_id": 1})
            assert (await _next_reply(ws))["code"] == 200
            sse = await http.get(f"http://127.0.0.1:{port}/sse/listen/builds/*/*")
            await sse.content.readline()  # the handshake has come
            started = time.monotonic()
            await running.master.www.stop()
            took = time.monotonic() - started
        assert took < 5, f"the web server took {took:.1f}s to stop"
        closing = await ws.receive(timeout=5)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        sse.close()
