"""A real IRC server (Debian's ngIRCd) on a free loopback port, and a small IRC user to talk to
it (tests only)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from buildyard.testing.postgres import free_port
from buildyard.testing.processes import end_popen

NGIRCD = "/usr/sbin/ngircd"

CONFIG = """\
[Global]
Name = irc.buildyard.test
Info = buildyard test server
Listen = 127.0.0.1
Ports = {port}
MotdPhrase = test server
PidFile = {dir}/ngircd.pid
ServerUID = {uid}
ServerGID = {gid}
[Limits]
PingTimeout = 120
PongTimeout = 20
MaxNickLength = 30
[Options]
PAM = no
Ident = no
DNS = no
SyslogFacility = local7
"""


def have_ngircd() -> bool:
    return Path(NGIRCD).exists() or shutil.which("ngircd") is not None


@dataclass
class Ircd:
    """ngIRCd in the foreground with a generated configuration; ``restart()`` ends it (by
    its pid) and starts it again on the same port."""

    directory: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        import os

        conf = self.directory / "ngircd.conf"
        conf.write_text(
            CONFIG.format(port=self.port, dir=self.directory, uid=os.getuid(), gid=os.getgid())
        )
        with (self.directory / "ngircd.log").open("ab") as out:
            self.proc = subprocess.Popen(
                [NGIRCD, "--nodaemon", "--passive", "--config", str(conf)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"ngircd exited with {self.proc.returncode}: "
                    + (self.directory / "ngircd.log").read_text()[-2000:]
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1),
            ):
                return
            time.sleep(0.05)
        raise RuntimeError("ngircd did not listen within 30 s")

    def stop(self) -> None:
        if self.proc is not None:
            end_popen(self.proc)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@dataclass
class IrcUser:
    """One IRC user: registers, joins channels, sends messages, and keeps every line it
    receives as ``(prefix, command, params)``."""

    nick: str
    port: int
    lines: list[tuple[str, str, list[str]]] = field(default_factory=list)
    _reader: asyncio.StreamReader | None = None
    _writer: asyncio.StreamWriter | None = None
    _task: asyncio.Task[None] | None = None
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def connect(self) -> None:
        self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self.port)
        self._task = asyncio.get_running_loop().create_task(self._read())
        self.send(f"NICK {self.nick}")
        self.send(f"USER {self.nick} 0 * :{self.nick}")
        await self.wait_for(lambda p, c, a: c == "001")

    def send(self, line: str) -> None:
        assert self._writer is not None
        self._writer.write(line.encode() + b"\r\n")

    async def join(self, channel: str) -> None:
        self.send(f"JOIN {channel}")
        await self.wait_for(lambda p, c, a: c == "366" and a[1].lower() == channel.lower())

    def say(self, target: str, text: str) -> None:
        self.send(f"PRIVMSG {target} :{text}")

    async def _read(self) -> None:
        from buildyard.master.reporters.irc import parse_line

        assert self._reader is not None
        while raw := await self._reader.readline():
            prefix, command, params = parse_line(raw.decode("utf-8", "replace").rstrip("\r\n"))
            if command == "PING":
                self.send("PONG :" + (params[-1] if params else ""))
            async with self._arrived:
                self.lines.append((prefix, command, params))
                self._arrived.notify_all()

    async def wait_for(
        self, match: Callable[[str, str, list[str]], bool], *, start: int = 0, within: float = 60
    ) -> tuple[str, str, list[str]]:
        """The first line from index ``start`` on that ``match``es, waiting ``within`` s."""
        async with asyncio.timeout(within), self._arrived:
            while True:
                for line in self.lines[start:]:
                    if match(*line):
                        return line
                await self._arrived.wait()

    async def messages(
        self,
        sender: str,
        *,
        start: int = 0,
        count: int = 1,
        within: float = 60,
        to: str | None = None,
    ) -> list[str]:
        """The text of the first ``count`` PRIVMSG/NOTICE lines from ``sender`` from ``start``
        (sent to ``to`` only, when given)."""

        def found() -> list[str]:
            return [
                a[-1]
                for p, c, a in self.lines[start:]
                if c in ("PRIVMSG", "NOTICE")
                and p.split("!")[0] == sender
                and (to is None or a[0].lower() == to.lower())
            ]

        async with asyncio.timeout(within), self._arrived:
            await self._arrived.wait_for(lambda: len(found()) >= count)
        return found()[:count]

    async def close(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self.send("QUIT :bye")
                self._writer.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task


@contextlib.asynccontextmanager
async def irc_user(nick: str, port: int) -> AsyncIterator[IrcUser]:
    user = IrcUser(nick, port)
    await user.connect()
    try:
        yield user
    finally:
        await user.close()
