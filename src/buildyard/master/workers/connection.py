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
import ntpath
import posixpath
import stat
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import structlog

from buildyard.master.workers.transfers import FileReader, FileWriter
from buildyard.protocol.codec import Message
from buildyard.protocol.errors import ConnectionLost, RemoteError
from buildyard.protocol.frames import FrameBatch
from buildyard.protocol.peer import Peer, RequestFailed, Send
from buildyard.protocol.tcp import LowLatency

log = structlog.get_logger(__name__)

# Buildbot's line splitting for command output (replaced by "\n" on the worker). Buildbot
# sends a buffer_size of 64 KB; a loud command's output in 1 MB updates costs the master 16
# times fewer messages and acks (50 MB step: 0.74 s -> 0.63 s), while quiet output still leaves
# after buffer_timeout: 1 s (Buildbot's 5 s), so a live log follows its command within a second,
# for at most one update a second of a command that prints slowly.
NEWLINE_RE = r"(\r\n|\r(?=.)|\033\[u|\033\[[0-9]+;[0-9]+[Hf]|\033\[2J|\x08+)"
# the worker ends a line after this many characters (buildbot-worker 4.3.0: one fewer)
MAX_LINE_LENGTH = 4096
WORKER_SETTINGS = {
    "newline_re": NEWLINE_RE,
    "max_line_length": MAX_LINE_LENGTH,
    "buffer_timeout": 1,
    "buffer_size": 1024 * 1024,
}

Update = tuple[str, Any]
_TEXT_KEYS = frozenset({"stdout", "stderr", "header", "log"})


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

    def log(self, name: str) -> str:
        """The text the worker sent for its watched logfile ``name``."""
        return "".join(v[1][0] for k, v in self.updates if k == "log" and v[0] == name)

    def last(self, key: str) -> Any:
        values = [v for k, v in self.updates if k == key]
        return values[-1] if values else None


@dataclasses.dataclass(slots=True)
class _Running:
    updates: list[Update]
    done: asyncio.Future[str | None]
    on_update: Callable[[Update], None] | None
    writer: FileWriter | None = None
    reader: FileReader | None = None
    keep_output: bool = True
    # one transfer request at a time, in arrival order (the stock worker waits for each reply;
    # a worker that does not must not interleave writes)
    transfer_lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)


