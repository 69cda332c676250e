"""reporters.IRC facing a bad server: nothing listening, a server that never answers, and one
that sends lines that are not IRC. Each problem is a log line naming the reporter; the bot
keeps trying, and builds are not disturbed. The misbehaving servers are scripted here: ngIRCd
cannot be made to misbehave."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import structlog

import buildyard
from buildyard.master.model.results import Results
from buildyard.master.reporters import irc
from buildyard.testing.masters import running_master
from buildyard.testing.postgres import free_port
from buildyard.testing.processes import eventually

BUILDERS = """
c['builders'] = [util.BuilderConfig(name='ok', workernames=['w1'],
                 factory=util.BuildFactory([steps.ShellCommand(command=['true'])]))]
"""


def _config(port: int) -> str:
    return BUILDERS + (
        f"c['services'] = [reporters.IRC(host='127.0.0.1', port={port}, nick='bby', "
        "channels=['#ci'], notify_events=['finished'], lostDelay=0.1, failedDelay=0.1)]\n"
    )


async def test_nothing_listening_is_logged_and_retried_with_backoff(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    with structlog.testing.capture_logs() as logs:
        async with running_master(tmp_path, _config(port)) as run:

            def failures() -> list[Any]:
                return [e for e in logs if e["event"] == "irc_connect_failed"]

            # log lines are the only sign of a failed connection
            await eventually(lambda: len(failures()) >= 5, within=60)
            result = await run.build("ok")
    assert result.build.results == Results.SUCCESS
    first = failures()[0]
    assert first["reporter"] == "IRC" and first["server"] == f"127.0.0.1:{port}"
    assert "ConnectionRefusedError" in first["error"]
    # failedDelay, doubled on each failure in a row, up to eight times
    assert [e["retry_in"] for e in failures()[:5]] == [0.1, 0.2, 0.4, 0.8, 0.8]
    assert [e for e in logs if e["log_level"] == "error"] == []


@contextlib.asynccontextmanager
async def scripted_server(
    script: Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Any],
) -> AsyncIterator[int]:
    """A TCP server on loopback running ``script(reader, writer, n)`` for its n-th client."""
    count = 0

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        count += 1
        try:
            await script(reader, writer, count)
        finally:
            writer.close()

    server = await asyncio.start_server(client, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 5)


async def test_garbage_lines_are_skipped_and_a_silent_server_is_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(irc, "PING_EVERY", 1.0)
    heard: list[str] = []
    answered = asyncio.Event()

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        if n == 1:  # a server that takes the connection and never says a word
            await reader.read()  # until the bot gives up on it
            return
        start = len(heard)
        while not any(line.startswith("USER ") for line in heard[start:]):
            line = (await reader.readline()).decode().rstrip("\r\n")
            if not line:
                return
            heard.append(line)
        for garbage in (b"!!! not irc", b"12345 six", b":only-a-prefix", b"\xff\xfe\x00"):
            if n == 2:  # once, should a loaded machine make the bot reconnect
                writer.write(garbage + b"\r\n")
        writer.write(b":srv 001 bby :Welcome\r\n:alice!a@h PRIVMSG bby :version\r\n")
        while line := (await reader.readline()).decode().rstrip("\r\n"):
            heard.append(line)
            if line.startswith("PING "):  # this one does answer
                writer.write(b":srv PONG srv :" + line[5:].encode() + b"\r\n")
            if line.startswith("PRIVMSG alice :"):
                answered.set()

    with structlog.testing.capture_logs() as logs:
        async with scripted_server(script) as port, running_master(tmp_path, _config(port)) as run:
            async with asyncio.timeout(60):
                await answered.wait()
            result = await run.build("ok")
    assert result.build.results == Results.SUCCESS
    lost = [e for e in logs if e["event"] == "irc_connection_lost"]
    # the silent server is left (a loaded machine may stall the bot past a later PING too)
    assert lost[0]["why"] == "the server stopped answering" and lost[0]["reporter"] == "IRC"
    unreadable = [e for e in logs if e["event"] == "irc_line_unreadable"]
    assert [e["line"] for e in unreadable] == [
        "!!! not irc",
        "12345 six",
        ":only-a-prefix",
        "\ufffd\ufffd\x00",
    ]
    assert all(e["reporter"] == "IRC" for e in unreadable)
    assert "JOIN #ci" in heard and "NICK bby" in heard
    [answer] = [line for line in heard if line.startswith("PRIVMSG alice :")]
    assert answer == f"PRIVMSG alice :This is buildyard-{buildyard.__version__} at your service"
    assert [e for e in logs if e["log_level"] == "error"] == []
