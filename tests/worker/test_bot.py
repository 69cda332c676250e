"""The bot against a small in-test msgpack WebSocket master on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType, web

import buildyard
from buildyard.protocol.codec import Message
from buildyard.protocol.errors import RemoteError
from buildyard.protocol.peer import Peer, RequestFailed
from buildyard.testing.postgres import free_port
from buildyard.worker import bot as botmodule
from buildyard.worker.bot import Bot, WorkerConfig


class FakeMaster:
    """Accepts worker ``w1``/``pw``; each connection's Peer is queued for the test to drive."""

    def __init__(self) -> None:
        self.peers: asyncio.Queue[Peer] = asyncio.Queue()
        self.auth_headers: list[str | None] = []
        self.updates: dict[str, list[tuple[str, Any]]] = {}
        self.completed: dict[str, asyncio.Future[Any]] = {}
        self.ids = itertools.count()
        self.refused = asyncio.Event()
        self.sockets: list[web.WebSocketResponse] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        header = request.headers.get("Authorization")
        self.auth_headers.append(header)
        expected = "Basic " + base64.b64encode(b"w1:pw").decode()
        if header != expected:
            if len(self.auth_headers) >= 2:
                self.refused.set()  # refused twice: the worker retried
            raise web.HTTPUnauthorized()
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets.append(ws)
        peer = Peer(send=ws.send_bytes, handler=self.worker_request, name="worker")
        await self.peers.put(peer)
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                await peer.feed(msg.data)
        peer.close()
        return ws

    async def worker_request(self, op: str, message: Message) -> Any:
        cid = message["command_id"]
        if op == "update":
            self.updates.setdefault(cid, []).extend((k, v) for k, v in message["args"])
            return None
        if op == "complete":
            future = self.completed.setdefault(cid, asyncio.get_running_loop().create_future())
            future.set_result(message["args"])
            return None
        raise RequestFailed(f"Command {op} does not exist.")

    async def run_command(self, peer: Peer, name: str, args: dict[str, Any]) -> Any:
        cid = str(next(self.ids))
        done = self.completed.setdefault(cid, asyncio.get_running_loop().create_future())
        await peer.request("start_command", command_id=cid, command_name=name, args=args)
        async with asyncio.timeout(30):
            return cid, await done


