"""One child process for a command: output streaming, timeouts, and killing its process group.

The child runs in a session of its own (``start_new_session``), so its pid is its process group
and a kill reaches every process it spawned. The run ends when the child exited and both pipes
closed (a grandchild holding a pipe keeps it going, as with the stock worker). ``timeout``
(seconds without output) and ``max_time`` send ``failure_reason`` and kill; :meth:`kill`
(interrupt) sends SIGTERM then SIGKILL after ``sigterm_time`` when set, else ``interrupt_signal``.
A child ended by a signal has rc -1. ``max_lines`` counts the lines sent on stdout and stderr and
kills the child past the limit (``max_lines_failure``). With ``use_pty`` the child's stdin, stdout
and stderr are one pseudo-terminal (so its output is one stream, sent as stdout); a command with
``initial_stdin`` needs a pipe and runs without, as the stock worker does. ``logfiles`` are
tailed while the child runs (:mod:`.logfiles`).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import errno
import fcntl
import os
import pty
import re
import shlex
import signal
import time
from collections.abc import Mapping, Sequence

import structlog

from buildyard.worker.commands.logfiles import LogFileWatcher
from buildyard.worker.commands.output import CommandOutput

log = structlog.get_logger(__name__)

# a loud child fills a bigger pipe before it waits (Linux; elsewhere the system's size): fewer,
# bigger reads, and fewer wake-ups on both sides
PIPE_SIZE = 1024 * 1024
# output waiting to be sent past which the pipe is no longer read (the child then waits)
HIGH_WATER = 1024 * 1024
_LINE_END = re.compile(r"\r\n|\r|\n")


def _signal(value: str | int | None) -> signal.Signals:
    if value is None:
        return signal.SIGKILL
    if isinstance(value, int):
        return signal.Signals(value)
    name = value.upper()
    return signal.Signals[name if name.startswith("SIG") else "SIG" + name]


class RunProcess:
    def __init__(
        self,
        *,
        argv: Sequence[str],
        display: str,
        workdir: str,
        env: Mapping[str, str],
        output: CommandOutput,
        want_stdout: bool = True,
        want_stderr: bool = True,
        timeout: float | None = None,
        max_time: float | None = None,
        sigterm_time: float | None = None,
        interrupt_signal: str | int | None = "KILL",
        initial_stdin: str | bytes | None = None,
        log_environ: bool = True,
        max_lines: int | None = None,
        use_pty: bool = False,
        logfiles: Sequence[tuple[str, str, bool]] = (),
        logfiles_shown: object = None,
    ) -> None:
        self.argv = list(argv)
        self.display = display
        self.workdir = workdir
        self.env = dict(env)
        self.output = output
        self.want = {"stdout": bool(want_stdout), "stderr": bool(want_stderr)}
        self.timeout = timeout
        self.max_time = max_time
        self.sigterm_time = sigterm_time
        self.interrupt_signal = _signal(interrupt_signal)
        self.initial_stdin = initial_stdin
        self.log_environ = log_environ
        self.max_lines = max_lines
        self.line_count = 0
        self.use_pty = use_pty
        self.pty_refused = use_pty and initial_stdin is not None
        if self.pty_refused:
            self.use_pty = False
        self.logfiles_shown = logfiles_shown if logfiles_shown is not None else {}
        # made now, before the child starts, so they know which files are old
        self.watchers = [
            LogFileWatcher(name, path, follow=follow, output=output, on_data=self._saw_output)
            for name, path, follow in logfiles
        ]
        self.killed = False
        self._proc: asyncio.subprocess.Process | None = None
        self._last_output = time.monotonic()
        self._kill_task: asyncio.Task[None] | None = None

    def _headers(self) -> None:
        out = self.output
        out.text("header", f"{self.display}\n in dir {self.workdir}")
        out.text("header", f" (timeout {self.timeout} secs)\n" if self.timeout else "\n")
        if self.pty_refused:
            out.text("header", "WARNING: disabling usePTY for this command\n")
        out.text("header", f" watching logfiles {self.logfiles_shown}\n argv: {self.argv!r}\n")
        if self.log_environ:
            env = "".join(f"  {k}={v}\n" for k, v in sorted(self.env.items()))
            out.text("header", f" environment:\n{env}")
        out.text("header", f" using PTY: {self.use_pty}\n")

    async def run(self) -> int:
        """Run to the end; returns rc (-1 when a signal ended the child)."""
        self._headers()
        if self.killed:
            return -1
        os.makedirs(self.workdir, exist_ok=True)
        started = time.monotonic()
        self._last_output = started
        try:
            proc, outputs = await self._spawn()
        except OSError as exc:
            self.output.text("stderr", f"error starting {self.argv[0]!r}: {exc}\n")
            return -1 if exc.errno is None else 1
        self._proc = proc
        log.info("process_started", pid=proc.pid, workdir=self.workdir)
        if self._kill_requested():  # interrupted while the process was being started
            self._stop_started()
        await self._wait(proc, outputs, started)
        await self._last_of_logfiles()
        rc = proc.returncode
        assert rc is not None
        elapsed = time.monotonic() - started
        if rc < 0:
            self.output.text("header", f"process killed by signal {-rc}\n")
            rc = -1
        self.output.text("header", f"elapsedTime={elapsed:0.6f}\n")
        return rc

    async def _wait(
        self, proc: asyncio.subprocess.Process, outputs: list[tuple[int, str]], started: float
    ) -> None:
        """Until the child exited and its output ended, with timeouts and logfiles watched."""
        loop = asyncio.get_running_loop()
        watchdog = loop.create_task(self._watchdog(started))
        tails = [loop.create_task(w.watch()) for w in self.watchers]
        transports: list[asyncio.BaseTransport] = []
        try:
            readers = []
            files = [(os.fdopen(fd, "rb", 0), name) for fd, name in outputs]
            for i, (file, name) in enumerate(files):
                pipe = _PipeReader()
                try:
                    transport, _ = await loop.connect_read_pipe(pipe.protocol, file)
                except BaseException:
                    for unread, _name in files[i:]:
                        unread.close()
                    raise
                transports.append(transport)
                readers.append(self._read(pipe, name))
            if self.initial_stdin is not None:
                readers.append(self._feed(proc))
            await asyncio.gather(*readers, proc.wait())
        finally:
            watchdog.cancel()
            for tail in tails:
                tail.cancel()
            for pipe_transport in transports:
                pipe_transport.close()
            if self._kill_task is not None:
                self._kill_task.cancel()
            if proc.returncode is None:  # cancelled: leave nothing behind
                for watcher in self.watchers:
                    watcher.close()
                self._signal_group(signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError):
                    await asyncio.shield(proc.wait())

    async def _last_of_logfiles(self) -> None:
        try:
            for watcher in self.watchers:  # what the files got last, before rc
                await watcher.stop()
        finally:
            for watcher in self.watchers:
                watcher.close()

    async def _spawn(self) -> tuple[asyncio.subprocess.Process, list[tuple[int, str]]]:
        """The child, and the ends to read its output from with their stream names: its
        stdout and stderr pipes, or with use_pty the pseudo-terminal's side."""
        if self.use_pty:
            pty_out, terminal = pty.openpty()
            outputs, theirs = [(pty_out, "stdout")], [terminal]
            stdin, stdout, stderr = terminal, terminal, terminal
        else:
            out_r, out_w = _pipe()
            try:
                err_r, err_w = _pipe()
            except BaseException:
                os.close(out_r)
                os.close(out_w)
                raise
            outputs, theirs = [(out_r, "stdout"), (err_r, "stderr")], [out_w, err_w]
            stdin, stdout, stderr = asyncio.subprocess.DEVNULL, out_w, err_w
        if self.initial_stdin is not None:
            stdin = asyncio.subprocess.PIPE
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.argv,
                cwd=self.workdir,
                env=self.env,
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
            )
        except BaseException:  # OSError, ValueError (a NUL in argv), cancellation...
            for fd, _name in outputs:
                os.close(fd)
            raise
        finally:
            for fd in theirs:
                os.close(fd)  # the child has its copies; end of file when they close
        return proc, outputs

    async def _feed(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdin is not None
        assert self.initial_stdin is not None
        data = self.initial_stdin
        with contextlib.suppress(ConnectionError):
            proc.stdin.write(data.encode() if isinstance(data, str) else data)
            await proc.stdin.drain()
        proc.stdin.close()

    def _saw_output(self) -> None:
        self._last_output = time.monotonic()

    async def _read(self, pipe: _PipeReader, name: str) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        while chunk := await pipe.read():
            self._saw_output()
            if self.want[name] and not self._over_max_lines():
                text, over = self._within_max_lines(decoder.decode(chunk))
                self.output.text(name, text)
                if over:  # after the text it is about
                    self._over_max_lines_now()
                # a master slower than the child: stop reading, the pipe fills, the child waits
                await self.output.drain()
        if self.want[name]:
            self.output.text(name, decoder.decode(b"", final=True))

    def _over_max_lines(self) -> bool:
        return self.max_lines is not None and self.line_count > self.max_lines

    def _within_max_lines(self, text: str) -> tuple[str, bool]:
        """``text`` as far as ``max_lines`` allows, and whether it went over: the line that
        goes over the limit is the last one sent (whatever the size of the reads)."""
        if self.max_lines is None:
            return text, False
        allowed = self.max_lines - self.line_count
        count = 0
        for end in _LINE_END.finditer(text):
            count += 1
            if count > allowed:
                self.line_count += count
                return text[: end.end()], True
        self.line_count += count
        return text, False

    def _over_max_lines_now(self) -> None:
        """The output went over ``max_lines``: the command fails and the child is killed."""
        self.output.update("failure_reason", "max_lines_failure")
        self.kill(
            f"command exceeds max lines: {self.line_count}/{self.max_lines} "
            f"written/allowed running {self.display}"
        )

    async def _watchdog(self, started: float) -> None:
        while True:
            now = time.monotonic()
            deadlines: list[tuple[float, str]] = []
            if self.timeout is not None:
                deadlines.append((self._last_output + self.timeout, "timeout_without_output"))
            if self.max_time is not None:
                deadlines.append((started + self.max_time, "timeout"))
            if not deadlines:
                return
            when, reason = min(deadlines)
            if when > now:
                await asyncio.sleep(when - now)
                continue
            self.output.update("failure_reason", reason)
            if reason == "timeout":
                msg = f"command timed out: {self.max_time} seconds elapsed running {self.display}"
            else:
                msg = (
                    f"command timed out: {self.timeout} seconds without output running "
                    f"{self.display}"
                )
            self.kill(msg)
            return

    def _kill_requested(self) -> bool:
        # a method, not the attribute: kill() may have run during an await
        return self.killed

    def kill(self, why: str) -> None:
        """Stop the child and everything it spawned; announced in a header line."""
        self.output.text("header", f"{why}, attempting to kill\n")
        log.info("process_kill", pid=self._proc.pid if self._proc else None)
        self.killed = True
        if self._proc is None:  # not started yet: run() stops it as soon as it exists
            return
        self._stop_started()

    def _stop_started(self) -> None:
        if self.sigterm_time:
            self._signal_group(signal.SIGTERM)
            loop = asyncio.get_running_loop()
            self._kill_task = loop.create_task(self._kill_later(self.sigterm_time))
        else:
            self._signal_group(self.interrupt_signal)

    async def _kill_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self._signal_group(signal.SIGKILL)

    def _signal_group(self, sig: signal.Signals) -> None:
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, sig)


