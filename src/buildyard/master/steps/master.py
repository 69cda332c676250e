"""Steps that run on the master: MasterShellCommand, LogRenderable, Assert.

``MasterShellCommand(command)`` runs ``command`` (a string for ``/bin/sh -c``, or an argv list)
as a process of the master, in ``workdir`` (relative to the master's base directory, which is
the default), with the master's environment plus ``env`` (list values are joined with the path
separator, ``${NAME}`` takes the master's variable NAME). Its output goes to a ``stdio`` log as
it comes; a non-zero exit or a signal fails the step. Stopping the build sends
``interruptSignal`` (default KILL) to the command's process group; the command is also ended
after ``runtime_timeout`` seconds (default 3600) or 300 seconds without output, as Buildbot's
does (TERM, then ``interruptSignal`` five seconds later).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import pprint
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from buildyard.master.model.results import Results
from buildyard.master.steps.base import BuildStep

__all__ = ["Assert", "LogRenderable", "MasterShellCommand"]

# Buildbot's RunProcess defaults, which MasterShellCommand keeps
_IO_TIMEOUT = 300.0
_SIGTERM_GRACE = 5.0
_CHUNK = 64 * 1024
_VARIABLE = re.compile(r"\${([0-9a-zA-Z_]*)}")


def _words(command: Any) -> list[str]:
    words: list[str] = []
    for word in command:
        if isinstance(word, list | tuple):
            words.extend(_words(word))
        elif word is not None:
            words.append(str(word))
    return words


def _signal_number(name: str | int) -> int:
    if isinstance(name, int):
        return name
    text = name.upper()
    return int(signal.Signals[text if text.startswith("SIG") else f"SIG{text}"])


class MasterShellCommand(BuildStep):
    """Run a shell command on the master (see the module's docstring)."""

    name = "MasterShellCommand"
    description: Any = "Running"
    descriptionDone: Any = "Ran"
    descriptionSuffix: Any = None
    haltOnFailure = True
    flunkOnFailure = True
    renderables: ClassVar[tuple[str, ...]] = (
        *BuildStep.renderables,
        "command",
        "env",
        "masterWorkdir",
    )

    def __init__(self, command: Any, **kwargs: Any) -> None:
        self.env: Any = kwargs.pop("env", None)
        self.usePTY: Any = kwargs.pop("usePTY", False)
        self.interruptSignal: str | int = kwargs.pop("interruptSignal", "KILL")
        self.logEnviron: bool = kwargs.pop("logEnviron", True)
        self.runtime_timeout: float | None = kwargs.pop("runtime_timeout", 3600)
        super().__init__(**kwargs)
        self.command = command
        # the workdir given here, not the build's default (a directory on the worker)
        self.masterWorkdir: Any = self.workdir
        self.process: asyncio.subprocess.Process | None = None
        self._running = False
        self._last_output = 0.0

    # -- what runs ------------------------------------------------------------------------------

    def _master_basedir(self) -> Path:
        basedir = self._runtime().master_basedir
        return basedir if basedir is not None else Path.cwd()

    def _argv(self, command: Any) -> list[str]:
        if sys.platform == "win32":  # pragma: no cover - the master runs on POSIX in CI
            argv = os.environ.get("COMSPEC", "cmd.exe").split()
            if "/c" not in argv:
                argv.append("/c")
            return argv + ([command] if isinstance(command, str) else _words(command))
        return ["/bin/sh", "-c", command] if isinstance(command, str) else _words(command)

    def _environment(self) -> tuple[dict[str, str], dict[str, str]]:
        """The process's environment, and the part of it the step set (for the log)."""
        given: dict[str, str] = {}
        if self.env is not None:
            if not isinstance(self.env, dict):
                raise RuntimeError(f"'env' must be a dict, not {self.env!r}")
            for key, item in self.env.items():
                value = os.pathsep.join(str(v) for v in item) if isinstance(item, list) else item
                if value is None:
                    continue
                if not isinstance(value, str):
                    raise RuntimeError(
                        f"'env' values must be strings or lists; key '{key}' is incorrect"
                    )
                given[key] = _VARIABLE.sub(lambda m: os.environ.get(m.group(1), ""), value)
        return {**os.environ, **given}, given

    async def run(self) -> int:
        self._runtime()  # a RuntimeError outside a build
        command = self.command
        argv = self._argv(command)
        workdir = self._master_basedir() / (self.masterWorkdir or "")
        env, given = self._environment()
        env["PWD"] = str(workdir.absolute())

        stdio = await self.addLog("stdio")
        shown = command.strip() if isinstance(command, str) else " ".join(_words(command))
        stdio.add_header(f"{shown}\n\n")
        stdio.add_header("** RUNNING ON BUILDMASTER **\n")
        stdio.add_header(f" in dir {workdir}\n")
        stdio.add_header(f" argv: {argv}\n")
        if self.logEnviron:
            stdio.add_header(f" env: {given!r}\n")
        if self.stopped:
            return int(Results.CANCELLED)

        self.process = proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=workdir,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        self._running = True
        if self._interrupted():  # while the process started
            self._signal(self.interruptSignal)
        loop = asyncio.get_running_loop()
        self._last_output = loop.time()
        watchdog = loop.create_task(self._watch(stdio.add_header))
        try:
            assert proc.stdout is not None
            assert proc.stderr is not None
            await asyncio.gather(
                self._pump(proc.stdout, stdio.add_stdout),
                self._pump(proc.stderr, stdio.add_stderr),
            )
            rc = await proc.wait()
        finally:
            self._running = False
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
            if proc.returncode is None:  # cancelled from outside: leave nothing behind
                self._signal("KILL")
        if rc < 0:
            stdio.add_header(f"signal {-rc}\n")
            self.descriptionDone = [f"killed ({-rc})"]
            return int(Results.FAILURE)
        if rc != 0:
            stdio.add_header(f"exit status {rc}\n")
            self.descriptionDone = [f"failed ({rc})"]
            return int(Results.FAILURE)
        return int(Results.SUCCESS)

    async def _pump(self, stream: asyncio.StreamReader, add: Callable[[str], None]) -> None:
        encoding = self.logEncoding or self._runtime().log_limits.encoding
        decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
        loop = asyncio.get_running_loop()
        while chunk := await stream.read(_CHUNK):
            self._last_output = loop.time()
            add(decoder.decode(chunk))
        add(decoder.decode(b"", final=True))

    async def _watch(self, header: Callable[[str], None]) -> None:
        """End the command after runtime_timeout, or _IO_TIMEOUT seconds without output."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            io_deadline = self._last_output + _IO_TIMEOUT
            deadline = io_deadline
            if self.runtime_timeout:
                deadline = min(deadline, started + self.runtime_timeout)
            now = loop.time()
            if now >= deadline:
                break
            await asyncio.sleep(deadline - now)
        if now >= io_deadline:
            header(f"command timed out: {_IO_TIMEOUT:g} seconds without output\n")
        else:
            header(f"command timed out: {self.runtime_timeout} seconds elapsed\n")
        self._signal("TERM")
        await asyncio.sleep(_SIGTERM_GRACE)
        self._signal(self.interruptSignal)

    def _interrupted(self) -> bool:
        return self.stopped

    def _signal(self, name: str | int) -> None:
        proc = self.process
        if proc is None or (not self._running and proc.returncode is not None):
            return
        number = _signal_number(name)
        if sys.platform == "win32":  # pragma: no cover
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            return
        # the whole group: the shell and what it started
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, number)

    async def interrupt(self, reason: str) -> None:
        await super().interrupt(reason)
        self._signal(self.interruptSignal)


class LogRenderable(BuildStep):
    """Write ``content`` (rendered, pretty-printed) to a log named ``Output``."""

    name = "LogRenderable"
    description: Any = ["Logging"]
    descriptionDone: Any = ["Logged"]
    renderables: ClassVar[tuple[str, ...]] = (*BuildStep.renderables, "content")

    def __init__(self, content: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.content = content

    async def run(self) -> int:
        await self.addCompleteLog("Output", pprint.pformat(self.content))
        return int(Results.SUCCESS)


class Assert(BuildStep):
    """SUCCESS if ``check`` (rendered) is true, else FAILURE."""

    name = "Assert"
    description: Any = ["Checking.."]
    descriptionDone: Any = ["checked"]
    renderables: ClassVar[tuple[str, ...]] = (*BuildStep.renderables, "check")

    def __init__(self, check: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.check = check
        self.descriptionDone = [f"checked {self.check!r}"]

    async def run(self) -> int:
        return int(Results.SUCCESS if self.check else Results.FAILURE)