@pytest.fixture
async def master() -> AsyncIterator[tuple[FakeMaster, int]]:
    fake = FakeMaster()
    app = web.Application()
    app.router.add_get("/{path:.*}", fake.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield fake, port
    finally:
        await runner.cleanup()


@pytest.fixture
async def worker_basedir(tmp_path: Path) -> Path:
    (tmp_path / "info").mkdir()
    (tmp_path / "info" / "admin").write_text("me <me@example.invalid>\n")
    (tmp_path / "info" / "host").write_text("a test host\n")
    return tmp_path


async def running_bot(
    basedir: Path, port: int, password: str = "pw"
) -> tuple[Bot, asyncio.Task[int]]:
    config = WorkerConfig(
        basedir=basedir, host="127.0.0.1", port=port, name="w1", password=password
    )
    bot = Bot(config)
    return bot, asyncio.get_running_loop().create_task(bot.run())


async def stop(bot: Bot, task: asyncio.Task[int]) -> int:
    bot.request_shutdown()
    async with asyncio.timeout(30):
        return await task


async def test_handshake_info_settings_and_listdir(
    master: tuple[FakeMaster, int], worker_basedir: Path
) -> None:
    fake, port = master
    (worker_basedir / "builder").mkdir()
    bot, task = await running_bot(worker_basedir, port)
    try:
        async with asyncio.timeout(30):
            peer = await fake.peers.get()
        expected = "Basic " + base64.b64encode(b"w1:pw").decode()
        assert fake.auth_headers == [expected]
        assert await peer.request("print", message="attached") is None
        assert await peer.request("keepalive") is None
        info = await peer.request("get_worker_info")
        assert info["system"] == os.name
        assert info["basedir"] == str(worker_basedir)
        assert info["version"] == buildyard.__version__
        assert info["admin"] == "me <me@example.invalid>\n"
        assert info["host"] == "a test host\n"
        assert info["delete_leftover_dirs"] is False
        assert isinstance(info["numcpus"], int)
        assert info["environ"]["PATH"] == os.environ["PATH"]
        assert info["worker_commands"]["shell"] == "3.3"
        settings = {
            "newline_re": "\n",
            "max_line_length": 80,
            "buffer_timeout": 0.1,
            "buffer_size": 10,
        }
        assert await peer.request("set_worker_settings", args=settings) is None
        with pytest.raises(RemoteError, match="missing args: buffer_size, max_line_length"):
            await peer.request("set_worker_settings", args={"newline_re": "x", "buffer_timeout": 1})
        cid, failure = await fake.run_command(peer, "listdir", {"path": str(worker_basedir)})
        assert failure is None
        updates = dict(fake.updates[cid])
        assert sorted(updates["files"]) == ["builder", "info"]
        assert updates["rc"] == 0
        cid, failure = await fake.run_command(
            peer, "shell", {"workdir": str(worker_basedir), "command": "echo hi"}
        )
        assert failure is None
        assert "".join(v[0] for k, v in fake.updates[cid] if k == "stdout") == "hi\n"
        with pytest.raises(
            RemoteError, match=r"^\(command x\): unrecognized WorkerCommand 'nope'$"
        ):
            await peer.request("start_command", command_id="x", command_name="nope", args={})
        with pytest.raises(RemoteError, match=r"^StatFile is missing args: path$"):
            await peer.request("start_command", command_id="y", command_name="stat", args={})
        with pytest.raises(RemoteError, match=r"^Command frobnicate does not exist\.$"):
            await peer.request("frobnicate")
        assert await peer.request("interrupt_command", command_id="unknown", why="x") is None
    finally:
        assert await stop(bot, task) == 0


async def test_interrupt_over_the_wire(
    master: tuple[FakeMaster, int], worker_basedir: Path
) -> None:
    fake, port = master
    bot, task = await running_bot(worker_basedir, port)
    try:
        async with asyncio.timeout(30):
            peer = await fake.peers.get()
        done = fake.completed.setdefault("9", asyncio.get_running_loop().create_future())
        await peer.request(
            "start_command", command_id="9", command_name="shell",
            args={"workdir": str(worker_basedir), "command": "sleep 100"},
        )  # fmt: skip
        await asyncio.sleep(0.3)
        await peer.request("interrupt_command", command_id="9", why="stopped by test")
        async with asyncio.timeout(30):
            assert await done is None
        updates = fake.updates["9"]
        assert ("rc", -1) in updates
        assert "stopped by test, attempting to kill" in "".join(
            v[0] for k, v in updates if k == "header"
        )
    finally:
        await stop(bot, task)


async def test_a_first_refusal_ends_the_bot_and_a_drop_reconnects(
    master: tuple[FakeMaster, int],
    worker_basedir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake, port = master
    monkeypatch.setattr(botmodule, "FIRST_DELAY", 0.05)
    bot, task = await running_bot(worker_basedir, port, password="wrong")
    # never attached: a wrong name or password is the worker's mistake, and it gives up
    async with asyncio.timeout(30):
        assert await task == 1
    assert bot.connections == 0
    assert "the master refused worker w1: wrong name or password" in capsys.readouterr().out

    bot, task = await running_bot(worker_basedir, port)
    try:
        async with asyncio.timeout(30):
            await fake.peers.get()
        await fake.sockets[-1].close()  # the master drops the worker
        async with asyncio.timeout(30):
            second = await fake.peers.get()
        assert await second.request("keepalive") is None
        assert bot.connections == 2
    finally:
        await stop(bot, task)


async def test_shutdown_request_stops_the_bot(
    master: tuple[FakeMaster, int], worker_basedir: Path
) -> None:
    fake, port = master
    _bot, task = await running_bot(worker_basedir, port)
    async with asyncio.timeout(30):
        peer = await fake.peers.get()
        assert await peer.request("shutdown") is None
        assert await task == 0


def test_reconnection_is_quick_while_a_master_restarts_then_backs_off() -> None:
    # a master back within the first 30 s is found within half a second of listening
    for attempt, without in enumerate([0.0, 0.4, 3.0, 10.0, 29.9], start=1):
        delays = [botmodule.backoff(attempt, without) for _ in range(50)]
        assert all(0.25 <= d <= 0.5 for d in delays), (attempt, without, max(delays))
    # a long outage: 1 s doubling to 60 s (jittered down to half)
    assert all(0.5 <= botmodule.backoff(1, 30.0) <= 1.0 for _ in range(50))
    assert all(2.0 <= botmodule.backoff(3, 45.0) <= 4.0 for _ in range(50))
    assert all(30.0 <= botmodule.backoff(12, 600.0) <= 60.0 for _ in range(50))