class WorkerConnection:
    # the worker protocol, for logs
    protocol = "msgpack_experimental_v7"

    def __init__(self, *, name: str, send: Send, abort: Callable[[], Awaitable[object]]) -> None:
        self.name = name
        self._abort = abort
        # a command's update and complete are answered in the read that brought them
        immediate = {
            "update": lambda message: self.progress("update", message),
            "complete": lambda message: self.progress("complete", message),
        }
        self.peer = Peer(
            send=send, handler=self._handle, name=f"worker {name}", immediate=immediate
        )
        self.info: dict[str, Any] = {}
        self.workerid: int | None = None
        # the worker answered get_worker_info: its updates are taken
        self.attached = False
        # the connect sequence is over (settings set, builder directories made): builds may
        # use it
        self.ready = False
        self._ids = itertools.count()
        self._running: dict[str, _Running] = {}
        # the socket's options (Nagle off, quick ACKs), set by the listener
        self.tcp: LowLatency | None = None
        # the msgpack WebSocket's frame writer (writes and frames counted), set by the listener
        self.frames: FrameBatch | None = None

    @property
    def windows(self) -> bool:
        """Whether the worker runs on Windows (its paths are joined with backslashes)."""
        return self.info.get("system") == "nt"

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

    async def shutdown(self) -> None:
        """Tell the worker to shut down (it exits)."""
        await self.peer.request("shutdown")

    async def setup_builders(self, builders: Sequence[tuple[str, str]]) -> None:
        """Make sure the worker has the directories of ``builders`` ((name, workerbuilddir)
        pairs), relative to its basedir: a ``listdir``, then a ``mkdir`` of those it lacks
        (Buildbot's msgpack master does the same)."""
        basedir = self.info.get("basedir")
        if not isinstance(basedir, str):
            return
        join = ntpath.join if self.windows else posixpath.join
        listing = await self.run_command("listdir", {"path": basedir})
        existing = set(listing.last("files") or ())
        wanted = {*(d for _name, d in builders), "info"}
        if self.info.get("delete_leftover_dirs"):
            await self._remove_leftover_dirs(basedir, sorted(existing - wanted), join)
        missing = sorted(wanted - existing)
        if missing:
            made = await self.run_command("mkdir", {"paths": [join(basedir, d) for d in missing]})
            if made.rc != 0:
                log.warning("worker_mkdir_failed", worker=self.name, rc=made.rc)

    async def _remove_leftover_dirs(
        self, basedir: str, entries: Sequence[str], join: Callable[..., str]
    ) -> None:
        """The worker's ``delete_leftover_dirs``: each entry of its basedir that no builder
        uses and that is a directory (``stat``) is removed (``rmdir``), as Buildbot's
        master does; files are left alone."""
        for entry in entries:
            path = join(basedir, entry)
            found = await self.run_command("stat", {"path": path})
            fields = found.last("stat")
            if found.rc != 0 or not fields or not stat.S_ISDIR(int(fields[0])):
                continue
            removed = await self.run_command("rmdir", {"paths": [path]})
            if removed.rc == 0:
                log.info("worker_leftover_dir_removed", worker=self.name, directory=entry)
            else:
                log.warning(
                    "worker_leftover_dir_kept", worker=self.name, directory=entry, rc=removed.rc
                )

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
        writer: FileWriter | None = None,
        reader: FileReader | None = None,
        keep_output: bool = True,
        on_id: Callable[[str], None] | None = None,
    ) -> CommandResult:
        """Run one command to completion; ConnectionLost if the worker goes away meanwhile.

        ``on_id`` is told the command's id before it is sent (to interrupt it later).

        A transfer passes the ``writer`` (upload) or ``reader`` (download) that its data flows
        through; both are closed when the command ends, whatever happened. With
        ``keep_output=False`` the text streams go only to ``on_update`` (a step writing them to
        a log), so memory does not grow with the output.
        """
        command_id = str(next(self._ids))
        running = _Running(
            [], asyncio.get_running_loop().create_future(), on_update, writer, reader, keep_output
        )
        self._running[command_id] = running
        if on_id is not None:
            on_id(command_id)
        try:
            fields: dict[str, Any] = {
                "command_id": command_id,
                "command_name": command_name,
                "args": args,
            }
            if builder_name is not None:
                fields["builder_name"] = builder_name
            await self._start_command(fields, running)
            failure = await running.done
            return CommandResult(updates=running.updates, failure=failure)
        finally:
            self._running.pop(command_id, None)
            if writer is not None:
                writer.discard()  # no-op once the upload was closed or unpacked
            if reader is not None:
                await reader.close()

    async def _start_command(self, fields: dict[str, Any], running: _Running) -> None:
        """Send ``start_command`` with ``fields`` (another protocol sends its own form)."""
        await self.peer.request("start_command", **fields)

    async def upload_file(
        self,
        worker_path: str,
        dest: Path,
        *,
        blocksize: int = 256 * 1024,
        maxsize: int | None = None,
        keepstamp: bool = False,
    ) -> CommandResult:
        """Copy a worker file to ``dest`` on the master."""
        args = {
            "path": worker_path,
            "blocksize": blocksize,
            "maxsize": maxsize,
            "keepstamp": keepstamp,
        }
        writer = FileWriter(dest, maxsize=maxsize)
        return await self.run_command("upload_file", args, writer=writer)

    async def upload_directory(
        self,
        worker_path: str,
        dest: Path,
        *,
        blocksize: int = 16 * 1024,
        maxsize: int | None = None,
        compress: str | None = None,
    ) -> CommandResult:
        """Copy a worker directory's contents into ``dest`` on the master (as a tarball)."""
        args = {
            "path": worker_path,
            "blocksize": blocksize,
            "maxsize": maxsize,
            "compress": compress,
        }
        writer = FileWriter(dest / ".upload.tar", maxsize=maxsize, unpack_into=dest)
        return await self.run_command("upload_directory", args, writer=writer)

    async def download_file(
        self,
        source: Path,
        worker_path: str,
        *,
        blocksize: int = 16 * 1024,
        maxsize: int | None = None,
        mode: int | None = None,
    ) -> CommandResult:
        """Copy a master file to ``worker_path`` on the worker."""
        args = {"path": worker_path, "blocksize": blocksize, "maxsize": maxsize, "mode": mode}
        reader = FileReader(source, blocksize=blocksize)
        return await self.run_command("download_file", args, reader=reader)

    def running_ids(self) -> tuple[str, ...]:
        """Ids of the commands in flight on this connection."""
        return tuple(self._running)

    async def interrupt(self, command_id: str, why: str) -> None:
        await self.peer.request("interrupt_command", command_id=command_id, why=why)

    # -- worker -> master ------------------------------------------------------------------------

    async def _handle(self, op: str, message: Message) -> Any:
        if op in ("update", "complete"):
            return self.progress(op, message)
        handler = _TRANSFER_OPS.get(op)
        if handler is not None:
            running = self._command(message)
            async with running.transfer_lock:
                return await handler(running, message)
        raise RequestFailed(f"Command {op} does not exist.")

    def progress(self, op: str, message: Message) -> None:
        """A command's ``update`` or ``complete``, handled at once (nothing here waits)."""
        if not self.attached:
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
                if running.keep_output or update[0] not in _TEXT_KEYS:
                    running.updates.append(update)
                if running.on_update is not None:
                    running.on_update(update)
            return None
        running = self._command(message)
        failure = message.get("args")
        if not running.done.done():
            running.done.set_result(None if failure is None else str(failure))
        return None

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


def _writer(running: _Running) -> FileWriter:
    if running.writer is None:
        raise RequestFailed("this command is not an upload")
    return running.writer


def _reader(running: _Running) -> FileReader:
    if running.reader is None:
        raise RequestFailed("this command is not a download")
    return running.reader


async def _upload_write(running: _Running, message: Message) -> None:
    await _writer(running).write(message.get("args"))


async def _upload_close(running: _Running, message: Message) -> None:
    await _writer(running).close()


async def _upload_utime(running: _Running, message: Message) -> None:
    await _writer(running).utime(message.get("access_time"), message.get("modified_time"))


async def _upload_unpack(running: _Running, message: Message) -> None:
    await _writer(running).unpack()


async def _read(running: _Running, message: Message) -> bytes:
    return await _reader(running).read(message.get("length"))


async def _read_close(running: _Running, message: Message) -> None:
    await _reader(running).close()


_TRANSFER_OPS: dict[str, Callable[[_Running, Message], Awaitable[Any]]] = {
    "update_upload_file_write": _upload_write,
    "update_upload_file_close": _upload_close,
    "update_upload_file_utime": _upload_utime,
    "update_upload_directory_write": _upload_write,
    "update_upload_directory_unpack": _upload_unpack,
    "update_read_file": _read,
    "update_read_file_close": _read_close,
}
