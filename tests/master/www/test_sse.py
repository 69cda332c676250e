"""/sse on a real master over loopback: the handshake, add / remove on the stream's id, a real
build's events, Buildbot's error answers, and a quick stop with a stream open."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from buildyard.master.model.results import Results
from buildyard.master.www import events as www_events
from buildyard.testing.masters import Running, running_master
from buildyard.testing.processes import eventually

BODY = """
c['builders'] = [util.BuilderConfig(name="b", workernames=["w1"], factory=util.BuildFactory([
    steps.ShellCommand(name="hi", command="echo hi"),
]))]
c['www'] = {'port': 'tcp:0:interface=127.0.0.1'}
"""


def _base(running: Running) -> str:
    return f"http://127.0.0.1:{running.master.www.port}/sse"


def _subscriptions(running: Running) -> int:
    return running.master.mq.statistics()["subscriptions"]


async def _next_event(stream: aiohttp.ClientResponse) -> tuple[str, str]:
    """The next (event, data) of the stream; comment lines (keepalives) are skipped."""
    fields: dict[str, str] = {}
    async with asyncio.timeout(30):
        while True:
            raw = await stream.content.readline()
            assert raw, "the stream ended"
            line = raw.decode().rstrip("\n")
            if not line and fields:
                return fields["event"], fields["data"]
            if line and not line.startswith(":"):
                name, _, value = line.partition(": ")
                fields[name] = value


async def _events_until(stream: aiohttp.ClientResponse, *last: str) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    waiting = set(last)
    while waiting:
        kind, data = await _next_event(stream)
        assert kind == "event"
        message = json.loads(data)
        assert set(message) == {"key", "message"}
        seen.append(message)
        waiting.discard("/".join(message["key"]))
    return seen


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with http.get(url) as resp:
        return resp.status, await resp.text()


async def test_listen_add_events_remove(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a client that went away is noticed at the next write: the keepalive, made frequent here
    monkeypatch.setattr(www_events, "SSE_KEEPALIVE", 0.2)
    async with running_master(tmp_path, BODY) as running, aiohttp.ClientSession() as http:
        base = _base(running)
        before = _subscriptions(running)
        async with http.get(f"{base}/listen/builds/*/new") as stream:
            assert stream.status == 200
            assert stream.headers["Content-Type"] == "text/event-stream"
            kind, ident = await _next_event(stream)
            assert kind == "handshake" and len(ident) == 36
            assert _subscriptions(running) == before + 1

            assert await _get(http, f"{base}/add/{ident}/steps/*/finished") == (200, "ok")
            assert _subscriptions(running) == before + 2
            result = await running.build("b")
            assert result.build.results == Results.SUCCESS
            step = result.steps[0]
            events = await _events_until(
                stream, f"builds/{result.build.id}/new", f"steps/{step.id}/finished"
            )
            assert sorted(tuple(e["key"]) for e in events) == [
                ("builds", str(result.build.id), "new"),
                ("steps", str(step.id), "finished"),
            ]
            finished = next(e["message"] for e in events if e["key"][0] == "steps")
            assert finished["stepid"] == step.id and finished["results"] == Results.SUCCESS

            assert await _get(http, f"{base}/remove/{ident}/steps/*/finished") == (200, "ok")
            assert _subscriptions(running) == before + 1
            assert await _get(http, f"{base}/remove/{ident}/steps/*/finished") == (
                404,
                "consumer is not listening to this event",
            )
            # what remains still streams; the removed path does not
            second = await running.build("b")
            [event] = await _events_until(stream, f"builds/{second.build.id}/new")
            assert event["message"]["buildid"] == second.build.id
        # the client is gone: its subscriptions go when the server notices
        await eventually(lambda: _subscriptions(running) == before, within=10)


async def test_unknown_or_missing_uuid(tmp_path: Path) -> None:
    async with running_master(tmp_path, BODY) as running, aiohttp.ClientSession() as http:
        base = _base(running)
        assert await _get(http, f"{base}/add/nope/builds/*/*") == (400, "unknown uuid")
        assert await _get(http, f"{base}/remove/nope/builds/*/*") == (400, "unknown uuid")
        assert await _get(http, f"{base}/add") == (400, "need uuid")


async def test_listen_without_path_then_add(tmp_path: Path) -> None:
    """``/sse`` alone listens too (Buildbot's default command), following nothing until added."""
    async with running_master(tmp_path, BODY) as running, aiohttp.ClientSession() as http:
        base = _base(running)
        before = _subscriptions(running)
        async with http.get(base) as stream:
            kind, ident = await _next_event(stream)
            assert kind == "handshake"
            assert _subscriptions(running) == before
            assert await _get(http, f"{base}/add/{ident}/builds/*/finished") == (200, "ok")
            result = await running.build("b")
            [event] = await _events_until(stream, f"builds/{result.build.id}/finished")
            assert event["message"]["complete"] is True


async def test_stopping_the_master_ends_open_streams(tmp_path: Path) -> None:
    async with aiohttp.ClientSession() as http, running_master(tmp_path, BODY) as running:
        stream = await http.get(f"{_base(running)}/listen/builds/*/*")
        kind, _ident = await _next_event(stream)
        assert kind == "handshake"
        started = time.monotonic()
        await running.master.stop()
        took = time.monotonic() - started
        assert took < 5, f"the master took {took:.1f}s to stop"
        async with asyncio.timeout(5):
            assert await stream.content.read() == b""  # the stream has ended
        stream.close()


async def test_a_client_that_stops_reading_is_dropped_and_its_subscription_freed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The MQ's queues are unbounded: a stream whose writes cannot go out must end, or every
    event it follows piles up in the master."""
    monkeypatch.setattr(www_events, "SSE_WRITE_TIMEOUT", 1.0)
    async with running_master(tmp_path, BODY) as running:
        before = _subscriptions(running)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        _reader, writer = await asyncio.open_connection(
            sock=await _connected(sock, running.master.www.port)
        )
        try:
            writer.write(b"GET /sse/listen/builds/*/new HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            await writer.drain()
            await eventually(lambda: _subscriptions(running) == before + 1, within=30)
            body = {"padding": "x" * 65536}
            # bounded: a few hundred MB of writes at most, though the kernel's buffers fill
            # after a few MB and the stream ends a second later
            for n in range(3000):
                running.master.mq.produce(("builds", str(n), "new"), body)
                await asyncio.sleep(0.01)
                if _subscriptions(running) == before:
                    break
            assert _subscriptions(running) == before
            assert running.master.mq.statistics()["max_backlog"] == 0
        finally:
            writer.close()


async def _connected(sock: socket.socket, port: int | None) -> socket.socket:
    assert port is not None
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return sock
