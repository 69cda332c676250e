"""The web and worker ports against clients that connect and then stall: silent, half-sent or
trickled request heads, idle connections beyond the cap, a worker that never attaches, and
malformed requests. A master in this process, raw sockets on loopback."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from structlog.testing import capture_logs

from buildyard.master.config.loader import load_master_config
from buildyard.master.db import migrate
from buildyard.master.master import BuildMaster
from buildyard.testing.postgres import free_port

# the limits are small so that the test is short; waits are bounded far above them
HEADER_TIMEOUT = 1.0
CAP = 4
WAIT = 30.0

CONFIG = """\
from buildyard.plugins import *
c = BuildmasterConfig = {{}}
c['workers'] = [worker.Worker("w1", "pw")]
c['protocols'] = {{'msgpack_experimental_v7': {{
    'port': {port}, 'interface': '127.0.0.1', 'header_timeout': {header},
    'attach_timeout': 2, 'max_pending_connections': {cap}}}}}
c['www'] = {{'port': 'tcp:{www}:interface=127.0.0.1', 'header_timeout': {header},
            'idle_timeout': {header}, 'max_pending_connections': {cap}}}
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
c['builders'] = [util.BuilderConfig(name="b", workernames=["w1"], factory=util.BuildFactory())]
"""


@pytest.fixture
async def master(tmp_path: Path) -> AsyncIterator[BuildMaster]:
    basedir = tmp_path / "master"
    basedir.mkdir()
    config = CONFIG.format(port=free_port(), www=free_port(), header=HEADER_TIMEOUT, cap=CAP)
    (basedir / "master.cfg").write_text(config)
    m = BuildMaster(basedir, config=load_master_config(basedir))
    await migrate.upgrade(m.db)
    await m.start()
    try:
        yield m
    finally:
        await m.stop()


def port_of(m: BuildMaster, which: str) -> int:
    port = m.www.port if which == "www" else m.workers.listener.port
    assert port is not None
    return port


async def closed_by_peer(reader: asyncio.StreamReader, *, within: float = WAIT) -> bool:
    """Whether the other end closes the connection within ``within`` seconds (whatever it
    sends first is read and dropped)."""
    try:
        async with asyncio.timeout(within):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


@contextlib.asynccontextmanager
async def connection(port: int) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def rest_answers(m: BuildMaster) -> bool:
    url = f"http://127.0.0.1:{port_of(m, 'www')}/api/v2/builders"
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        body = await resp.json(content_type=None)
    return resp.status == 200 and [b["name"] for b in body["builders"]] == ["b"]


@pytest.mark.parametrize("which", ["www", "workers"])
async def test_a_silent_connection_is_closed_after_the_header_timeout(
    master: BuildMaster, which: str
) -> None:
    async with connection(port_of(master, which)) as (reader, _):
        assert await closed_by_peer(reader)


@pytest.mark.parametrize("which", ["www", "workers"])
async def test_half_sent_headers_are_closed_after_the_header_timeout(
    master: BuildMaster, which: str
) -> None:
    async with connection(port_of(master, which)) as (reader, writer):
        writer.write(b"GET /api/v2/builders HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
        await writer.drain()
        assert await closed_by_peer(reader)


@pytest.mark.parametrize("which", ["www", "workers"])
async def test_a_trickled_request_head_is_closed_though_bytes_keep_coming(
    master: BuildMaster, which: str
) -> None:
    """Slow loris: a byte of a header every 50 ms never completes the head; the deadline does
    not move with each byte."""
    async with connection(port_of(master, which)) as (reader, writer):
        writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: ")
        closed = asyncio.ensure_future(closed_by_peer(reader))
        try:
            for _ in range(int(WAIT / 0.05)):  # bounded: WAIT seconds of trickle at most
                if closed.done():
                    break
                writer.write(b"a")
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
                await asyncio.sleep(0.05)
            assert await closed
        finally:
            closed.cancel()
    assert await rest_answers(master)


async def test_a_keep_alive_connection_is_closed_after_the_idle_timeout(
    master: BuildMaster,
) -> None:
    """Two requests on one connection, then silence: the master closes it."""
    async with connection(port_of(master, "www")) as (reader, writer):
        for _ in range(2):
            writer.write(b"GET /api/v2/builders HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
            assert head.startswith(b"HTTP/1.1 200"), head
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await asyncio.wait_for(reader.readexactly(length), WAIT)
        assert await closed_by_peer(reader)


async def test_an_upgrade_without_credentials_is_refused_then_closed_when_idle(
    master: BuildMaster,
) -> None:
    """The worker port answers 401 and does not keep the unauthenticated connection alive."""
    async with connection(port_of(master, "workers")) as (reader, writer):
        writer.write(
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
        assert head.startswith(b"HTTP/1.1 401"), head
        assert await closed_by_peer(reader)


async def test_a_worker_that_never_answers_its_attach_sequence_is_dropped(
    master: BuildMaster,
) -> None:
    listener = master.workers.listener
    url = f"http://127.0.0.1:{port_of(master, 'workers')}/"
    token = base64.b64encode(b"w1:pw").decode()
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, headers={"Authorization": f"Basic {token}"}) as ws,
    ):
        # the master asks (print, get_worker_info); this worker reads and never answers
        async with asyncio.timeout(WAIT):
            while (await ws.receive()).type not in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.ERROR,
            ):
                pass
    assert "w1" not in listener.connections


@pytest.mark.parametrize("which", ["www", "workers"])
async def test_idle_connections_beyond_the_cap_are_closed_oldest_first(
    master: BuildMaster, which: str
) -> None:
    port = port_of(master, which)
    async with contextlib.AsyncExitStack() as stack:
        idle = [await stack.enter_async_context(connection(port)) for _ in range(5 * CAP)]
        # the first 4 * CAP were closed as newer ones came (well before the header timeout
        # could have closed them, but this only waits until they are)
        for reader, _ in idle[: 4 * CAP]:
            assert await closed_by_peer(reader)
        assert await rest_answers(master)


MALFORMED = {
    "no-colon": b"No colon here\r\n",
    "huge-header": b"X-Huge: " + b"a" * 20_000 + b"\r\n",
    "many-headers": b"".join(b"X-%d: a\r\n" % n for n in range(200)),
}


@pytest.mark.parametrize("which", ["www", "workers"])
@pytest.mark.parametrize("fault", list(MALFORMED))
async def test_a_malformed_request_is_one_line_in_the_log(
    master: BuildMaster, which: str, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with capture_logs() as events:
        for _ in range(3):
            async with connection(port_of(master, which)) as (reader, writer):
                writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n" + MALFORMED[fault] + b"\r\n")
                await writer.drain()
                status = await asyncio.wait_for(reader.readline(), WAIT)
                assert status.split()[1] == b"400", status
                assert await closed_by_peer(reader)
    malformed = [e for e in events if e["event"] == "http_request_malformed"]
    assert len(malformed) == 3, events
    assert all(e["listener"] == which and "exc_info" not in e for e in malformed)
    assert malformed[0]["fault"].startswith("400"), malformed[0]
    # nothing of it through the standard library's logging (aiohttp's traceback)
    assert [r for r in caplog.records if r.exc_info or r.name.startswith("aiohttp")] == []
