"""Commands a step runs on its worker, with their output streamed into the step's logs.

``RemoteCommand(name, args)`` and ``RemoteShellCommand(workdir, command, ...)`` take Buildbot's
arguments. :meth:`RemoteCommand.run` sends the command over the build's worker connection,
writes ``stdout``/``stderr``/``header`` into the stdio log (and each ``log`` update into the
log of that logfile), keeps ``rc``, and ends with the master's header line
``program finished with exit code N``. An interrupt (the build is stopped) is passed on to the
worker; a lost worker raises :class:`~buildyard.protocol.errors.ConnectionLost`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ntpath
import posixpath
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from buildyard.master.logs.writer import LogWriter
from buildyard.master.model.results import Results
from buildyard.protocol.errors import RemoteError

if TYPE_CHECKING:
    from buildyard.master.workers.connection import CommandResult, Update, WorkerConnection
    from buildyard.master.workers.transfers import FileReader, FileWriter


def worker_args(
    name: str,
    args: Mapping[str, Any],
    builder_dir: str,
    *,
    windows: bool = False,
    home: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """Buildbot's step-level command arguments as the worker takes them
    (docs/worker-protocol.md, "Commands"): paths joined to the builder's directory on the
    worker, ``dir`` lists as ``paths``, camelCase transfer names in snake_case. Arguments
    already in the worker's form pass through."""
    join = ntpath.join if windows else posixpath.join
    a = dict(args)

    def under(*parts: Any) -> str:
        return join(builder_dir, *(str(p) for p in parts if p not in (None, "")))

    def user(path: Any) -> str:
        """``~`` at the start is the worker's home (from its environment)."""
        text = str(path)
        if home and (text == "~" or text.startswith(("~/", "~\\"))):
            return home + text[1:]
        return text

    if name in ("mkdir", "rmdir") and "dir" in a:
        dirs = a.pop("dir")
        a["paths"] = [under(d) for d in (dirs if isinstance(dirs, list | tuple) else [dirs])]
    elif name == "cpdir" and "fromdir" in a:
        a["from_path"] = under(a.pop("fromdir"))
        a["to_path"] = under(a.pop("todir"))
    elif name == "stat" and "file" in a:
        a["path"] = under(a.pop("workdir", None), a.pop("file"))
    elif name == "glob" and "path" in a:
        a["path"] = under(a["path"])
    elif name == "listdir" and "dir" in a:
        a["path"] = under(a.pop("dir"))
    elif name == "rmfile" and "path" in a:
        a["path"] = under(user(a["path"]))
    elif name == "shell":
        a["workdir"] = under(a.get("workdir"))
    elif name in ("uploadFile", "uploadDirectory"):
        name = "upload_file" if name == "uploadFile" else "upload_directory"
        a["path"] = under(a.pop("workdir", None), user(a.pop("workersrc")))
    elif name == "downloadFile":
        name = "download_file"
        a["path"] = under(a.pop("workdir", None), user(a.pop("workerdest")))
    return name, a


class RemoteCommandFailed(Exception):
    """The worker raised while running the command (``complete`` carried a failure)."""


