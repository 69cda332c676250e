"""A connected worker, seen from the master: requests to it, and the commands it runs.

:meth:`WorkerConnection.run_command` registers the command id before sending
``start_command`` (fast commands' updates and completion can overtake the response), gathers
the ``update`` pairs in order, and returns when ``complete`` arrives or the connection is lost.
Message bodies are never logged: they hold build output, file contents and environments.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from buildyard.protocol.codec import Message
from buildyard.protocol.errors import ConnectionLost, RemoteError
from buildyard.protocol.peer import Peer, RequestFailed, Send

log = structlog.get_logger(__name__)

# Buildbot's line splitting for command output (replaced by "\n" on the worker)
NEWLINE_RE = r"(\r\n|\r(?=.)|\033\[u|\033\[[0-9]+;[0-9]+[Hf]|\033\[2J|\x08+)"
WORKER_SETTINGS = {
    "newline_re": NEWLINE_RE,
    "max_line_length": 4096,
    "buffer_timeout": 5,
    "buffer_size": 65536,
}

Update = tuple[str, Any]


@dataclasses.dataclass(slots=True, kw_only=True)
class CommandResult:
    # every [key, value] the worker sent, in order
    updates: list[Update]
    # None: ran to the end (see rc); a string: the worker raised while running it
    failure: str | None

    @property
    def rc(self) -> int | None:
        rcs = [v for k, v in self.updates if k == "rc"]
        return int(rcs[-1]) if rcs else None

    def text(self, stream: str) -> str:
        """All of ``stream`` ("stdout", "stderr", "header") as one string."""
        return "".join(v[0] for k, v in self.updates if k == stream)

    def last(self, key: str) -> Any:
        values = [v for k, v in self.updates if k == key]
        return values[-1] if values else None


@dataclasses.dataclass(slots=True)
class _Running:
    updates: list[Update]
    done: asyncio.Future[str | None]
    on_update: Callable[[Update], None] | None


class WorkerConnection:
    def __init__(self, *, name: str, send: Send, abort: Callable[[], Awaitable[object]]) -> None:
        self.name = name
        self._abort = abort
        self.faults = 0
        self.peer = Peer(send=send, handler=self._handle, name=f"worker {name}")
        self.info: dict[str, Any] = {}
        self.workerid: int | None = None
        self.attached = False
        self._ids = itertools.count()
        self._running: dict[str, _Running] = {}

    # -- master -> worker ------------------------------------------------------------------------

    async def print(self, message: str) -> None:
        await self.peer.request("print", message=message)

    async def answers(self, within: float) -> bool:
        """Whether the worker answers a ``print`` within ``within`` seconds."""
        try:
            async with asyncio.timeout(within):
                await self.print("master got a duplicate connection")
        except (TimeoutError, ConnectionLost, RemoteError):
            return False
        return True

    async def abort(self) -> None:
        """Drop the connection (its handler then records the disconnection)."""
        self.lost("dropped by the master")
        await self._abort()

    async def keepalive(self) -> None:
        await self.peer.request("keepalive")

    async def get_worker_info(self) -> dict[str, Any]:
        info = await self.peer.request("get_worker_info")
        if not isinstance(info, dict):
            raise ConnectionLost(f"worker {self.name} sent no info map")
        self.info = info
        return info

    async def set_worker_settings(self) -> None:
        await self.peer.request("set_worker_settings", args=WORKER_SETTINGS)

    async def run_command(
        self,
        command_name: str,
        args: dict[str, Any],
        *,
        on_update: Callable[[Update], None] | None = None,
        builder_name: str | None = None,
    ) -> CommandResult:
        """Run one command to completion; ConnectionLost if the worker goes away meanwhile."""
        command_id = str(next(self._ids))
        running = _Running([], asyncio.get_running_loop().create_future(), on_update)
        self._running[command_id] = running
        try:
            fields: dict[str, Any] = {
                "command_id": command_id,
                "command_name": command_name,
                "args": args,
            }
            if builder_name is not None:
                fields["builder_name"] = builder_name
            await self.peer.request("start_command", **fields)
            failure = await running.done
            return CommandResult(updates=running.updates, failure=failure)
        finally:
            self._running.pop(command_id, None)

    def running_ids(self) -> tuple[str, ...]:
        """Ids of the commands in flight on this connection."""
        return tuple(self._running)

    async def interrupt(self, command_id: str, why: str) -> None:
        await self.peer.request("interrupt_command", command_id=command_id, why=why)

    # -- worker -> master ------------------------------------------------------------------------

    async def _handle(self, op: str, message: Message) -> Any:
        if not self.attached and op in ("update", "complete"):
            # before get_worker_info answered; the stock worker never does this
            raise RequestFailed("Worker not authenticated.")
        if op == "update":
            running = self._command(message)
            pairs = message.get("args")
            if not isinstance(pairs, list):
                raise RequestFailed("update args must be a list of [key, value] pairs")
            for pair in pairs:
                if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)):
                    raise RequestFailed(f"bad update pair {type(pair).__name__}")
                update = (pair[0], pair[1])
                running.updates.append(update)
                if running.on_update is not None:
                    running.on_update(update)
            return None
        if op == "complete":
            running = self._command(message)
            failure = message.get("args")
            if not running.done.done():
                running.done.set_result(None if failure is None else str(failure))
            return None
        if op.startswith("update_"):
            raise RequestFailed(
                f"file transfers ({op}) are not implemented yet (buildyard issue #3)"
            )
        raise RequestFailed(f"Command {op} does not exist.")

    def _command(self, message: Message) -> _Running:
        command_id = message.get("command_id")
        running = self._running.get(command_id) if isinstance(command_id, str) else None
        if running is None:
            log.warning("unknown_command_id", worker=self.name, command_id=command_id)
            raise RequestFailed(f"unknown command_id {command_id!r}")
        return running

    def lost(self, reason: str) -> None:
        """The socket is gone: every request and command in flight fails."""
        self.peer.close(reason)
        for running in self._running.values():
            if not running.done.done():
                running.done.set_exception(ConnectionLost(f"worker {self.name} lost: {reason}"))