def _pipe() -> tuple[int, int]:
    """A pipe for the child's output: (our end, the child's)."""
    ours, theirs = os.pipe()
    with contextlib.suppress(OSError, AttributeError):  # Linux only, and at most pipe-max-size
        fcntl.fcntl(ours, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    return ours, theirs


class _PipeReader(asyncio.Protocol):
    """One output of the child as it comes: :meth:`read` returns everything that arrived since
    the last read, whole; the pipe is not read while more than :data:`HIGH_WATER` bytes wait."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._size = 0
        self._eof = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._transport: asyncio.ReadTransport | None = None
        self._paused = False

    def protocol(self) -> _PipeReader:
        """The protocol factory connect_read_pipe wants: this reader."""
        return self

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.ReadTransport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._chunks.append(data)
        self._size += len(data)
        if self._size > HIGH_WATER and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()
        self._wake()

    def eof_received(self) -> None:
        self._eof = True
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        # a pseudo-terminal whose other side closed ends with EIO: that is its end of file
        if exc is not None and not (isinstance(exc, OSError) and exc.errno == errno.EIO):
            self._error = exc
        self._eof = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def read(self) -> bytes:
        """What arrived since the last read; b"" at the end."""
        while not self._chunks and not self._eof:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if not self._chunks:
            if self._error is not None:
                raise self._error
            return b""
        data = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks.clear()
        self._size = 0
        if self._paused and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()
        return data


def display_command(command: str | Sequence[str]) -> str:
    return command if isinstance(command, str) else shlex.join(command)
