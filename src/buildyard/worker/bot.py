"""The worker's connection to its master: handshake, requests, commands, reconnection.

:class:`Bot` connects to ``ws://HOST:PORT/`` with ``Authorization: Basic``, answers the
master's requests through a :class:`~buildyard.protocol.peer.Peer` (docs/worker-protocol.md),
runs commands in tasks of their own, and after any drop or refused handshake reconnects: every
0.25-0.5 s for the first 30 s without a master (a master being restarted is found within half a
second of listening again, so the builds it gives back rerun at once), then with exponential
backoff (1 s doubling to 60 s, with jitter; from the first attempt with ``maxretries``, so that
its count spans as long as before). Commands do not outlive their connection: a drop
interrupts them. Message bodies are never logged.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import os
import random
from pathlib import Path
from typing import Any

import aiohttp
import structlog

import buildyard
from buildyard.protocol.codec import MAX_FRAME, Message
from buildyard.protocol.errors import ProtocolError
from buildyard.protocol.peer import Peer, RequestFailed
from buildyard.worker.commands import Command, create, execute, worker_commands
from buildyard.worker.commands.output import CommandOutput, Outbox, Settings

log = structlog.get_logger(__name__)

# reconnection: every QUICK_DELAY (jittered down to half) for QUICK_FOR seconds, then backoff
QUICK_DELAY = 0.5
QUICK_FOR = 30.0
FIRST_DELAY = 1.0
MAX_DELAY = 60.0
SETTING_KEYS = ("buffer_size", "buffer_timeout", "newline_re", "max_line_length")
SHUTDOWN_DELAY = 0.2
CONNECT_TIMEOUT = 30.0


@dataclasses.dataclass(slots=True, kw_only=True)
class WorkerConfig:
    """What ``create-worker`` stored in BASEDIR/buildyard-worker.json."""

    basedir: Path
    host: str
    port: int
    name: str
    password: str
    path: str = ""
    maxretries: int | None = None
    numcpus: int | None = None
    delete_leftover_dirs: bool = False
    keepalive: int = 600  # unused by msgpack, kept for parity with buildbot.tac

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}/{self.path.lstrip('/')}"


def os_release(path: Path = Path("/etc/os-release")) -> dict[str, str]:
    """``os_<key>`` entries of the worker info, one per ``KEY=value`` line."""
    found: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text(errors="replace").splitlines():
            key, sep, value = line.partition("=")
            value = value.strip().strip("'\"")
            if sep and key.strip() and value:
                found[f"os_{key.strip().lower()}"] = value
    return found


def backoff(attempt: int, without_master: float = 0.0) -> float:
    """Seconds to wait before reconnection attempt ``attempt`` (1, 2, ...), with jitter, when
    the worker has been without a master for ``without_master`` seconds.

    Quick attempts first: most outages are a master restarting, and a worker that waits seconds
    after the master is back delays every build. Once the outage is long, the wait doubles.
    """
    if without_master < QUICK_FOR:
        delay = QUICK_DELAY
    else:
        delay = min(MAX_DELAY, FIRST_DELAY * 2 ** max(0, attempt - 1))
    return float(delay * random.uniform(0.5, 1.0))  # jitter, not crypto


class Session:
    """One connection: its peer, its settings and the commands it runs."""

    def __init__(self, bot: Bot, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.bot = bot
        self.ws = ws
        self.peer = Peer(send=ws.send_bytes, handler=self.handle, name="master")
        self.settings = Settings()
        self.commands: dict[str, Command] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    async def handle(self, op: str, message: Message) -> Any:
        if op == "print":
            log.info("master_says", message=str(message.get("message")))
            return None
        if op == "keepalive":
            return None
        if op == "get_worker_info":
            return self.bot.worker_info()
        if op == "set_worker_settings":
            return self.set_settings(message.get("args"))
        if op == "start_command":
            return self.start_command(message)
        if op == "interrupt_command":
            command = self.commands.get(str(message.get("command_id")))
            if command is not None:
                command.output.flush()
                command.interrupt(str(message.get("why", "interrupted")))
            return None
        if op == "shutdown":
            log.info("master_asked_shutdown")
            asyncio.get_running_loop().call_later(SHUTDOWN_DELAY, self.bot.request_shutdown)
            return None
        raise RequestFailed(f"Command {op} does not exist.")

    def set_settings(self, args: Any) -> None:
        if not isinstance(args, dict):
            raise RequestFailed("set_worker_settings args must be a map")
        missing = [k for k in SETTING_KEYS if k not in args]
        if missing:
            raise RequestFailed(f"set_worker_settings is missing args: {', '.join(missing)}")
        self.settings = Settings(
            newline_re=str(args["newline_re"]),
            max_line_length=int(args["max_line_length"]),
            buffer_timeout=float(args["buffer_timeout"]),
            buffer_size=int(args["buffer_size"]),
        )

    def start_command(self, message: Message) -> None:
        command_id = str(message.get("command_id"))
        name = str(message.get("command_name"))
        if command_id in self.commands:
            raise RequestFailed(f"(command {command_id}): already running")
        settings = self.settings

        def output() -> CommandOutput:
            outbox = Outbox(self.peer.request, command_id=command_id, send=self.peer.send_request)
            return CommandOutput(outbox, settings)

        command = create(
            command_id=command_id,
            name=name,
            args=message.get("args"),
            output_factory=output,
            basedir=self.bot.config.basedir,
        )
        self.commands[command_id] = command
        log.info("command_started", command_id=command_id, command=name)
        task = asyncio.get_running_loop().create_task(self._execute(command))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _execute(self, command: Command) -> None:
        try:
            await execute(command)
        finally:
            self.commands.pop(command.command_id, None)
            log.info("command_finished", command_id=command.command_id)

    async def read(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.BINARY:
                try:
                    await self.peer.feed(msg.data)
                except ProtocolError as exc:
                    log.warning("master_protocol_fault", fault=str(exc))
            elif msg.type == aiohttp.WSMsgType.TEXT:
                log.info("master_text_frame_ignored")
            elif msg.type == aiohttp.WSMsgType.ERROR:
                log.warning("connection_error", error=str(self.ws.exception()))
                break

    async def end(self) -> None:
        """The socket is gone: stop every command (killing processes) and wait for them."""
        self.peer.close("connection lost")
        for command in list(self.commands.values()):
            command.interrupt("connection to the master lost")
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=30)
        for task in self.tasks:
            task.cancel()


class Bot:
    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.session: Session | None = None
        self._shutdown = asyncio.Event()
        self.connections = 0
        # whether the master refused the last attempt (HTTP 401: wrong name or password)
        self.refused = False

    def worker_info(self) -> dict[str, Any]:
        basedir = self.config.basedir
        info: dict[str, Any] = {}
        info.update(os_release())
        infodir = basedir / "info"
        if infodir.is_dir():
            for entry in sorted(infodir.iterdir()):
                if entry.is_file():
                    info[entry.name] = entry.read_text(errors="replace")
        info.update(
            environ=dict(os.environ),
            system=os.name,
            basedir=str(basedir.resolve()),
            numcpus=self.config.numcpus or os.cpu_count() or 1,
            version=buildyard.__version__,
            worker_commands=worker_commands(),
            delete_leftover_dirs=self.config.delete_leftover_dirs,
        )
        return info

    def request_shutdown(self) -> None:
        self._shutdown.set()

    def _auth(self) -> str:
        if ":" in self.config.name:
            raise ValueError(f"worker name {self.config.name!r} must not contain ':'")
        token = f"{self.config.name}:{self.config.password}".encode()
        return "Basic " + base64.b64encode(token).decode("ascii")

    async def run(self) -> int:
        """Connect and serve until shutdown; 1 if ``maxretries`` attempts in a row failed, or
        if the master refuses this worker's name or password before it was ever attached (a
        mistake to fix in the worker's settings; after an attachment, a refusal is taken for a
        master being reconfigured, and the worker keeps trying)."""
        failures = slow = 0
        loop = asyncio.get_running_loop()
        lost_at = loop.time()  # when the worker last had no master
        headers = {"Authorization": self._auth()}
        # no overall limit: the limit would apply to the connection's whole life
        timeout = aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while not self._shutdown.is_set():
                attached = await self._connect_once(http, headers)
                if self._shutdown.is_set():
                    break
                if self.refused and self.connections == 0:
                    log.error("worker_giving_up", reason="the master refused its name or password")
                    return 1
                failures = 0 if attached else failures + 1
                if attached:
                    lost_at, slow = loop.time(), 0
                limit = self.config.maxretries
                if limit is not None and failures >= limit:
                    log.error("giving_up", attempts=failures)
                    return 1
                # with maxretries, the attempts keep the backoff's spacing from the first, so
                # that N attempts span as long as they did (quick ones would use them up)
                without = loop.time() - lost_at if limit is None else QUICK_FOR
                if without >= QUICK_FOR:
                    slow += 1  # the backoff's attempts
                delay = backoff(max(1, slow), without)
                log.info("reconnecting", in_seconds=round(delay, 2))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._shutdown.wait()
        log.info("worker_stopped")
        return 0

    async def _connect_once(self, http: aiohttp.ClientSession, headers: dict[str, str]) -> bool:
        """One connection; True if it was established (so the backoff starts over)."""
        name, url = self.config.name, self.config.url
        self.refused = False
        try:
            ws = await http.ws_connect(
                url, headers=headers, max_msg_size=MAX_FRAME, autoping=True, heartbeat=None
            )
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status == 401:
                self.refused = True
                log.error(
                    f"the master refused worker {name}: wrong name or password",
                    event_name="worker_refused",
                    url=url,
                )
            else:
                log.warning("handshake_refused", url=url, status=exc.status)
            return False
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning("connect_failed", url=url, error=str(exc) or type(exc).__name__)
            return False
        self.connections += 1
        log.info("connected", url=url, worker=name)
        session = self.session = Session(self, ws)
        reader = asyncio.get_running_loop().create_task(session.read())
        stop = asyncio.get_running_loop().create_task(self._shutdown.wait())
        try:
            await asyncio.wait({reader, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            await session.end()
            await ws.close()
            self.session = None
            log.info("disconnected", url=url)
        return True