class RemoteCommand:
    def __init__(
        self,
        remote_command: str,
        args: Mapping[str, Any],
        *,
        ignore_updates: bool = False,
        collectStdout: bool = False,
        collectStderr: bool = False,
        decodeRC: Mapping[int, int] | None = None,
        stdioLogName: str = "stdio",
        writer: FileWriter | None = None,
        reader: FileReader | None = None,
    ) -> None:
        self.remote_command = remote_command
        # a transfer's data: written to the master (upload) or read from it (download)
        self.writer = writer
        self.reader = reader
        self.args = dict(args)
        self.ignore_updates = ignore_updates
        self.collectStdout = collectStdout
        self.collectStderr = collectStderr
        self.decodeRC = dict(decodeRC) if decodeRC is not None else {0: int(Results.SUCCESS)}
        self.stdioLogName = stdioLogName
        self.logs: dict[str, LogWriter] = {}
        self.rc: int | None = None
        self.stdout = ""
        self.stderr = ""
        self.updates: dict[str, list[Any]] = {}
        self.failure_reason: str | None = None
        self.interrupted = False
        self._conn: WorkerConnection | None = None
        self._task: asyncio.Task[CommandResult] | None = None
        self._late_interrupt: asyncio.Task[None] | None = None
        self._command_id: str | None = None
        self._observers: list[Callable[[str, Any], None]] = []

    def useLog(
        self, log: LogWriter, closeWhenFinished: bool = False, logfileName: str | None = None
    ) -> None:
        """Write the output for ``logfileName`` (default: the log's name) into ``log``."""
        self.logs[logfileName or log.name] = log

    def add_update_observer(self, observer: Callable[[str, Any], None]) -> None:
        self._observers.append(observer)

    async def run(
        self,
        conn: WorkerConnection,
        *,
        builder_name: str | None = None,
        builder_dir: str | None = None,
    ) -> RemoteCommand:
        """Run to the end; paths are relative to ``builder_dir`` (the builder's directory on
        the worker) when it is given."""
        self._conn = conn
        name, args = self.remote_command, self.args
        if builder_dir is not None:
            environ = conn.info.get("environ")
            home = environ.get("HOME") if isinstance(environ, dict) else None
            name, args = worker_args(name, args, builder_dir, windows=conn.windows, home=home)
        queue: asyncio.Queue[Update | None] = asyncio.Queue()
        writer = asyncio.get_running_loop().create_task(self._write(queue))
        try:
            self._task = asyncio.get_running_loop().create_task(
                conn.run_command(
                    name,
                    args,
                    on_update=queue.put_nowait,
                    builder_name=builder_name,
                    keep_output=False,
                    on_id=self._got_id,
                    writer=self.writer,
                    reader=self.reader,
                )
            )
            result = await self._task
        finally:
            queue.put_nowait(None)
            await writer
        if result.failure is not None:
            raise RemoteCommandFailed(result.failure)
        stdio = self.logs.get(self.stdioLogName)
        if stdio is not None and self.rc is not None:
            stdio.add_header(f"program finished with exit code {self.rc}\n")
        return self

    async def _write(self, queue: asyncio.Queue[Update | None]) -> None:
        while (update := await queue.get()) is not None:
            self._update(*update)

    def _update(self, key: str, value: Any) -> None:
        if self.ignore_updates:
            return
        stdio = self.logs.get(self.stdioLogName)
        if key in ("stdout", "stderr", "header"):
            text = value[0] if isinstance(value, list | tuple) else str(value)
            if key == "stdout" and self.collectStdout:
                self.stdout += text
            if key == "stderr" and self.collectStderr:
                self.stderr += text
            if stdio is not None:
                {"stdout": stdio.add_stdout, "stderr": stdio.add_stderr}.get(key, stdio.add_header)(
                    text
                )
        elif key == "log":
            name, payload = value
            text = payload[0] if isinstance(payload, list | tuple) else str(payload)
            target = self.logs.get(name)
            if target is not None:
                target.add_stdout(text)
        elif key == "rc":
            self.rc = int(value)
        elif key == "failure_reason":
            self.failure_reason = str(value)
        else:
            self.updates.setdefault(key, []).append(value)
        for observer in self._observers:
            observer(key, value)

    async def interrupt(self, why: str) -> None:
        """Ask the worker to stop the command; it ends with its own updates."""
        self.interrupted = True
        if self._conn is None or self._command_id is None or self._task is None:
            return
        if self._task.done():
            return
        stdio = self.logs.get(self.stdioLogName)
        if stdio is not None:
            stdio.add_header(f"interrupting: {why}\n")
        with contextlib.suppress(RemoteError, ConnectionError):
            await self._conn.interrupt(self._command_id, why)

    def _got_id(self, command_id: str) -> None:
        self._command_id = command_id
        if self.interrupted and self._conn is not None:
            # interrupted after run() began but before the command had an id: the interrupt
            # goes out right after the command itself
            conn = self._conn
            self._late_interrupt = asyncio.get_running_loop().create_task(
                self._interrupt_late(conn, command_id)
            )

    @staticmethod
    async def _interrupt_late(conn: WorkerConnection, command_id: str) -> None:
        with contextlib.suppress(RemoteError, ConnectionError):
            await conn.interrupt(command_id, "interrupted")

    # -- what the step reads afterwards --------------------------------------------------------

    def didFail(self) -> bool:
        return self.results() == Results.FAILURE

    def results(self) -> Results:
        if self.interrupted:
            return Results.CANCELLED
        decoded: Mapping[int | None, int] = self.decodeRC  # type: ignore[assignment]
        return Results(decoded.get(self.rc, int(Results.FAILURE)))


class RemoteShellCommand(RemoteCommand):
    def __init__(
        self,
        workdir: str,
        command: str | Sequence[Any],
        env: Mapping[str, Any] | None = None,
        want_stdout: bool = True,
        want_stderr: bool = True,
        timeout: float | None = 20 * 60,
        maxTime: float | None = None,
        max_lines: int | None = None,
        sigtermTime: float | None = None,
        logfiles: Mapping[str, Any] | None = None,
        usePTY: bool | None = None,
        logEnviron: bool = True,
        collectStdout: bool = False,
        collectStderr: bool = False,
        interruptSignal: str | None = None,
        initialStdin: str | None = None,
        decodeRC: Mapping[int, int] | None = None,
        stdioLogName: str = "stdio",
    ) -> None:
        args: dict[str, Any] = {
            "workdir": workdir,
            "command": command,
            "env": dict(env) if env else None,
            "want_stdout": want_stdout,
            "want_stderr": want_stderr,
            "logfiles": dict(logfiles or {}),
            "timeout": timeout,
            "maxTime": maxTime,
            "max_lines": max_lines,
            "sigtermTime": sigtermTime,
            "usePTY": bool(usePTY),
            "logEnviron": logEnviron,
            "initial_stdin": initialStdin,
        }
        if interruptSignal is not None:
            args["interruptSignal"] = interruptSignal
        super().__init__(
            "shell",
            args,
            collectStdout=collectStdout,
            collectStderr=collectStderr,
            decodeRC=decodeRC,
            stdioLogName=stdioLogName,
        )
        self.command = command
